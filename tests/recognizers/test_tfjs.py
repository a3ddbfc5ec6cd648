"""The TF.js graph interpreter on small synthetic graphs: parsing, dequantisation, TF padding, gradients."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nullswap.errors import NullswapError, WeightsError
from nullswap.recognizers.tfjs import (
    SUPPORTED_OPS,
    TFJSGraph,
    UnsupportedOpError,
    load_tfjs_graph,
    parse_tfjs_model,
    read_weights,
)

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------------------------------------ graph builder
def _attr(v: object) -> dict:
    if isinstance(v, bool):
        return {"b": v}
    if isinstance(v, int):
        return {"i": str(v)}
    if isinstance(v, float):
        return {"f": v}
    if isinstance(v, str):
        return {"s": base64.b64encode(v.encode()).decode()}
    if isinstance(v, list) and all(isinstance(x, str) for x in v) and v:
        return {"list": {"s": [base64.b64encode(x.encode()).decode() for x in v]}}
    if isinstance(v, list):
        return {"list": {"i": [str(x) for x in v]}}
    raise TypeError(v)


class G:
    """Collects nodes and constants and writes ``model.json`` + ``model.bin`` the way tfjs-converter does."""

    def __init__(self) -> None:
        self.nodes: list[dict] = []
        self.consts: dict[str, np.ndarray] = {}
        self.ops: set[str] = set()

    def node(self, name: str, op: str, inputs: list[str] = (), **attrs: object) -> str:
        self.nodes.append({"name": name, "op": op, "input": list(inputs),
                           "attr": {k: _attr(v) for k, v in attrs.items()}})
        self.ops.add(op)
        return name

    def const(self, name: str, value: np.ndarray) -> str:
        self.consts[name] = np.asarray(value)
        return self.node(name, "Const")

    def rand(self, name: str, *shape: int, scale: float = 0.5) -> str:
        return self.const(name, (RNG.standard_normal(shape) * scale).astype(np.float32))

    def model(self, outputs: list[str] | None = None) -> tuple[dict, bytes]:
        specs, data = [], b""
        for name, v in self.consts.items():
            dtype = "int32" if v.dtype.kind in "iu" else "float32"
            arr = v.astype(np.int32 if dtype == "int32" else np.float32)
            specs.append({"name": name, "shape": list(arr.shape), "dtype": dtype})
            data += arr.tobytes()
        m = {"format": "graph-model", "generatedBy": "test", "convertedBy": "test",
             "modelTopology": {"node": self.nodes, "library": {}, "versions": {}},
             "weightsManifest": [{"paths": ["model.bin"], "weights": specs}]}
        if outputs:
            m["signature"] = {"outputs": {o: {"name": o + ":0"} for o in outputs}}
        return m, data

    def write(self, folder: Path, outputs: list[str] | None = None) -> Path:
        m, data = self.model(outputs)
        (folder / "model.json").write_text(json.dumps(m))
        (folder / "model.bin").write_bytes(data)
        return folder / "model.json"

    def graph(self, outputs: list[str] | None = None) -> TFJSGraph:
        m, data = self.model(outputs)
        return parse_tfjs_model(m, [data])


def _conv_attrs(padding: str = "SAME", stride: int = 1, **extra: object) -> dict:
    return {"padding": padding, "strides": [1, stride, stride, 1], "dilations": [1, 1, 1, 1], "data_format": "NHWC",
            **extra}


# --------------------------------------------------------------------------------------------- numpy references
def _np_same(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    out = math.ceil(size / s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def _np_conv(x: np.ndarray, w: np.ndarray, s: int, pads: tuple[tuple[int, int], tuple[int, int]],
             depthwise: bool = False, d: int = 1) -> np.ndarray:
    """Direct NHWC convolution (TF semantics) with explicit (top, bottom), (left, right) zero padding."""
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    n, h, wd, c = xp.shape
    kh, kw = w.shape[:2]
    oh = (h - (kh - 1) * d - 1) // s + 1
    ow = (wd - (kw - 1) * d - 1) // s + 1
    cout = w.shape[2] * w.shape[3] if depthwise else w.shape[3]
    out = np.zeros((n, oh, ow, cout))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * s : i * s + (kh - 1) * d + 1 : d, j * s : j * s + (kw - 1) * d + 1 : d, :]
            if depthwise:
                out[:, i, j, :] = np.einsum("nhwc,hwcm->ncm", patch, w).reshape(n, -1)
            else:
                out[:, i, j, :] = np.einsum("nhwc,hwco->no", patch, w)
    return out


def _run(graph: TFJSGraph, x: np.ndarray, outputs: list[str] | None = None) -> np.ndarray:
    mod = graph.to_module(outputs, nchw=False).double()
    with torch.no_grad():
        return mod(torch.from_numpy(x)).numpy()


# ------------------------------------------------------------------------------------------------------- padding
def test_same_padding_is_asymmetric_hand_computed():
    # 4x4 ones, 3x3 ones kernel, stride 2, SAME: TF pads 0 rows on top and 1 at the bottom (likewise columns)
    g = G()
    g.node("x", "Placeholder", dtype="DT_FLOAT")
    g.const("w", np.ones((3, 3, 1, 1), np.float32))
    g.node("y", "Conv2D", ["x", "w"], **_conv_attrs("SAME", 2))
    y = _run(g.graph(["y"]), np.ones((1, 4, 4, 1)))
    np.testing.assert_allclose(y[0, :, :, 0], [[9, 6], [6, 4]])


@pytest.mark.parametrize("size,k,s,d", [(6, 3, 2, 1), (7, 3, 2, 1), (8, 2, 1, 1), (9, 5, 3, 1), (7, 3, 1, 2),
                                        (5, 4, 2, 1), (6, 1, 2, 1)])
@pytest.mark.parametrize("depthwise", [False, True])
def test_conv_same_valid_match_numpy(size, k, s, d, depthwise):
    x = RNG.standard_normal((2, size, size + 1, 3))
    w = RNG.standard_normal((k, k, 3, 2 if depthwise else 4))
    for padding in ("SAME", "VALID"):
        g = G()
        g.node("x", "Placeholder")
        g.const("w", w)
        op = "DepthwiseConv2dNative" if depthwise else "Conv2D"
        g.node("y", op, ["x", "w"], **{**_conv_attrs(padding, s), "dilations": [1, d, d, 1]})
        pads = (_np_same(size, k, s, d), _np_same(size + 1, k, s, d)) if padding == "SAME" else ((0, 0), (0, 0))
        ref = _np_conv(x, w.astype(np.float32).astype(np.float64), s, pads, depthwise, d)
        np.testing.assert_allclose(_run(g.graph(["y"]), x), ref, rtol=1e-5, atol=1e-5)
        if padding == "SAME":
            assert ref.shape[1:3] == (math.ceil(size / s), math.ceil((size + 1) / s))


def test_explicit_padding_and_pad_op_match_numpy():
    x = RNG.standard_normal((1, 5, 6, 2))
    w = RNG.standard_normal((3, 3, 2, 3)).astype(np.float32)
    g = G()
    g.node("x", "Placeholder")
    g.const("w", w)
    g.node("c", "Conv2D", ["x", "w"], **_conv_attrs("EXPLICIT", 2, explicit_paddings=[0, 0, 2, 0, 1, 3, 0, 0]))
    g.const("p", np.array([[0, 0], [1, 2], [0, 3], [0, 1]], np.int32))
    g.node("y", "Pad", ["x", "p"])
    graph = g.graph(["c", "y"])
    mod = graph.to_module(nchw=False).double()
    with torch.no_grad():
        c, y = (t.numpy() for t in mod(torch.from_numpy(x)))
    np.testing.assert_allclose(c, _np_conv(x, w.astype(np.float64), 2, ((2, 0), (1, 3))), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y, np.pad(x, ((0, 0), (1, 2), (0, 3), (0, 1))))


def test_nchw_and_nhwc_interfaces_agree():
    g = G()
    g.node("x", "Placeholder")
    g.rand("w", 3, 3, 2, 4)
    g.node("y", "Conv2D", ["x", "w"], **_conv_attrs("SAME", 2))
    graph = g.graph(["y"])
    x = torch.randn(2, 5, 6, 2)
    y_tf = graph.to_module(nchw=False)(x)
    y_nchw = graph.to_module(nchw=True)(x.permute(0, 3, 1, 2))
    torch.testing.assert_close(y_nchw.permute(0, 2, 3, 1), y_tf)


# --------------------------------------------------------------------------------------- every op, with gradcheck
def _big_graph() -> G:
    """A graph touching every supported op (shapes NHWC: x is (B, 6, 7, 2))."""
    g = G()
    g.node("x", "Placeholder", dtype="DT_FLOAT")
    g.node("xi", "Identity", ["x"])
    # conv family, SAME stride 2 on 6x7 (asymmetric along H), depthwise with multiplier 2
    g.rand("w1", 3, 3, 2, 4)
    g.node("c1", "Conv2D", ["xi", "w1"], **_conv_attrs("SAME", 2))  # (B,3,4,4)
    g.rand("wd", 3, 3, 4, 2)
    g.node("d1", "DepthwiseConv2dNative", ["c1", "wd"], **_conv_attrs("SAME", 2))  # (B,2,2,8)
    g.rand("b4", 4)
    g.rand("alpha4", 4)
    g.node("f1", "_FusedConv2D", ["x", "w1", "b4", "alpha4"], fused_ops=["BiasAdd", "Prelu"], num_args=2,
           **_conv_attrs("SAME", 2))
    g.rand("wd2", 3, 3, 4, 1)
    g.node("f2", "FusedDepthwiseConv2dNative", ["f1", "wd2", "b4"], fused_ops=["BiasAdd", "Relu6"], num_args=1,
           **_conv_attrs("VALID", 1))  # (B,1,2,4)
    g.rand("bn_s", 4)
    g.rand("bn_o", 4)
    g.rand("bn_m", 4)
    g.const("bn_v", RNG.random(4).astype(np.float32) + 0.5)
    g.node("f3", "_FusedConv2D", ["x", "w1", "bn_s", "bn_o", "bn_m", "bn_v"], fused_ops=["FusedBatchNorm", "Elu"],
           num_args=4, epsilon=0.001, **_conv_attrs("SAME", 2))
    g.node("f4", "_FusedConv2D", ["x", "w1", "b4"], fused_ops=["BiasAdd", "LeakyRelu"], num_args=1,
           leakyrelu_alpha=0.3, **_conv_attrs("SAME", 2))
    # elementwise on 4-D with broadcasting constants
    g.rand("m4", 4)
    g.const("s0", np.float32(0.7))
    g.node("e1", "Relu", ["c1"])
    g.node("e2", "Abs", ["c1"])
    g.node("e3", "Sub", ["c1", "e2"])
    g.node("e4", "Mul", ["e3", "m4"])
    g.node("e5", "Add", ["e1", "e4"])
    g.node("e5p", "Prelu", ["e5", "m4"])
    g.node("e6", "AddV2", ["e5p", "f3"])
    g.node("e7", "Maximum", ["s0", "e6"])
    g.node("e8", "Minimum", ["e6", "f4"])
    g.node("e9", "Mul", ["e7", "e8"])
    g.node("e10", "Relu6", ["e9"])
    g.node("e11", "Elu", ["e9"])
    g.node("e12", "Neg", ["e11"])
    g.node("e13", "Tanh", ["e12"])
    g.node("e14", "BiasAdd", ["e13", "b4"])
    g.node("e15", "AddN", ["e14", "e10", "f1"])
    g.node("e16", "SquaredDifference", ["e15", "m4"])
    g.node("e17", "Sqrt", ["e16"])  # > 0 almost surely
    g.node("e18", "Exp", ["e13"])
    g.node("e19", "Log", ["e18"])
    g.node("e20", "RealDiv", ["e19", "e18"])
    g.node("e21", "Div", ["e20", "e18"])
    g.node("e22", "Sigmoid", ["e21"])
    g.node("e23", "Softmax", ["e17"])
    # pooling, concat, padding
    g.node("p1", "MaxPool", ["e23"], ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME", data_format="NHWC")
    g.node("p2", "AvgPool", ["e22"], ksize=[1, 3, 3, 1], strides=[1, 2, 2, 1], padding="SAME", data_format="NHWC")
    g.const("ax3", np.int32(3))
    g.node("cat", "ConcatV2", ["p1", "p2", "ax3"], N=2)  # (B,2,2,8)
    g.node("cat2", "AddV2", ["cat", "d1"])
    g.const("pads", np.array([[0, 0], [1, 0], [0, 1], [0, 0]], np.int32))
    g.node("pd", "Pad", ["cat2", "pads"])  # (B,3,3,8)
    # reductions, squeeze, reshape, matmul, normalisation
    g.const("ax12", np.array([1, 2], np.int32))
    g.const("cval", np.float32(0.25))
    g.node("pd2", "PadV2", ["cat2", "pads", "cval"])
    g.node("r1", "Sum", ["pd2", "ax12"], keep_dims=True)  # (B,1,1,8)
    g.node("r2", "Mean", ["pd", "ax12"], keep_dims=False)  # (B,8)
    g.const("ax2", np.array([2], np.int32))
    g.node("r3", "Max", ["pd", "ax2"], keep_dims=False)  # (B,3,8)
    g.node("r4", "Min", ["pd", "ax2"], keep_dims=True)  # (B,3,1,8)
    g.node("r5", "Prod", ["e22", "ax2"], keep_dims=False)  # (B,3,4)
    g.node("sq", "Squeeze", ["r1"], squeeze_dims=[1, 2])  # (B,8)
    g.const("shape", np.array([-1, 24], np.int32))
    g.node("rs", "Reshape", ["r4", "shape"])  # (B,24)
    g.node("rs2", "Reshape", ["r3", "shape"])
    g.rand("k1", 24, 8)
    g.node("mm", "MatMul", ["rs", "k1"], transpose_a=False, transpose_b=False)
    g.rand("k2", 5, 24)
    g.rand("b5", 5)
    g.node("fm", "_FusedMatMul", ["rs2", "k2", "b5"], fused_ops=["BiasAdd", "Relu"], num_args=1, transpose_a=False,
           transpose_b=True)
    g.node("v1", "AddV2", ["mm", "sq"])
    g.node("v2", "Add", ["v1", "r2"])
    g.node("v3", "Square", ["v2"])
    g.const("ax1", np.array([1], np.int32))
    g.node("v4", "Sum", ["v3", "ax1"], keep_dims=True)
    g.const("eps", np.float32(1e-10))
    g.node("v5", "Maximum", ["v4", "eps"])
    g.node("v6", "Rsqrt", ["v5"])
    g.node("out", "Mul", ["v2", "v6"])
    g.node("fm_soft", "Softmax", ["fm"])
    g.node("r5m", "Mean", ["r5", "ax2"], keep_dims=False)  # (B,3)
    g.node("fm_sig", "Sigmoid", ["fm_soft"])
    return g


_OUTPUTS = ["out", "fm_sig", "r5m", "f2"]


def test_every_supported_op_is_exercised():
    assert _big_graph().ops | {"Snapshot", "StopGradient"} >= SUPPORTED_OPS


def test_big_graph_gradcheck_float64(tmp_path):
    g = _big_graph()
    graph = load_tfjs_graph(g.write(tmp_path, _OUTPUTS))
    assert graph.outputs == _OUTPUTS
    mod = graph.to_module().double()
    x = torch.randn(2, 2, 6, 7, dtype=torch.float64, requires_grad=True)  # NCHW interface
    outs = mod(x)
    assert [tuple(o.shape) for o in outs] == [(2, 8), (2, 5), (2, 3), (2, 4, 1, 2)]
    assert all(torch.isfinite(o).all() for o in outs)
    # fast mode (random projections of the Jacobian) keeps this well under a second; the full Jacobian is checked
    # on the convolution graph below
    assert torch.autograd.gradcheck(lambda t: mod(t), (x,), eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)
    x1 = torch.randn(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: mod(t)[0], (x1,), eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


def test_conv_graph_full_gradcheck_float64():
    # SAME stride 2 on odd/even sizes (asymmetric padding), depthwise with multiplier, fused PReLU
    g = G()
    g.node("x", "Placeholder")
    g.rand("w", 3, 3, 2, 3)
    g.node("c", "Conv2D", ["x", "w"], **_conv_attrs("SAME", 2))
    g.rand("wd", 3, 3, 3, 2)
    g.rand("b", 6)
    g.rand("a", 6)
    g.node("d", "FusedDepthwiseConv2dNative", ["c", "wd", "b", "a"], fused_ops=["BiasAdd", "Prelu"], num_args=2,
           **_conv_attrs("SAME", 2))
    mod = g.graph(["d"]).to_module().double()
    x = torch.randn(1, 2, 6, 5, dtype=torch.float64, requires_grad=True)
    assert mod(x).shape == (1, 6, 2, 2)
    assert torch.autograd.gradcheck(mod, (x,), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_big_graph_layouts_agree():
    graph = _big_graph().graph(_OUTPUTS)
    x = torch.randn(3, 6, 7, 2, dtype=torch.float64)
    a = graph.to_module(nchw=False).double()(x)
    b = graph.to_module(nchw=True).double()(x.permute(0, 3, 1, 2))
    for u, v in zip(a[:3], b[:3], strict=True):
        torch.testing.assert_close(u, v)
    torch.testing.assert_close(a[3], b[3].permute(0, 2, 3, 1))


def test_module_weights_are_parameters_and_follow_dtype():
    mod = _big_graph().graph(_OUTPUTS).to_module()
    names = dict(mod.named_parameters())
    assert "consts.w1" in names and names["consts.w1"].shape == (3, 3, 2, 4)
    assert all("." not in k for k in mod.consts)
    mod.double()
    assert mod.consts["w1"].dtype == torch.float64
    sd = mod.state_dict()
    assert "consts.k1" in sd


def test_pruning_keeps_only_needed_nodes():
    mod = _big_graph().graph(_OUTPUTS).to_module(["c1"])
    assert set(mod.consts) == {"w1"}
    assert mod(torch.randn(1, 2, 6, 7)).shape == (1, 4, 3, 4)


# -------------------------------------------------------------------------------------------------- weights
def test_uint8_and_float16_dequantisation_and_shards(tmp_path):
    a = np.array([[0, 1], [2, 255]], np.uint8)
    h = np.array([0.5, -2.25, 1e-3], np.float16)
    i = np.array([3, -4], np.int32)
    f = np.array([1.5], np.float32)
    manifest = [
        {"paths": ["g1-shard1of2.bin", "g1-shard2of2.bin"], "weights": [
            {"name": "a", "shape": [2, 2], "dtype": "float32",
             "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0, "original_dtype": "float32"}},
            {"name": "h", "shape": [3], "dtype": "float32",
             "quantization": {"dtype": "float16", "original_dtype": "float32"}},
        ]},
        {"paths": ["g2.bin"], "weights": [
            {"name": "i", "shape": [2], "dtype": "int32"},
            {"name": "f", "shape": [1], "dtype": "float32"},
        ]},
    ]
    g1 = a.tobytes() + h.tobytes()
    w = read_weights(manifest, [g1, i.tobytes() + f.tobytes()])
    np.testing.assert_allclose(w["a"], a.astype(np.float32) * 0.5 - 1.0)
    assert w["a"].dtype == np.float32 and w["h"].dtype == np.float32 and w["i"].dtype == np.int32
    np.testing.assert_allclose(w["h"], h.astype(np.float32))
    np.testing.assert_array_equal(w["i"], i)
    # the same through files: shards of a group are concatenated
    nodes = [{"name": n, "op": "Const"} for n in "ahif"]
    nodes += [{"name": "x", "op": "Placeholder"}, {"name": "y", "op": "Mul", "input": ["x", "h"]}]
    (tmp_path / "m.json").write_text(json.dumps(
        {"format": "graph-model", "modelTopology": {"node": nodes}, "weightsManifest": manifest}))
    (tmp_path / "g1-shard1of2.bin").write_bytes(g1[:3])
    (tmp_path / "g1-shard2of2.bin").write_bytes(g1[3:])
    (tmp_path / "g2.bin").write_bytes(i.tobytes() + f.tobytes())
    graph = load_tfjs_graph(tmp_path / "m.json")
    np.testing.assert_allclose(graph.weights["a"], w["a"])
    assert graph.outputs == ["y"]  # no signature: the sinks
    # explicit shard files in manifest order, and a single concatenated file
    graph2 = load_tfjs_graph(tmp_path / "m.json", [tmp_path / p for p in ("g1-shard1of2.bin", "g1-shard2of2.bin",
                                                                          "g2.bin")])
    np.testing.assert_allclose(graph2.weights["f"], f)
    (tmp_path / "all.bin").write_bytes(g1 + i.tobytes() + f.tobytes())
    graph3 = load_tfjs_graph(tmp_path / "m.json", tmp_path / "all.bin")
    np.testing.assert_array_equal(graph3.weights["i"], i)
    y = graph3.to_module()(torch.ones(3))
    torch.testing.assert_close(y, torch.from_numpy(h.astype(np.float32)))


def test_truncated_weights_raise(tmp_path):
    manifest = [{"paths": ["w.bin"], "weights": [{"name": "a", "shape": [4], "dtype": "float32"}]}]
    with pytest.raises(WeightsError, match="too short"):
        read_weights(manifest, [b"\0" * 8])
    with pytest.raises(WeightsError, match="quantization"):
        read_weights([{"paths": [], "weights": [{"name": "a", "shape": [1], "dtype": "float32",
                                                 "quantization": {"dtype": "int4"}}]}], [b"\0"])
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(WeightsError):
        load_tfjs_graph(tmp_path / "m.json")


# ---------------------------------------------------------------------------------------------------- errors
def test_unsupported_op_raises_typed_error_naming_it():
    g = G()
    g.node("x", "Placeholder")
    g.node("y", "Erfinv", ["x"])
    g.node("z", "Relu", ["y"])
    graph = g.graph(["z"])
    with pytest.raises(UnsupportedOpError, match="Erfinv") as ei:
        graph.to_module()
    assert isinstance(ei.value, NullswapError) and ("Erfinv", "y") in ei.value.ops
    assert "'y'" in str(ei.value)


def test_unsupported_fused_op_and_padding_raise():
    g = G()
    g.node("x", "Placeholder")
    g.rand("w", 1, 1, 2, 2)
    g.rand("b", 2)
    g.node("y", "_FusedConv2D", ["x", "w", "b"], fused_ops=["BiasAdd", "Gelu"], num_args=1, **_conv_attrs())
    with pytest.raises(UnsupportedOpError, match="Gelu"):
        g.graph(["y"]).to_module()
    g = G()
    g.node("x", "Placeholder")
    g.rand("w", 1, 1, 2, 2)
    g.node("y", "Conv2D", ["x", "w"], **_conv_attrs("CAUSAL"))
    with pytest.raises(UnsupportedOpError, match="CAUSAL"):
        g.graph(["y"]).to_module()


def test_graph_errors():
    g = G()
    g.node("x", "Placeholder")
    g.node("y", "Relu", ["missing"])
    with pytest.raises(WeightsError, match="missing"):
        g.graph(["y"]).to_module()
    g = G()
    g.node("a", "Relu", ["b"])
    g.node("b", "Relu", ["a"])
    with pytest.raises(WeightsError, match="cycle"):
        g.graph(["a"]).to_module()
    with pytest.raises(WeightsError, match="not a node"):
        G().graph(["nope"])
    with pytest.raises(WeightsError, match="graph model"):
        parse_tfjs_model({"format": "layers-model", "modelTopology": {}}, [])
    g = G()
    g.node("x", "Placeholder")
    g.node("y", "Relu", ["x:1"])
    with pytest.raises(WeightsError, match="single-output"):
        g.graph()


def test_control_inputs_and_output_suffixes_are_ignored():
    g = G()
    g.node("x", "Placeholder")
    g.node("c", "NoOp")
    g.node("y", "Relu", ["x:0", "^c"])
    graph = g.graph(["y"])
    assert graph.nodes["y"].inputs == ["x"]
    torch.testing.assert_close(graph.to_module()(torch.tensor([-1.0, 2.0])), torch.tensor([0.0, 2.0]))
