"""The executable TF.js graph: an ``nn.Module`` running a graph with PyTorch ops.

:class:`TFJSModule` runs a :class:`~nullswap.convert.tfjs.graph.TFJSGraph` in topological order with the ops of
:mod:`nullswap.convert.tfjs.ops`.

Float constants become parameters, so ``.to(device)``, ``.double()`` and ``state_dict`` work and gradients flow to the
inputs.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from nullswap.convert.tfjs.fast import FastPlan, PlanInvalidError
from nullswap.convert.tfjs.graph import TFJSGraph, TFJSNode, UnsupportedOpError
from nullswap.convert.tfjs.ops import _FUSED, _OPS, SUPPORTED_OPS, _to_tf, _unsupported_attrs, _unsupported_fused, _Val
from nullswap.errors import WeightsError

log = logging.getLogger(__name__)


class TFJSModule(nn.Module):
    """Executes a :class:`TFJSGraph` with PyTorch ops.

    ``forward(*inputs)`` takes one tensor per graph input (``Placeholder``, in graph order; 4-D inputs NCHW when
    ``nchw``) and returns the single output tensor, or a tuple of them in the order of ``outputs``.

    Args:
        graph: the parsed graph.
        outputs: node names to compute.
        nchw: 4-D inputs are NCHW and 4-D outputs are returned NCHW (``False``: NHWC, as in TensorFlow).
        fast: run the compiled plan of :mod:`~nullswap.convert.tfjs.fast` (same outputs up to float rounding,
            fewer passes); ``False`` interprets node by node. ``None``: on unless the environment variable
            ``NULLSWAP_TFJS_FAST`` is ``0``. The attribute :attr:`fast` can be flipped at any time.
    """

    def __init__(self, graph: TFJSGraph, outputs: Sequence[str], *, nchw: bool = True,
                 fast: bool | None = None) -> None:
        super().__init__()
        self.nchw = nchw
        self.fast = os.environ.get("NULLSWAP_TFJS_FAST", "1") != "0" if fast is None else bool(fast)
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
        self._plan: FastPlan | None = FastPlan(self)

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

    def _apply(self, fn, recurse=True):  # noqa: ANN001, ANN202 (nn.Module's signature)
        if getattr(self, "_plan", None) is not None:
            self._plan.invalidate()  # .to() / .double() / ...: the derived tensors follow on the next call
        return super()._apply(fn, recurse)

    # ----------------------------------------------------------------------------------------------- forward
    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Run the graph; see the class docstring."""
        if len(inputs) != len(self.input_names):
            raise WeightsError(f"graph takes {len(self.input_names)} input(s) {self.input_names}, got {len(inputs)}")
        if self.fast and self._plan is not None:
            try:
                vals = self._plan.run(inputs, self.nchw)
            except PlanInvalidError as e:
                log.warning("TF.js fast plan disabled, interpreting node by node from now on: %s", e)
                self._plan = None
            else:
                outs = [(t.contiguous() if flag else t) if self.nchw else _to_tf((t, flag)) for t, flag in vals]
                return outs[0] if len(outs) == 1 else tuple(outs)
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


__all__ = ["TFJSModule"]
