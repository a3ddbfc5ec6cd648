"""The TF ops of the TF.js interpreter, in PyTorch, and the NHWC <-> NCHW layout rules they share.

Layout: TensorFlow graphs here are NHWC. Internally every 4-D activation is kept NCHW (flagged as such); constants
that broadcast against it are permuted to match, and layout-sensitive ops (padding, reductions, squeeze, reshape,
matmul) convert axes or fall back to the TF layout. TF ``SAME`` padding is reproduced exactly, including its
asymmetric split (the extra row/column goes to the bottom/right). Supported ops: :data:`SUPPORTED_OPS`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from nullswap.convert.tfjs.graph import TFJSNode, UnsupportedOpError
from nullswap.errors import WeightsError

if TYPE_CHECKING:
    from nullswap.convert.tfjs.module import TFJSModule

log = logging.getLogger(__name__)

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


_OpFn = Callable[..., _Val]  # (module: TFJSModule, node: TFJSNode, args: list[_Val]) -> _Val
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


__all__ = ["SUPPORTED_OPS"]
