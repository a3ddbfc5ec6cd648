"""TF.js graph models: parse ``model.json`` (a TensorFlow GraphDef as JSON) and its weight shards into a graph.

:func:`load_tfjs_graph` parses both into a :class:`TFJSGraph` (editable: nodes, attributes and constants can be
rewritten before use); :meth:`TFJSGraph.to_module` builds the executable
:class:`~nullswap.convert.tfjs.module.TFJSModule`.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nullswap.convert.tfjs.weights import _split_groups, read_weights
from nullswap.errors import WeightsError

if TYPE_CHECKING:
    from nullswap.convert.tfjs.module import TFJSModule

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


class UnsupportedOpError(WeightsError):
    """A TF.js graph uses an op (or fused op) the interpreter does not implement."""

    def __init__(self, ops: Sequence[tuple[str, str]]) -> None:
        self.ops = list(ops)
        listed = ", ".join(f"{op} (node {name!r})" for op, name in self.ops[:10])
        more = f" and {len(self.ops) - 10} more" if len(self.ops) > 10 else ""
        from nullswap.convert.tfjs.ops import SUPPORTED_OPS

        super().__init__(f"unsupported TF.js op(s): {listed}{more}; supported: {', '.join(sorted(SUPPORTED_OPS))}")


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

    def to_module(self, outputs: Sequence[str] | None = None, *, nchw: bool = True,
                  fast: bool | None = None) -> TFJSModule:
        """Build the executable module for ``outputs`` (default: :attr:`outputs`).

        Args:
            outputs: node names to compute; only the nodes they depend on are kept.
            nchw: 4-D inputs are given, and 4-D outputs returned, as NCHW torch tensors (``False``: NHWC, as in TF).
            fast: run the compiled fast plan (see :class:`TFJSModule`; ``None``: the default).

        Raises:
            UnsupportedOpError: naming every unsupported op the outputs depend on.
        """
        from nullswap.convert.tfjs.module import TFJSModule

        return TFJSModule(self, list(outputs) if outputs else list(self.outputs), nchw=nchw, fast=fast)


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


__all__ = ["PathLike", "TFJSGraph", "TFJSNode", "UnsupportedOpError", "load_tfjs_graph", "parse_tfjs_model"]
