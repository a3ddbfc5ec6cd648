"""The TensorFlow.js graph-model interpreter moved to :mod:`nullswap.convert.tfjs` (a model-format converter).

Every public name stays importable from here.
"""

from __future__ import annotations

from nullswap.convert.tfjs import (
    SUPPORTED_OPS,
    PathLike,
    TFJSGraph,
    TFJSModule,
    TFJSNode,
    UnsupportedOpError,
    load_tfjs_graph,
    parse_tfjs_model,
    read_weights,
)

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
