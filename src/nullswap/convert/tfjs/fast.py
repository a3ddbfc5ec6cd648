"""The fast execution plan of a :class:`~nullswap.convert.tfjs.module.TFJSModule`.

The plain path interprets the graph node by node: every call re-permutes each filter from TF's HWIO layout, adds
biases and BatchNorm constants in separate passes, runs each activation as its own op and looks values up by name.
The plan, built once from the graph, computes the same function with less work per call:

* every NHWC convolution becomes one step calling ``F.conv2d`` with its filter already in the layout it wants (OIHW,
  contiguous) and its bias passed to the convolution;
* a zero ``Pad`` feeding a convolution, and TF ``SAME`` padding, become the convolution's own padding when symmetric
  (a single ``F.pad`` otherwise);
* per-channel ``Mul`` / ``Add`` / ``Sub`` by constants right after a convolution (BatchNorm as the converter left it)
  are folded into its weights and bias; this is exact up to float rounding;
* the activation that follows runs in the same step, in place when no gradient is being recorded: chains of
  ``Relu`` / ``Relu6`` / ``Minimum`` / ``Maximum`` by scalar constants become one clamp, ``Prelu`` and the
  ``max(x, 0) + a * min(x, 0)`` pattern become ``F.prelu``;
* values live in a list indexed by slot; 4-D activations are stored channels-last (NHWC in memory, as in TF), where
  CPU depthwise convolutions are 2-3x faster.

Every other node runs through the same op functions as the plain path. Derived tensors (filters, biases, clamp
bounds, PReLU slopes) are computed from the module's parameters and cached; :class:`FastPlan` recomputes them when a
parameter was modified in place (its version counter moved), after ``.to()`` / ``.double()`` (the module drops the
cache) and, without caching, on every call where a parameter requires grad while grad mode is on, so gradients still
reach the filters, biases, BatchNorm constants and PReLU slopes (not the scalar clamp bounds, which are read as
numbers). Assigning ``param.data`` directly bypasses both checks; call :meth:`FastPlan.invalidate` then.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from nullswap.convert.tfjs.graph import TFJSNode
from nullswap.convert.tfjs.ops import _OPS, _activation, _same_padding, _spatial, _to_nchw, _Val
from nullswap.errors import WeightsError

if TYPE_CHECKING:
    from nullswap.convert.tfjs.module import TFJSModule

log = logging.getLogger(__name__)

_AFFINE = {"Mul": "mul", "Add": "add", "AddV2": "add", "BiasAdd": "add", "Sub": "sub"}
_CLAMP_OPS = {"Relu", "Relu6", "Minimum", "Maximum"}
_CONVS = {"Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative"}

_Step = Callable[[list], None]


@dataclass
class _Chain:
    """A convolution with what is folded into it: a zero ``Pad`` before, affine constants and an activation after.

    Attributes:
        conv: the convolution node.
        src: the node feeding the chain (the ``Pad``'s input when a ``Pad`` was folded).
        out: the last node of the chain (whose value the step produces).
        channels: output channels of the convolution.
        kernel: (height, width) of the filter.
        pre_pad: (top, bottom, left, right) zero padding of a folded ``Pad``.
        affine: ``("mul" | "add" | "sub", const)`` applied, in order, to the convolution's output.
        clamp: ``("relu" | "relu6" | "min" | "max", const or "")`` composed into one clamp.
        prelu: the PReLU slope: ``("const", name)`` or ``("arg", name)`` (an operand of a fused convolution).
        other: a fused activation of the convolution run as in the plain path (``Elu``, ``Tanh``, ...).
        zeros: scalar constants that must stay 0 for the ``max(x, 0) + a * min(x, 0)`` rewrite to hold.
        absorbed: the nodes the chain replaces besides ``conv``.
    """

    conv: TFJSNode
    src: str
    out: str
    channels: int
    kernel: tuple[int, int]
    pre_pad: tuple[int, int, int, int] = (0, 0, 0, 0)
    affine: list[tuple[str, str]] = field(default_factory=list)
    clamp: list[tuple[str, str]] = field(default_factory=list)
    prelu: str | None = None
    other: str | None = None
    zeros: list[str] = field(default_factory=list)
    absorbed: list[str] = field(default_factory=list)


@dataclass
class _Derived:
    """Tensors of one chain computed from the parameters: filter (OIHW), bias, clamp bounds, PReLU slope."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    lo: float | None
    hi: float | None
    alpha: torch.Tensor | None


class FastPlan:
    """The compiled plan of a module; see the module docstring.

    Args:
        module: the module whose graph (``_steps``) and constants the plan runs.
        channels_last: store 4-D activations channels-last.
    """

    def __init__(self, module: TFJSModule, *, channels_last: bool = True) -> None:
        self.channels_last = channels_last
        steps = module._steps
        self._consts = set(module._param_key) | set(module._int_consts)
        outputs = set(module.output_names)
        consumers: dict[str, list[tuple[TFJSNode, int]]] = {}
        for n in steps:
            for k, inp in enumerate(n.inputs):
                consumers.setdefault(inp, []).append((n, k))
        self._consumers, self._outputs, self._m = consumers, outputs, module
        self._by_name = {n.name: n for n in steps}
        chains: dict[str, _Chain] = {}  # by conv name
        absorbed: set[str] = set()
        for n in steps:
            if n.op in _CONVS and n.name not in absorbed:
                chain = self._chain(n)
                if chain is not None:
                    chains[n.name] = chain
                    absorbed.update(chain.absorbed)
        self.chains: list[_Chain] = []  # in program order; self._state[i] holds the derived tensors of chains[i]
        self._state: list[_Derived] = []
        # slots: one per value (inputs, consts, node outputs)
        self._slot: dict[str, int] = {}

        def slot(name: str) -> int:
            if name not in self._slot:
                self._slot[name] = len(self._slot)
            return self._slot[name]

        self.input_slots = [slot(n) for n in module.input_names]
        self._const_names = sorted(self._consts)
        for name in self._const_names:
            slot(name)
        program: list[tuple[list[str], str, _Step]] = []  # (names read, name written, step)
        for n in steps:
            if n.op == "Placeholder" or n.name in absorbed:
                continue
            if n.name in chains:
                c = chains[n.name]
                program.append(([c.src], c.out, self._conv_step(c, slot(c.src), slot(c.out))))
            else:
                program.append((list(n.inputs), n.name, self._generic_step(n, [slot(i) for i in n.inputs],
                                                                           slot(n.name))))
        last: dict[str, int] = {}
        for i, (reads, _, _) in enumerate(program):
            for r in reads:
                last[r] = i
        self.steps: list[_Step] = [s for _, _, s in program]
        self.free_after: list[list[int]] = [[] for _ in program]
        for name, i in last.items():
            if name not in outputs and name not in self._consts:
                self.free_after[i].append(self._slot[name])
        self.output_slots = [slot(n) for n in module.output_names]
        self.n_slots = len(self._slot)
        self._template: list = []
        self._key: tuple | None = None
        self._params: list[torch.Tensor] | None = None  # the parameters read, refreshed with the cache
        log.debug("fast plan: %d steps for %d nodes, %d fused convolutions absorbing %d nodes", len(self.steps),
                  len(steps), len(self.chains), len(absorbed))

    # ------------------------------------------------------------------------------------------ building chains
    def _sole(self, name: str) -> TFJSNode | None:
        """The only consumer of ``name`` (``None`` when it has several, is read twice, or is an output)."""
        uses = self._consumers.get(name, [])
        if name in self._outputs or len(uses) != 1:
            return None
        return uses[0][0]

    def _float_const(self, name: str) -> np.ndarray | None:
        m = self._m
        if name not in m._param_key:
            return None
        return m.consts[m._param_key[name]].detach().cpu().numpy()

    def _per_channel(self, name: str, channels: int) -> bool:
        v = self._float_const(name)
        if v is None or v.ndim > 4:
            return False
        return all(d == 1 for d in v.shape[:-1]) and (v.ndim == 0 or v.shape[-1] in (1, channels))

    def _scalar(self, name: str) -> bool:
        v = self._float_const(name)
        return v is not None and v.ndim <= 4 and v.size == 1

    def _chain(self, conv: TFJSNode) -> _Chain | None:
        if conv.attrs.get("data_format", "NHWC") != "NHWC" or not conv.inputs:
            return None
        if any(i not in self._m._param_key for i in conv.inputs[1:]):
            return None  # a computed filter or fused operand: the plain op handles it
        w = self._float_const(conv.inputs[1])
        if w is None or w.ndim != 4:
            return None
        depthwise = "Depthwise" in conv.op
        channels = int(w.shape[2] * w.shape[3]) if depthwise else int(w.shape[3])
        chain = _Chain(conv, conv.inputs[0], conv.name, channels, (int(w.shape[0]), int(w.shape[1])))
        pad = self._by_name.get(conv.inputs[0])
        ints = self._m._int_consts
        if pad is not None and pad.op == "Pad" and self._sole(pad.name) is conv and pad.inputs[1] in ints:
            p = [int(v) for v in np.asarray(ints[pad.inputs[1]]).reshape(-1)]
            if len(p) == 8 and p[0] == p[1] == p[6] == p[7] == 0 and min(p) >= 0:
                chain.pre_pad = (p[2], p[3], p[4], p[5])
                chain.src = pad.inputs[0]
                chain.absorbed.append(pad.name)
        fused = list(conv.attrs.get("fused_ops", [])) if "Fused" in conv.op else []
        acts = fused[1:]
        if len(acts) > 1:
            return None
        if acts:
            a = acts[0]
            if a in ("Relu", "Relu6"):
                chain.clamp.append((a.lower(), ""))
            elif a == "Prelu":
                k = 1 if fused[0] == "BiasAdd" else 4
                if len(conv.inputs) < 2 + k + 1:
                    return None
                chain.prelu = conv.inputs[2 + k]
                if not self._per_channel(chain.prelu, channels):
                    return None
            else:
                chain.other = a
        if not acts:
            self._extend_affine(chain)
        if chain.prelu is None and chain.other is None:
            self._extend_clamp(chain)
            if not chain.clamp:
                self._extend_prelu(chain)
        return chain

    def _extend_affine(self, chain: _Chain) -> None:
        while True:
            n = self._sole(chain.out)
            if n is None or n.op not in _AFFINE or len(n.inputs) != 2:
                return
            k = n.inputs.index(chain.out)
            other = n.inputs[1 - k]
            if other == chain.out or (n.op in ("Sub", "BiasAdd") and k != 0):
                return
            if not self._per_channel(other, chain.channels):
                return
            chain.affine.append((_AFFINE[n.op], other))
            chain.absorbed.append(n.name)
            chain.out = n.name

    def _extend_clamp(self, chain: _Chain) -> None:
        while True:
            n = self._sole(chain.out)
            if n is None or n.op not in _CLAMP_OPS:
                return
            if n.op in ("Relu", "Relu6"):
                if len(n.inputs) != 1:
                    return
                chain.clamp.append((n.op.lower(), ""))
            else:
                if len(n.inputs) != 2:
                    return
                other = n.inputs[1 - n.inputs.index(chain.out)]
                if other == chain.out or not self._scalar(other):
                    return
                chain.clamp.append(("min" if n.op == "Minimum" else "max", other))
            chain.absorbed.append(n.name)
            chain.out = n.name

    def _extend_prelu(self, chain: _Chain) -> None:
        y = chain.out
        n = self._sole(y)
        if n is not None and n.op == "Prelu" and len(n.inputs) == 2 and n.inputs[0] == y:
            if self._per_channel(n.inputs[1], chain.channels):
                chain.prelu = n.inputs[1]
                chain.absorbed.append(n.name)
                chain.out = n.name
            return
        # max(y, 0) + alpha * min(y, 0)
        uses = self._consumers.get(y, [])
        if y in self._outputs or len(uses) != 2:
            return
        by_op = {u.op: u for u, _ in uses}
        mx, mn = by_op.get("Maximum"), by_op.get("Minimum")
        if mx is None or mn is None or len(mx.inputs) != 2 or len(mn.inputs) != 2:
            return
        c0, c1 = mx.inputs[1 - mx.inputs.index(y)], mn.inputs[1 - mn.inputs.index(y)]
        if not (self._scalar(c0) and self._scalar(c1)):
            return
        mul = self._sole(mn.name)
        if mul is None or mul.op != "Mul" or len(mul.inputs) != 2:
            return
        alpha = mul.inputs[1 - mul.inputs.index(mn.name)]
        if not self._per_channel(alpha, chain.channels):
            return
        add = self._sole(mul.name)
        if add is None or add.op not in ("Add", "AddV2") or self._sole(mx.name) is not add:
            return
        if sorted(add.inputs) != sorted([mx.name, mul.name]):
            return
        chain.prelu, chain.zeros = alpha, [c0, c1]
        chain.absorbed += [mx.name, mn.name, mul.name, add.name]
        chain.out = add.name

    # ------------------------------------------------------------------------------------------ derived tensors
    def invalidate(self) -> None:
        """Drop the cached derived tensors (recomputed on the next call)."""
        self._key = None
        self._params = None

    def _derive(self, c: _Chain) -> _Derived:
        m = self._m

        def const(name: str) -> torch.Tensor:
            return m.consts[m._param_key[name]]

        def vec(name: str) -> torch.Tensor:
            v = const(name).reshape(-1)
            return v.expand(c.channels) if v.numel() == 1 else v

        w = const(c.conv.inputs[1])
        if "Depthwise" in c.conv.op:
            kh, kw, ci, mult = (int(v) for v in w.shape)
            w = w.reshape(kh, kw, ci * mult).permute(2, 0, 1).unsqueeze(1)
        else:
            w = w.permute(3, 2, 0, 1)
        bias: torch.Tensor | None = None
        fused = list(c.conv.attrs.get("fused_ops", [])) if "Fused" in c.conv.op else []
        if fused and fused[0] == "BiasAdd":
            bias = vec(c.conv.inputs[2])
        elif fused and fused[0] == "FusedBatchNorm":
            scale, offset, mean, var = (vec(n) for n in c.conv.inputs[2:6])
            k = scale * torch.rsqrt(var + float(c.conv.attrs.get("epsilon", 1e-3)))
            w = w * k.view(-1, 1, 1, 1)
            bias = offset - mean * k
        for kind, name in c.affine:
            v = vec(name)
            if kind == "mul":
                w = w * v.view(-1, 1, 1, 1)
                bias = None if bias is None else bias * v
            elif kind == "add":
                bias = v if bias is None else bias + v
            else:
                bias = -v if bias is None else bias - v
        lo: float | None = None
        hi: float | None = None
        if c.clamp:
            lo, hi = -math.inf, math.inf
            for kind, name in c.clamp:
                if kind == "relu":
                    lo, hi = max(lo, 0.0), max(hi, 0.0)
                elif kind == "relu6":
                    lo, hi = min(max(lo, 0.0), 6.0), min(max(hi, 0.0), 6.0)
                else:
                    v = float(const(name).detach().reshape(-1)[0])
                    lo, hi = (max(lo, v), max(hi, v)) if kind == "max" else (min(lo, v), min(hi, v))
            lo, hi = (None if lo == -math.inf else lo), (None if hi == math.inf else hi)
        for z in c.zeros:
            if float(const(z).detach().reshape(-1)[0]) != 0.0:
                raise PlanInvalidError(f"constant {z!r} of the PReLU pattern ending at {c.out!r} is no longer 0")
        alpha = vec(c.prelu).reshape(-1) if c.prelu else None
        if alpha is not None and alpha.numel() == 1:
            alpha = alpha.expand(c.channels)
        w = w.contiguous(memory_format=torch.channels_last) if self.channels_last else w.contiguous()
        if alpha is not None:
            alpha = alpha.contiguous()
        return _Derived(w, None if bias is None else bias.contiguous(), lo, hi, alpha)

    def prepare(self, ref: torch.Tensor) -> None:
        """Make the derived tensors and the constant slots current for a call whose first input is ``ref``."""
        params = self._params
        if params is None:
            params = self._params = list(self._m.consts.values())
        version = 0
        needs_grad = False
        for p in params:
            version += p._version
            needs_grad = needs_grad or p.requires_grad
        live = needs_grad and torch.is_grad_enabled()
        key = (ref.device, version, len(params))
        if not live and key == self._key:
            return
        if live:
            self._key = None
            self._build(ref)
            return
        with torch.no_grad():
            self._build(ref)
        self._key = key

    def _build(self, ref: torch.Tensor) -> None:
        m = self._m
        self._state[:] = [self._derive(c) for c in self.chains]
        template: list = [None] * self.n_slots
        for name in self._const_names:
            if name in m._param_key:
                template[self._slot[name]] = (m.consts[m._param_key[name]], False)
            else:
                template[self._slot[name]] = (torch.as_tensor(m._int_consts[name], device=ref.device), False)
        self._template = template

    # ------------------------------------------------------------------------------------------------- steps
    def _generic_step(self, node: TFJSNode, ins: list[int], out: int) -> _Step:
        fn, m = _OPS[node.op], self._m

        def run(vals: list) -> None:
            vals[out] = fn(m, node, [vals[i] for i in ins])

        return run

    def _conv_step(self, c: _Chain, src: int, out: int) -> _Step:
        index = len(self.chains)
        self.chains.append(c)
        node = c.conv
        nhwc_s = _spatial(node, "strides", True)
        dil = _spatial(node, "dilations", True)
        mode = node.attrs.get("padding", "VALID")
        explicit = list(node.attrs.get("explicit_paddings", []))
        if mode == "EXPLICIT" and len(explicit) != 8:
            raise WeightsError(f"node {node.name!r}: EXPLICIT padding needs 8 explicit_paddings, got {explicit}")
        w_shape = tuple(int(v) for v in self._float_const(node.inputs[1]).shape)
        kernel = (w_shape[0], w_shape[1])
        depthwise = "Depthwise" in node.op
        in_ch = w_shape[2]
        pads: dict[tuple[int, int], tuple[tuple[int, int, int, int] | None, tuple[int, int]]] = {}
        cl = self.channels_last
        state = self._state
        act_other = c.other

        def padding(h: int, w: int) -> tuple[tuple[int, int, int, int] | None, tuple[int, int]]:
            t0, b0, l0, r0 = c.pre_pad
            h, w = h + t0 + b0, w + l0 + r0
            if mode == "SAME":
                (t, b), (lft, r) = (_same_padding((h, w)[i], kernel[i], nhwc_s[i], dil[i]) for i in range(2))
            elif mode == "EXPLICIT":
                t, b, lft, r = explicit[2], explicit[3], explicit[4], explicit[5]
            else:
                t = b = lft = r = 0
            t, b, lft, r = t + t0, b + b0, lft + l0, r + r0
            if t == b and lft == r:
                return None, (t, lft)
            return (lft, r, t, b), (0, 0)

        def run(vals: list) -> None:
            t, flag = vals[src]
            if t.ndim != 4:
                raise WeightsError(f"convolution input must be 4-D, got shape {tuple(t.shape)}")
            x = t if flag else _to_nchw(t)
            if cl and not x.is_contiguous(memory_format=torch.channels_last):
                x = x.contiguous(memory_format=torch.channels_last)
            hw = (x.shape[2], x.shape[3])
            p = pads.get(hw)
            if p is None:
                p = pads[hw] = padding(*hw)
            if p[0] is not None:
                x = _zero_pad(x, p[0])
            d = state[index]
            groups = in_ch if depthwise else x.shape[1] // in_ch
            y = F.conv2d(x, d.weight, d.bias, nhwc_s, p[1], dil, groups)
            vals[out] = (_act(y, d, node, act_other), True)

        return run

    # ------------------------------------------------------------------------------------------------ running
    def run(self, inputs: tuple[torch.Tensor, ...], nchw: bool) -> list[_Val]:
        """Execute the plan; returns the output values (tensor, NCHW-stored flag) in output order."""
        ref = inputs[0] if inputs else next(iter(self._m.consts.values()))
        self.prepare(ref)
        vals = list(self._template)
        for s, x in zip(self.input_slots, inputs, strict=True):
            flag = x.ndim == 4 and nchw
            if flag and self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            vals[s] = (x, flag)
        for step, free in zip(self.steps, self.free_after, strict=True):
            step(vals)
            for i in free:
                vals[i] = None
        return [vals[i] for i in self.output_slots]


def _act(y: torch.Tensor, d: _Derived, node: TFJSNode, other: str | None) -> torch.Tensor:
    """The chain's activation on ``y`` (channels on axis 1), in place when no gradient is recorded."""
    if d.alpha is not None:
        return F.prelu(y, d.alpha)
    if d.lo is not None or d.hi is not None:
        if y.requires_grad:
            return torch.clamp(y, d.lo, d.hi)
        if d.lo == 0.0 and d.hi is None:
            return y.relu_()
        return y.clamp_(d.lo, d.hi)
    if other is not None:
        return _activation(other, y, node, None)
    return y


def _zero_pad(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """``F.pad(x, pad)`` (left, right, top, bottom >= 0), about 2x faster on a channels-last ``x``."""
    if not x.is_contiguous(memory_format=torch.channels_last) or x.is_contiguous():
        return F.pad(x, pad)
    lft, r, t, b = pad
    n, c, h, w = x.shape
    out = torch.empty((n, h + t + b, w + lft + r, c), dtype=x.dtype, device=x.device).permute(0, 3, 1, 2)
    for view in (out[:, :, :t], out[:, :, h + t:], out[:, :, :, :lft], out[:, :, :, w + lft:]):
        if view.numel():
            view.zero_()
    out[:, :, t:t + h, lft:lft + w].copy_(x)
    return out


class PlanInvalidError(WeightsError):
    """A structural assumption of the plan no longer holds for the current constants."""
