"""A small TensorFlow.js graph-model interpreter in PyTorch (a model-format converter).

A TF.js graph model is a ``model.json`` holding a TensorFlow GraphDef as JSON (``modelTopology.node``) and a
``weightsManifest`` describing the ``.bin`` shards that hold every ``Const`` tensor. :func:`load_tfjs_graph` parses
both into a :class:`TFJSGraph` (editable: nodes, attributes and constants can be rewritten before use) and
:meth:`TFJSGraph.to_module` builds a :class:`TFJSModule`, an ``nn.Module`` that executes the graph in topological
order with PyTorch ops. Float constants become parameters, so ``.to(device)``, ``.double()`` and ``state_dict`` work
and gradients flow to the inputs.

Layout: TensorFlow graphs here are NHWC. Internally every 4-D activation is kept NCHW (flagged as such); constants
that broadcast against it are permuted to match, and layout-sensitive ops (padding, reductions, squeeze, reshape,
matmul) convert axes or fall back to the TF layout. TF ``SAME`` padding is reproduced exactly, including its
asymmetric split (the extra row/column goes to the bottom/right).

Weights: ``float32``, ``int32`` and ``bool`` tensors; quantized ``uint8``/``uint16`` (``value = q * scale + min``)
and ``float16`` weights are dequantized to ``float32`` (as TF.js does on load).

Modules: :mod:`~nullswap.convert.tfjs.graph` (parsing), :mod:`~nullswap.convert.tfjs.weights` (shards),
:mod:`~nullswap.convert.tfjs.ops` (the ops and layout rules), :mod:`~nullswap.convert.tfjs.module` (execution),
:mod:`~nullswap.convert.tfjs.fast` (the compiled plan the module runs by default: convolutions with their padding,
BatchNorm constants and activation folded in, channels-last activations; ``fast=False`` or
``NULLSWAP_TFJS_FAST=0`` interprets node by node).
Supported ops: see :data:`SUPPORTED_OPS`. Anything else raises :class:`UnsupportedOpError` naming the op and node.
"""

from nullswap.convert.tfjs.graph import (
    PathLike,
    TFJSGraph,
    TFJSNode,
    UnsupportedOpError,
    load_tfjs_graph,
    parse_tfjs_model,
)
from nullswap.convert.tfjs.module import TFJSModule
from nullswap.convert.tfjs.ops import SUPPORTED_OPS
from nullswap.convert.tfjs.weights import read_weights

__all__ = [
    "SUPPORTED_OPS",
    "PathLike",
    "TFJSGraph",
    "TFJSModule",
    "TFJSNode",
    "UnsupportedOpError",
    "load_tfjs_graph",
    "parse_tfjs_model",
    "read_weights",
]
