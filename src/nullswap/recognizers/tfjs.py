"""A small TensorFlow.js graph-model interpreter in PyTorch.

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

Supported ops: see :data:`SUPPORTED_OPS`. Anything else raises :class:`UnsupportedOpError` naming the op and node.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nullswap.errors import WeightsError

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


class UnsupportedOpError(WeightsError):
    """A TF.js graph uses an op (or fused op) the interpreter does not implement."""

    def __init__(self, ops: Sequence[tuple[str, str]]) -> None:
        self.ops = list(ops)
        listed = ", ".join(f"{op} (node {name!r})" for op, name in self.ops[:10])
        more = f" and {len(self.ops) - 10} more" if len(self.ops) > 10 else ""
        super().__init__(f"unsupported TF.js op(s): {listed}{more}; supported: {', '.join(sorted(SUPPORTED_OPS))}")


# ----------------------------------------------------------------------------------------------------------- parsing
def _decode_attr(v: dict[str, Any]) -> Any:
    """Decode one JSON ``AttrValue`` into a Python value (strings are base64 in the JSON)."""
    if "s" in v:
        return base64.b64decode(v["s"]).decode("utf-8", errors="replace")
    if "i" in v:
        return int(v["i"])
    if "f" in v:
        return float(v["f"])
    if "b" in v:
        return bool(v["b"])
    if "type" in v:
        return v["type"]
    if "shape" in v:
        return [int(d.get("size", -1)) for d in v["shape"].get("dim", [])]
    if "list" in v:
        lst = v["list"]
        if "s" in lst:
            return [base64.b64decode(s).decode("utf-8", errors="replace") for s in lst["s"]]
        if "i" in lst:
            return [int(i) for i in lst["i"]]
        if "f" in lst:
            return [float(f) for f in lst["f"]]
        if "b" in lst:
            return [bool(b) for b in lst["b"]]
        if "type" in lst:
            return list(lst["type"])
        return []
    if "tensor" in v:
        return v["tensor"]
    return None


@dataclass
class TFJSNode:
    """One GraphDef node.

    Attributes:
        name: node name (the name of its single output).
        op: TensorFlow op type, e.g. ``"_FusedConv2D"``.
        inputs: data inputs (``":0"`` suffixes and ``^control`` inputs removed).
        attrs: decoded attributes (strings, ints, floats, bools, lists).
    """

    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)


def _clean_input(name: str, node: str) -> str | None:
    if name.startswith("^"):
        return None  # control dependency: irrelevant for execution order of a pure graph
    base, sep, idx = name.rpartition(":")
    if sep and idx.isdigit():
        if idx != "0":
            raise WeightsError(f"node {node!r} reads output {idx} of {base!r}; only single-output ops are supported")
        return base
    return name


_QUANT_DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}
_PLAIN_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}


def read_weights(manifest: list[dict[str, Any]], group_bytes: Sequence[bytes]) -> dict[str, np.ndarray]:
    """Decode the tensors of a TF.js ``weightsManifest``.

    Args:
        manifest: the manifest's groups (``{"paths": [...], "weights": [...]}``).
        group_bytes: for each group, the concatenation of its shards' bytes.

    Returns:
        name -> array (``float32`` for float and dequantized weights, ``int32``, ``bool``).

    Raises:
        WeightsError: for an unknown dtype or quantization, or when the bytes do not match the manifest.
    """
    if len(group_bytes) != len(manifest):
        raise WeightsError(f"weights manifest has {len(manifest)} groups, got bytes for {len(group_bytes)}")
    out: dict[str, np.ndarray] = {}
    for gi, (group, buf) in enumerate(zip(manifest, group_bytes, strict=True)):
        off = 0
        for w in group["weights"]:
            shape = [int(s) for s in w.get("shape", [])]
            n = int(np.prod(shape)) if shape else 1
            dtype = w.get("dtype", "float32")
            q = w.get("quantization")
            if q:
                qd = q.get("dtype")
                if qd not in _QUANT_DTYPES:
                    raise WeightsError(f"weight {w['name']!r}: unsupported quantization dtype {qd!r}")
                raw_dtype = _QUANT_DTYPES[qd]
            else:
                if dtype not in _PLAIN_DTYPES:
                    raise WeightsError(f"weight {w['name']!r}: unsupported dtype {dtype!r}")
                raw_dtype = _PLAIN_DTYPES[dtype]
            nbytes = n * np.dtype(raw_dtype).itemsize
            if off + nbytes > len(buf):
                raise WeightsError(
                    f"weights group {gi} is too short: {w['name']!r} needs bytes {off}..{off + nbytes}, "
                    f"the shards hold {len(buf)}"
                )
            arr = np.frombuffer(buf, dtype=np.dtype(raw_dtype).newbyteorder("<"), count=n, offset=off)
            off += nbytes
            if q and qd in ("uint8", "uint16"):
                if "scale" not in q or "min" not in q:
                    raise WeightsError(f"weight {w['name']!r}: {qd} quantization without scale/min")
                vals = arr.astype(np.float32) * np.float32(q["scale"]) + np.float32(q["min"])
                arr = np.round(vals).astype(np.int32) if dtype == "int32" else vals
            elif q:  # float16
                arr = arr.astype(np.float32)
                if dtype == "int32":
                    arr = np.round(arr).astype(np.int32)
            else:
                arr = arr.astype(raw_dtype)  # copy out of the (read-only) buffer, native byte order
            out[w["name"]] = np.ascontiguousarray(arr.reshape(shape))
        if off != len(buf):
            log.warning("weights group %d: %d trailing bytes not described by the manifest", gi, len(buf) - off)
    return out


class TFJSGraph:
    """A parsed TF.js graph model: nodes in file order, constant tensors, inputs and outputs.

    The graph may be edited (nodes added, inputs rewired, ``attrs`` and :attr:`weights` changed) before
    :meth:`to_module` builds the executable module.

    Attributes:
        nodes: name -> node, in file order.
        weights: name -> array for every ``Const`` node.
        inputs: names of the ``Placeholder`` nodes, in file order.
        outputs: output node names from the model's signature (or the sink nodes when it has none).
        meta: the remaining top-level keys of ``model.json`` (format, generatedBy, signature, ...).
    """

    def __init__(self, nodes: Sequence[TFJSNode], weights: dict[str, np.ndarray],
                 outputs: Sequence[str] | None = None, meta: dict[str, Any] | None = None) -> None:
        self.nodes: dict[str, TFJSNode] = {}
        for n in nodes:
            if n.name in self.nodes:
                raise WeightsError(f"duplicate node name {n.name!r} in TF.js graph")
            self.nodes[n.name] = n
        self.weights = dict(weights)
        self.meta = dict(meta or {})
        self.inputs = [n.name for n in nodes if n.op == "Placeholder"]
        self.outputs = list(outputs) if outputs else self._sinks()
        for name in self.outputs:
            if name not in self.nodes:
                raise WeightsError(f"output {name!r} is not a node of the graph")

    def _sinks(self) -> list[str]:
        used = {i for n in self.nodes.values() for i in n.inputs}
        return [n.name for n in self.nodes.values() if n.name not in used and n.op not in ("Const", "Placeholder")]

    def consumers(self) -> dict[str, list[tuple[TFJSNode, int]]]:
        """Name -> list of (consumer node, input index) for every node."""
        out: dict[str, list[tuple[TFJSNode, int]]] = {name: [] for name in self.nodes}
        for n in self.nodes.values():
            for k, i in enumerate(n.inputs):
                out.setdefault(i, []).append((n, k))
        return out

    def add_node(self, node: TFJSNode) -> TFJSNode:
        """Add a node (its name must be new)."""
        if node.name in self.nodes:
            raise WeightsError(f"node {node.name!r} already exists")
        self.nodes[node.name] = node
        return node

    def op_counts(self) -> dict[str, int]:
        """Number of nodes of each op type."""
        counts: dict[str, int] = {}
        for n in self.nodes.values():
            counts[n.op] = counts.get(n.op, 0) + 1
        return counts

    def to_module(self, outputs: Sequence[str] | None = None, *, nchw: bool = True) -> TFJSModule:
        """Build the executable module for ``outputs`` (default: :attr:`outputs`).

        Args:
            outputs: node names to compute; only the nodes they depend on are kept.
            nchw: 4-D inputs are given, and 4-D outputs returned, as NCHW torch tensors (``False``: NHWC, as in TF).

        Raises:
            UnsupportedOpError: naming every unsupported op the outputs depend on.
        """
        return TFJSModule(self, list(outputs) if outputs else list(self.outputs), nchw=nchw)


def _signature_outputs(model: dict[str, Any]) -> list[str]:
    sig = model.get("signature") or (model.get("userDefinedMetadata") or {}).get("signature") or {}
    outs = sig.get("outputs") or {}
    names = []
    for key, v in outs.items():
        name = (v or {}).get("name", key)
        names.append(name[:-2] if name.endswith(":0") else name)
    return names


def parse_tfjs_model(model: dict[str, Any], weights_bytes: Sequence[bytes]) -> TFJSGraph:
    """Build a :class:`TFJSGraph` from a parsed ``model.json`` and its weight bytes.

    Args:
        model: the JSON object (``format`` must be ``"graph-model"``).
        weights_bytes: one ``bytes`` per manifest group (its shards concatenated), or one ``bytes`` holding every
            shard of every group in manifest order.
    """
    fmt = model.get("format", "graph-model")
    if fmt != "graph-model":
        raise WeightsError(f"expected a TF.js graph model, got format {fmt!r}")
    topo = model.get("modelTopology") or {}
    if "node" not in topo:
        raise WeightsError("model.json has no modelTopology.node (not a TF.js graph model?)")
    if topo.get("library", {}).get("function"):
        log.warning("TF.js graph has a function library (control flow); functions are not interpreted")
    nodes = []
    for raw in topo["node"]:
        inputs = [c for c in (_clean_input(i, raw["name"]) for i in raw.get("input", [])) if c is not None]
        attrs = {k: _decode_attr(v) for k, v in (raw.get("attr") or {}).items()}
        nodes.append(TFJSNode(raw["name"], raw["op"], inputs, attrs))
    manifest = model.get("weightsManifest") or []
    if len(weights_bytes) == 1 and len(manifest) > 1:
        weights_bytes = _split_groups(manifest, weights_bytes[0])
    weights = read_weights(manifest, weights_bytes)
    for n in nodes:
        if n.op == "Const" and n.name not in weights:
            weights[n.name] = _inline_const(n)
    return TFJSGraph(nodes, weights, _signature_outputs(model) or None,
                     {k: v for k, v in model.items() if k not in ("modelTopology", "weightsManifest")})


def _group_nbytes(group: dict[str, Any]) -> int:
    total = 0
    for w in group["weights"]:
        n = int(np.prod(w.get("shape", []))) if w.get("shape") else 1
        q = w.get("quantization")
        dt = _QUANT_DTYPES.get(q["dtype"]) if q else _PLAIN_DTYPES.get(w.get("dtype", "float32"))
        if dt is None:
            raise WeightsError(f"weight {w['name']!r}: unsupported dtype")
        total += n * np.dtype(dt).itemsize
    return total


def _split_groups(manifest: list[dict[str, Any]], data: bytes) -> list[bytes]:
    out, off = [], 0
    for g in manifest:
        n = _group_nbytes(g)
        out.append(data[off : off + n])
        off += n
    return out


def _inline_const(n: TFJSNode) -> np.ndarray:
    t = n.attrs.get("value")
    if not isinstance(t, dict):
        raise WeightsError(f"Const {n.name!r} has no value in the weights manifest")
    shape = [int(d.get("size", 1)) for d in t.get("tensorShape", {}).get("dim", [])]
    for key, dt in (("floatVal", np.float32), ("intVal", np.int32), ("boolVal", np.bool_)):
        if key in t:
            vals = np.asarray(t[key], dtype=dt)
            n_el = int(np.prod(shape)) if shape else 1
            return np.broadcast_to(vals, (n_el,)).reshape(shape).copy() if vals.size == 1 else vals.reshape(shape)
    raise WeightsError(f"Const {n.name!r} has no value in the weights manifest")


def load_tfjs_graph(model_json: PathLike, weights: PathLike | Sequence[PathLike] | None = None) -> TFJSGraph:
    """Read a TF.js graph model from disk.

    Args:
        model_json: path of ``model.json``.
        weights: the ``.bin`` shard file(s), in manifest order (all groups' paths flattened). ``None`` resolves the
            manifest's ``paths`` relative to the JSON file's folder.

    Raises:
        WeightsError: unreadable files, a malformed model or weights that do not match the manifest.
    """
    p = Path(model_json)
    try:
        model = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise WeightsError(f"cannot read TF.js model {str(p)!r}: {e}") from e
    manifest = model.get("weightsManifest") or []
    if weights is None:
        files = [[p.parent / s for s in g["paths"]] for g in manifest]
    else:
        flat = [Path(weights)] if isinstance(weights, str | os.PathLike) else [Path(w) for w in weights]
        counts = [len(g["paths"]) for g in manifest]
        if len(flat) == 1 and sum(counts) != 1:
            try:
                return parse_tfjs_model(model, [flat[0].read_bytes()])
            except OSError as e:
                raise WeightsError(f"cannot read TF.js weights {str(flat[0])!r}: {e}") from e
        if len(flat) != sum(counts):
            raise WeightsError(f"the manifest lists {sum(counts)} weight shards, {len(flat)} files were given")
        files, k = [], 0
        for c in counts:
            files.append(flat[k : k + c])
            k += c
    try:
        group_bytes = [b"".join(f.read_bytes() for f in g) for g in files]
    except OSError as e:
        raise WeightsError(f"cannot read TF.js weights for {str(p)!r}: {e}") from e
    return parse_tfjs_model(model, group_bytes)


# --------------------------------------------------------------------------------------------------------- execution
# A value flowing through the graph: the tensor and whether it is a 4-D TF (NHWC) tensor stored NCHW.
_Val = tuple[torch.Tensor, bool]

_NHWC_TO_NCHW_AXIS = (0, 2, 3, 1)  # TF axis a of an NHWC tensor is axis _NHWC_TO_NCHW_AXIS[a] of its NCHW storage


def _to_tf(v: _Val) -> torch.Tensor:
    t, nchw = v
    return t.permute(0, 2, 3, 1) if nchw else t


def _to_nchw(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 3, 1, 2)


def _broadcast_like_nchw(t: torch.Tensor) -> torch.Tensor:
    """Rearrange a TF tensor of rank <= 4 so it broadcasts against an NCHW-stored NHWC tensor as it did in TF."""
    if t.ndim == 0:
        return t
    if t.ndim > 4:
        raise WeightsError(f"cannot broadcast a rank-{t.ndim} tensor against a 4-D activation")
    return _to_nchw(t.reshape((1,) * (4 - t.ndim) + tuple(t.shape)))


def _same_padding(size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    """TF ``SAME`` padding (before, after) along one axis: output ``ceil(size / stride)``, extra pixel after."""
    out = -(-size // stride)
    eff = (k - 1) * dilation + 1
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def _conv_padding(node: TFJSNode, x: torch.Tensor, k: tuple[int, int], s: tuple[int, int], d: tuple[int, int],
                  nhwc: bool) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``x`` (NCHW) as TF would; returns the padded tensor and the symmetric padding left for the conv."""
    mode = node.attrs.get("padding", "VALID")
    if mode == "VALID":
        return x, (0, 0)
    if mode == "SAME":
        (t, b), (lft, r) = (_same_padding(x.shape[2 + i], k[i], s[i], d[i]) for i in range(2))
    elif mode == "EXPLICIT":
        ep = list(node.attrs.get("explicit_paddings", []))
        if len(ep) != 8:
            raise WeightsError(f"node {node.name!r}: EXPLICIT padding needs 8 explicit_paddings, got {ep}")
        (t, b), (lft, r) = ((ep[2], ep[3]), (ep[4], ep[5])) if nhwc else ((ep[4], ep[5]), (ep[6], ep[7]))
    else:
        raise UnsupportedOpError([(f"{node.op} with padding {mode}", node.name)])
    if t == b and lft == r:
        return x, (t, lft)
    return F.pad(x, (lft, r, t, b)), (0, 0)


def _spatial(node: TFJSNode, key: str, nhwc: bool) -> tuple[int, int]:
    v = list(node.attrs.get(key, [1, 1, 1, 1]))
    if len(v) == 4:
        return (v[1], v[2]) if nhwc else (v[2], v[3])
    if len(v) == 2:
        return v[0], v[1]
    if len(v) == 1:
        return v[0], v[0]
    raise WeightsError(f"node {node.name!r}: bad {key} {v}")


def _activation(name: str, x: torch.Tensor, node: TFJSNode, alpha: torch.Tensor | None) -> torch.Tensor:
    if name == "Relu":
        return F.relu(x)
    if name == "Relu6":
        return x.clamp(0.0, 6.0)
    if name == "Elu":
        return F.elu(x)
    if name == "Selu":
        return F.selu(x)
    if name == "Sigmoid":
        return torch.sigmoid(x)
    if name == "Tanh":
        return torch.tanh(x)
    if name == "LeakyRelu":
        return F.leaky_relu(x, float(node.attrs.get("leakyrelu_alpha", node.attrs.get("alpha", 0.2))))
    if name == "Prelu":
        assert alpha is not None
        return torch.where(x >= 0, x, alpha * x)
    raise UnsupportedOpError([(f"{node.op} with fused activation {name}", node.name)])


_FUSED_ACTIVATIONS = {"Relu", "Relu6", "Elu", "Selu", "Sigmoid", "Tanh", "LeakyRelu", "Prelu"}


class TFJSModule(nn.Module):
    """Executes a :class:`TFJSGraph` with PyTorch ops.

    ``forward(*inputs)`` takes one tensor per graph input (``Placeholder``, in graph order; 4-D inputs NCHW when
    ``nchw``) and returns the single output tensor, or a tuple of them in the order of ``outputs``.

    Args:
        graph: the parsed graph.
        outputs: node names to compute.
        nchw: 4-D inputs are NCHW and 4-D outputs are returned NCHW (``False``: NHWC, as in TensorFlow).
    """

    def __init__(self, graph: TFJSGraph, outputs: Sequence[str], *, nchw: bool = True) -> None:
        super().__init__()
        self.nchw = nchw
        self.output_names = list(outputs)
        order = _topological_order(graph, self.output_names)
        bad = [(n.op, n.name) for n in order if n.op not in SUPPORTED_OPS]
        bad += [(f"{n.op} with fused op {o}", n.name) for n in order if n.op in _FUSED for o in _unsupported_fused(n)]
        bad += [(f"{n.op} with {what}", n.name) for n in order for what in _unsupported_attrs(n)]
        if bad:
            raise UnsupportedOpError(bad)
        needed = {n.name for n in order if n.op == "Placeholder"}
        self.input_names = [n.name for n in graph.nodes.values() if n.op == "Placeholder" and n.name in needed]
        self.consts = nn.ParameterDict()
        self._param_key: dict[str, str] = {}
        self._int_consts: dict[str, np.ndarray] = {}
        for n in order:
            if n.op != "Const":
                continue
            if n.name not in graph.weights:
                raise WeightsError(f"Const {n.name!r} has no tensor")
            arr = graph.weights[n.name]
            if np.issubdtype(arr.dtype, np.floating):
                key = _unique_key(n.name, self.consts)
                self.consts[key] = nn.Parameter(torch.from_numpy(np.array(arr, dtype=np.float32)))
                self._param_key[n.name] = key
            else:
                self._int_consts[n.name] = np.array(arr)
        self._steps = [n for n in order if n.op != "Const"]
        # drop values after their last use (memory during inference)
        last: dict[str, int] = {}
        for i, n in enumerate(self._steps):
            for inp in n.inputs:
                last[inp] = i
        keep = set(self.output_names)
        self._free_after: list[list[str]] = [[] for _ in self._steps]
        for name, i in last.items():
            if name not in keep and name not in self._param_key and name not in self._int_consts:
                self._free_after[i].append(name)

    # ---------------------------------------------------------------------------------------------- helpers
    def extra_repr(self) -> str:
        """Inputs, outputs and op counts of the executed graph."""
        counts: dict[str, int] = {}
        for n in self._steps:
            counts[n.op] = counts.get(n.op, 0) + 1
        return f"inputs={self.input_names}, outputs={self.output_names}, ops={counts}"

    def _const_tensor(self, name: str, ref: torch.Tensor) -> torch.Tensor:
        if name in self._param_key:
            return self.consts[self._param_key[name]]
        return torch.as_tensor(self._int_consts[name], device=ref.device)

    def _ints(self, node: TFJSNode, name: str) -> list[int]:
        if name not in self._int_consts:
            if name in self._param_key:  # a float const used as shape/axes: accept integral values
                return [int(v) for v in self.consts[self._param_key[name]].detach().flatten().tolist()]
            raise UnsupportedOpError([(f"{node.op} with a computed (non-Const) {name!r} operand", node.name)])
        return [int(v) for v in np.asarray(self._int_consts[name]).flatten().tolist()]

    # ----------------------------------------------------------------------------------------------- forward
    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Run the graph; see the class docstring."""
        if len(inputs) != len(self.input_names):
            raise WeightsError(f"graph takes {len(self.input_names)} input(s) {self.input_names}, got {len(inputs)}")
        ref = inputs[0] if inputs else next(iter(self.consts.values()))
        vals: dict[str, _Val] = {}
        for name, x in zip(self.input_names, inputs, strict=True):
            vals[name] = (x, x.ndim == 4 and self.nchw)

        def get(name: str) -> _Val:
            if name in vals:
                return vals[name]
            return self._const_tensor(name, ref), False

        for i, node in enumerate(self._steps):
            if node.op != "Placeholder":
                fn = _OPS[node.op]
                vals[node.name] = fn(self, node, [get(n) for n in node.inputs])
            for name in self._free_after[i]:
                vals.pop(name, None)
        outs = []
        for name in self.output_names:
            t, flag = get(name)
            outs.append(t if (flag and self.nchw) else _to_tf((t, flag)))
        return outs[0] if len(outs) == 1 else tuple(outs)


def _unique_key(name: str, taken: nn.ParameterDict) -> str:
    key = re.sub(r"\W", "_", name) or "const"
    if key[0].isdigit():
        key = "c_" + key
    base, k = key, 1
    while key in taken:
        k += 1
        key = f"{base}_{k}"
    return key


def _topological_order(graph: TFJSGraph, outputs: Sequence[str]) -> list[TFJSNode]:
    order: list[TFJSNode] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done
    for out in outputs:
        if out not in graph.nodes:
            raise WeightsError(f"output {out!r} is not a node of the graph")
        stack: list[tuple[str, int]] = [(out, 0)]
        while stack:
            name, k = stack.pop()
            if k == 0:
                if state.get(name) == 2:
                    continue
                if name not in graph.nodes:
                    raise WeightsError(f"graph input {name!r} is not defined by any node")
                state[name] = 1
            node = graph.nodes[name]
            if k < len(node.inputs):
                stack.append((name, k + 1))
                dep = node.inputs[k]
                if state.get(dep) == 1:
                    raise WeightsError(f"TF.js graph has a cycle through {dep!r} (control flow is not supported)")
                if state.get(dep) != 2:
                    stack.append((dep, 0))
            else:
                state[name] = 2
                order.append(node)
    return order


# -------------------------------------------------------------------------------------------------------------- ops
_OpFn = Callable[[TFJSModule, TFJSNode, list[_Val]], _Val]
_OPS: dict[str, _OpFn] = {}
_FUSED = {"_FusedConv2D", "FusedDepthwiseConv2dNative", "_FusedMatMul"}


def _op(*names: str) -> Callable[[_OpFn], _OpFn]:
    def deco(fn: _OpFn) -> _OpFn:
        for n in names:
            _OPS[n] = fn
        return fn

    return deco


def _unsupported_fused(node: TFJSNode) -> list[str]:
    ops = list(node.attrs.get("fused_ops", []))
    bad = []
    for k, o in enumerate(ops):
        if (k == 0 and o in ("BiasAdd", "FusedBatchNorm")) or (k > 0 and o in _FUSED_ACTIVATIONS):
            continue
        bad.append(o)
    return bad


_PADDED = {"Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative", "MaxPool", "AvgPool"}


def _unsupported_attrs(node: TFJSNode) -> list[str]:
    if node.op not in _PADDED:
        return []
    bad = []
    pads = ("SAME", "VALID") if node.op in ("MaxPool", "AvgPool") else ("SAME", "VALID", "EXPLICIT")
    if node.attrs.get("padding", "VALID") not in pads:
        bad.append(f"padding {node.attrs.get('padding')}")
    if node.attrs.get("data_format", "NHWC") not in ("NHWC", "NCHW"):
        bad.append(f"data_format {node.attrs.get('data_format')}")
    return bad


@_op("Identity", "Snapshot", "StopGradient")
def _identity(m: TFJSModule, node: TFJSNode, a: list[_Val]) -> _Val:
    return a[0]


def _unary(fn: Callable[[torch.Tensor], torch.Tensor]) -> _OpFn:
    def run(m: TFJSModule, node: TFJSNode, a: list[_Val]) -> _Val:
        return fn(a[0][0]), a[0][1]

    return run


_OPS.update({
    "Relu": _unary(F.relu),
    "Relu6": _unary(lambda x: x.clamp(0.0, 6.0)),
    "Elu": _unary(F.elu),
    "Abs": _unary(torch.abs),
    "Neg": _unary(torch.neg),
    "Square": _unary(torch.square),
    "Sqrt": _unary(torch.sqrt),
    "Rsqrt": _unary(torch.rsqrt),
    "Exp": _unary(torch.exp),
    "Log": _unary(torch.log),
    "Sigmoid": _unary(torch.sigmoid),
    "Tanh": _unary(torch.tanh),
})


def _binary(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> _OpFn:
    def run(m: TFJSModule, node: TFJSNode, a: list[_Val]) -> _Val:
        (x, fx), (y, fy) = a[0], a[1]
        if fx != fy:
            if fx:
                y = _broadcast_like_nchw(y)
            else:
                x = _broadcast_like_nchw(x)
        return fn(x, y), fx or fy

    return run


_OPS.update({
    "Add": _binary(torch.add),
    "AddV2": _binary(torch.add),
    "BiasAdd": _binary(torch.add),
    "Sub": _binary(torch.sub),
    "Mul": _binary(torch.mul),
    "RealDiv": _binary(torch.div),
    "Div": _binary(torch.div),
    "Maximum": _binary(torch.maximum),
    "Minimum": _binary(torch.minimum),
    "SquaredDifference": _binary(lambda x, y: torch.square(x - y)),
})


@_op("Prelu")
def _prelu(m: TFJSModule, node: TFJSNode, a: list[_Val]) -> _Val:
    (x, fx), (alpha, fa) = a[0], a[1]
    if fx and not fa and alpha.ndim == 1 and alpha.numel() == x.shape[1]:
        return F.prelu(x, alpha), True  # one fused kernel for the common per-channel case
    if fx != fa:
        alpha = _broadcast_like_nchw(alpha) if fx else alpha
        x = x if fx else _broadcast_like_nchw(x)
    return torch.where(x >= 0, x, alpha * x), fx or fa


@_op("AddN")
def _add_n(m: TFJSModule, node: TFJSNode, a: list[_Val]) -> _Val:
    out = a[0]
    for v in a[1:]:
        out = _OPS["AddV2"](m, node, [out, v])
    return out


def _conv_args(node: TFJSNode) -> tuple[bool, tuple[int, int], tuple[int, int]]:
    fmt = node.attrs.get("data_format", "NHWC")
    if fmt not in ("NHWC", "NCHW"):
        raise UnsupportedOpError([(f"{node.op} with data_format {fmt}", node.name)])
    nhwc = fmt == "NHWC"
    return nhwc, _spatial(node, "strides", nhwc), _spatial(node, "dilations", nhwc)


def _conv_input(x: _Val, nhwc: bool) -> torch.Tensor:
    t, flag = x
    if t.ndim != 4:
        raise WeightsError(f"convolution input must be 4-D, got shape {tuple(t.shape)}")
    if nhwc:
        return t if flag else _to_nchw(t)
    return _to_tf(x)  # an NCHW-format TF op: the TF tensor itself is NCHW


def _apply_fused(m: TFJSModule, node: TFJSNode, y: torch.Tensor, args: list[_Val], channel_dim: int) -> torch.Tensor:
    """Apply ``fused_ops`` (BiasAdd / FusedBatchNorm, then an activation) to ``y`` (channels on ``channel_dim``)."""
    ops = list(node.attrs.get("fused_ops", []))

    def per_channel(t: torch.Tensor) -> torch.Tensor:
        t = t.reshape(-1)
        return t.reshape((1, -1) + (1,) * (y.ndim - 2)) if channel_dim == 1 else t

    k = 0
    if ops and ops[0] == "BiasAdd":
        y = y + per_channel(args[0][0])
        k = 1
    elif ops and ops[0] == "FusedBatchNorm":
        scale, offset, mean, var = (per_channel(v[0]) for v in args[:4])
        eps = float(node.attrs.get("epsilon", 1e-3))
        y = (y - mean) * (scale * torch.rsqrt(var + eps)) + offset
        k = 4
    for o in ops[1:]:
        alpha = None
        if o == "Prelu":
            if k >= len(args):
                raise WeightsError(f"node {node.name!r}: fused Prelu without alpha operand")
            alpha = per_channel(args[k][0])
            k += 1
        y = _activation(o, y, node, alpha)
    return y


@_op("Conv2D", "_FusedConv2D")
def _conv2d(m: TFJSModule, node: TFJSNode, a: list[_Val]) -> _Val:
    nhwc, s, d = _conv_args(node)
    x = _conv_input(a[0], nhwc)
    w = a[1][0]  # HWIO
    if w.ndim != 4:
        raise WeightsError(f"node {node.name!r}: filter must be 4-D HWIO, got {tuple(w.shape)}")
    k = (int(w.shape[0]), int(w.shape[1]))
    groups = x.shape[1] // int(w.shape[2])
    x, pad = _conv_padding(node, x, k, s, d, nhwc)
    y = F.conv2d(x, w.permute(3, 2, 0, 1), None, s, pad, d, groups)
    if node.op == "_FusedConv2D":
        y = _apply_fused(m, node, y, a[2:], 1)
    return (y, True) if nhwc else (y, False)


@_op("DepthwiseConv2dNative", "FusedDepthwiseConv2dNative")
def _depthwise(m: TFJSModule, node: TFJSNode, a: list[_Val]) -> _Val:
    nhwc, s, d = _conv_args(node)
    x = _conv_input(a[0], nhwc)
    w = a[1][0]  # H, W, C, multiplier
    if w.ndim != 4:
        raise WeightsError(f"node {node.name!r}: depthwise filter must be 4-D, got {tuple(w.shape)}")
    kh, kw, c, mult = (int(v) for v in w.shape)
    # TF output channel c * mult + q reads input channel c: torch groups=C with weight[c * mult + q, 0]
    wt = w.reshape(kh, kw, c * mult).permute(2, 0, 1).unsqueeze(1)
    x, pad = _conv_padding(node, x, (kh, kw), s, d, nhwc)
    y = F.conv2d(x, wt, None, s, pad, d, c)
    if node.op == "FusedDepthwiseConv2dNative":
        y = _apply_fused(m, node, y, a[2:], 1)
    return y, nhwc


def _pool(node: TFJSNode, a: list[_Val], kind: str) -> _Val:
    fmt = node.attrs.get("data_format", "NHWC")
    nhwc = fmt == "NHWC"
    x = _conv_input(a[0], nhwc)
    k, s = _spatial(node, "ksize", nhwc), _spatial(node, "strides", nhwc)
    mode = node.attrs.get("padding", "VALID")
    if mode == "SAME":
        (t, b), (lft, r) = (_same_padding(x.shape[2 + i], k[i], s[i], 1) for i in range(2))
    elif mode == "VALID":
        t = b = lft = r = 0
    else:
        raise UnsupportedOpError([(f"{node.op} with padding {mode}", node.name)])
    if kind == "max":
        xp = F.pad(x, (lft, r, t, b), value=-math.inf) if (t or b or lft or r) else x
        y = F.max_pool2d(xp, k, s)
    else:  # TF averages over the valid (unpadded) pixels only
        xp = F.pad(x, (lft, r, t, b))
        y = F.avg_pool2d(xp, k, s)
        if t or b or lft or r:
            ones = F.pad(torch.ones_like(x[:1, :1]), (lft, r, t, b))
            y = y / F.avg_pool2d(ones, k, s)
    return y, nhwc


_OPS["MaxPool"] = lambda m, node, a: _pool(node, a, "max")
_OPS["AvgPool"] = lambda m, node, a: _pool(node, a, "avg")


@_op("MatMul", "_FusedMatMul")
def _matmul(m: TFJSModule, node: TFJSNode, a: list[_Val]) -> _Val:
    x, w = _to_tf(a[0]), _to_tf(a[1])
    if node.attrs.get("transpose_a", False):
        x = x.transpose(-1, -2)
    if node.attrs.get("transpose_b", False):
        w = w.transpose(-1, -2)
    y = x @ w
    if node.op == "_FusedMatMul":
        y = _apply_fused(m, node, y, a[2:], -1)
    return y, False


@_op("Pad", "PadV2")
def _pad(m: TFJSModule, node: TFJSNode, a: list[_Val]) -> _Val:
    t, flag = a[0]
    p = m._ints(node, node.inputs[1])
    if len(p) != 2 * t.ndim:
        raise WeightsError(f"node {node.name!r}: paddings {p} do not match rank {t.ndim}")
    pairs = [(p[2 * i], p[2 * i + 1]) for i in range(t.ndim)]
    if flag:
        pairs = [pairs[0], pairs[3], pairs[1], pairs[2]]
    value = float(a[2][0].detach().reshape(-1)[0]) if node.op == "PadV2" and len(a) > 2 else 0.0
    flat = [v for pair in reversed(pairs) for v in pair]
    return F.pad(t, flat, value=value), flag


def _axes(m: TFJSModule, node: TFJSNode, rank: int) -> list[int]:
    axes = m._ints(node, node.inputs[1])
    return sorted({ax % rank for ax in axes})


def _reduce(fn: Callable[..., torch.Tensor]) -> _OpFn:
    def run(m: TFJSModule, node: TFJSNode, a: list[_Val]) -> _Val:
        t, flag = a[0]
        axes = _axes(m, node, t.ndim)
        keep = bool(node.attrs.get("keep_dims", False))
        if not axes:
            return t, flag
        if flag:
            y = fn(t, [_NHWC_TO_NCHW_AXIS[ax] for ax in axes], True)
            if keep:
                return y, True
            y = y.permute(0, 2, 3, 1)  # TF layout, reduced axes of size 1
            for ax in reversed(axes):
                y = y.squeeze(ax)
            return y, False
        return fn(t, axes, keep), False

    return run


_OPS.update({
    "Sum": _reduce(lambda t, ax, k: t.sum(dim=ax, keepdim=k)),
    "Mean": _reduce(lambda t, ax, k: t.mean(dim=ax, keepdim=k)),
    "Max": _reduce(lambda t, ax, k: t.amax(dim=ax, keepdim=k)),
    "Min": _reduce(lambda t, ax, k: t.amin(dim=ax, keepdim=k)),
    "Prod": _reduce(lambda t, ax, k: _prod(t, ax, k)),
})


def _prod(t: torch.Tensor, axes: list[int], keep: bool) -> torch.Tensor:
    for ax in sorted(axes, reverse=True):
        t = t.prod(dim=ax, keepdim=keep)
    return t


@_op("Squeeze")
def _squeeze(m: TFJSModule, node: TFJSNode, a: list[_Val]) -> _Val:
    t = _to_tf(a[0])
    dims = list(node.attrs.get("squeeze_dims", []))
    if not dims:
        return t.squeeze(), False
    for ax in sorted({d % t.ndim for d in dims}, reverse=True):
        if t.shape[ax] != 1:
            raise WeightsError(f"node {node.name!r}: cannot squeeze axis {ax} of size {t.shape[ax]}")
        t = t.squeeze(ax)
    return t, False


@_op("Reshape")
def _reshape(m: TFJSModule, node: TFJSNode, a: list[_Val]) -> _Val:
    shape = m._ints(node, node.inputs[1])
    return _to_tf(a[0]).reshape(shape), False


@_op("Softmax")
def _softmax(m: TFJSModule, node: TFJSNode, a: list[_Val]) -> _Val:
    t, flag = a[0]
    return torch.softmax(t, dim=1 if flag else -1), flag


@_op("ConcatV2")
def _concat(m: TFJSModule, node: TFJSNode, a: list[_Val]) -> _Val:
    parts = a[:-1]
    axis = m._ints(node, node.inputs[-1])[0]
    rank = parts[0][0].ndim
    axis %= rank
    if all(f for _, f in parts):
        return torch.cat([t for t, _ in parts], dim=_NHWC_TO_NCHW_AXIS[axis]), True
    return torch.cat([_to_tf(v) for v in parts], dim=axis), False


SUPPORTED_OPS: frozenset[str] = frozenset(_OPS) | {"Placeholder", "Const"}
"""TF op types the interpreter executes."""
