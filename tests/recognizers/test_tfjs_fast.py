"""The fast plan of the TF.js interpreter against the plain node-by-node path (synthetic graph + the human models)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from nullswap.convert.tfjs.fast import FastPlan
from nullswap.recognizers import create_recognizer
from nullswap.recognizers.tfjs import TFJSGraph, parse_tfjs_model

from .test_tfjs import G, _conv_attrs

log = logging.getLogger(__name__)
RNG = np.random.default_rng(1)


def _rand(g: G, name: str, *shape: int, scale: float = 0.5, offset: float = 0.0) -> str:
    return g.const(name, (RNG.standard_normal(shape) * scale + offset).astype(np.float32))


def _fusable_graph() -> TFJSGraph:
    """Every pattern the plan folds, on x of shape (B, 7, 6, 3) (NHWC)."""
    g = G()
    g.node("x", "Placeholder")
    # Pad + VALID conv (symmetric: becomes the conv's padding), per-channel Mul then Add (BatchNorm), ReLU6 as
    # Relu -> Minimum -> Maximum
    g.const("pads", np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32))
    g.node("pad", "Pad", ["x", "pads"])
    _rand(g, "w1", 3, 3, 3, 4)
    g.node("c1", "Conv2D", ["pad", "w1"], **_conv_attrs("VALID"))
    _rand(g, "s1", 4, offset=1.0)
    _rand(g, "o1", 4)
    g.node("bn_mul", "Mul", ["c1", "s1"])
    g.node("bn_add", "Add", ["bn_mul", "o1"])
    g.node("relu", "Relu", ["bn_add"])
    g.const("six", np.array([6.0], np.float32))
    g.const("zero", np.array([0.0], np.float32))
    g.node("mn", "Minimum", ["relu", "six"])
    g.node("mx", "Maximum", ["mn", "zero"])
    # SAME stride 2 depthwise (asymmetric padding on 7x6), multiplier 2, Sub of a constant, max(y,0) + a*min(y,0)
    _rand(g, "wd", 3, 3, 4, 2)
    g.node("d1", "DepthwiseConv2dNative", ["mx", "wd"], **_conv_attrs("SAME", 2))
    _rand(g, "sub8", 1, 1, 1, 8)
    g.node("dsub", "Sub", ["d1", "sub8"])
    g.const("zero2", np.float32(0.0))
    g.node("pmax", "Maximum", ["zero2", "dsub"])
    g.node("pmin", "Minimum", ["dsub", "zero2"])
    _rand(g, "alpha8", 8)
    g.node("pmul", "Mul", ["alpha8", "pmin"])
    g.node("prelu_pat", "AddV2", ["pmax", "pmul"])
    # fused BatchNorm conv + Prelu node; fused BiasAdd + Relu conv; a residual Add
    _rand(g, "w2", 1, 1, 8, 8)
    _rand(g, "bs", 8, offset=1.0)
    _rand(g, "bo", 8)
    _rand(g, "bm", 8)
    g.const("bv", (RNG.random(8) + 0.5).astype(np.float32))
    g.node("f1", "_FusedConv2D", ["prelu_pat", "w2", "bs", "bo", "bm", "bv"], fused_ops=["FusedBatchNorm"],
           num_args=4, epsilon=0.001, **_conv_attrs("SAME"))
    _rand(g, "alpha_p", 8)
    g.node("pr", "Prelu", ["f1", "alpha_p"])
    _rand(g, "b8", 8)
    g.node("f2", "_FusedConv2D", ["pr", "w2", "b8"], fused_ops=["BiasAdd", "Relu"], num_args=1,
           **_conv_attrs("SAME"))
    g.node("res", "AddV2", ["f2", "prelu_pat"])
    g.const("ax12", np.array([1, 2], np.int32))
    g.node("out", "Mean", ["res", "ax12"], keep_dims=False)
    m, data = g.model(["out", "res"])
    return parse_tfjs_model(m, [data])


def _pair(graph: TFJSGraph) -> tuple[torch.nn.Module, torch.nn.Module]:
    plain, fast = graph.to_module(fast=False).double(), graph.to_module(fast=True).double()
    fast.load_state_dict(plain.state_dict())
    return plain, fast


def test_plan_folds_the_patterns():
    plan = FastPlan(_fusable_graph().to_module(fast=False))
    folded = {c.conv.name: c for c in plan.chains}
    assert set(folded) == {"c1", "d1", "f1", "f2"}
    assert folded["c1"].pre_pad == (1, 1, 1, 1) and folded["c1"].out == "mx"
    assert [k for k, _ in folded["c1"].affine] == ["mul", "add"] and len(folded["c1"].clamp) == 3
    assert folded["d1"].out == "prelu_pat" and folded["d1"].prelu == "alpha8" and folded["d1"].affine == [
        ("sub", "sub8")]
    assert folded["f1"].out == "pr" and folded["f2"].out == "f2"  # f2 feeds the residual Add: not folded
    assert len(plan.steps) == 6  # 4 convolutions, the residual Add, the Mean


@pytest.mark.parametrize("nchw", [True, False])
def test_fast_matches_plain_values_and_input_gradients(nchw):
    graph = _fusable_graph()
    plain, fast = graph.to_module(fast=False, nchw=nchw).double(), graph.to_module(fast=True, nchw=nchw).double()
    x = torch.randn(3, 3, 7, 6, dtype=torch.float64) * 2
    x = x if nchw else x.permute(0, 2, 3, 1).contiguous()
    outs = []
    for mod in (plain, fast):
        xi = x.clone().requires_grad_(True)
        out, res = mod(xi)
        (out.square().sum() + res.sin().sum()).backward()
        outs.append((out.detach(), res.detach(), xi.grad))
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert outs[1][1].is_contiguous()  # 4-D outputs come back in the plain path's layout


def test_fast_gradcheck_float64():
    fast = _fusable_graph().to_module(fast=True).double()
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: fast(t)[0], (x,), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_weight_gradients_flow_and_cache_follows_parameter_changes():
    plain, fast = _pair(_fusable_graph())
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    grads = []
    for mod in (plain, fast):
        mod.zero_grad()
        mod(x)[0].sum().backward()
        grads.append({k: p.grad.clone() for k, p in mod.named_parameters() if p.grad is not None})
    # clamp bounds and the zeros of the PReLU pattern are read as numbers: no gradient (documented)
    assert set(grads[0]) - set(grads[1]) == {"consts.six", "consts.zero", "consts.zero2"}
    for k in grads[1]:
        torch.testing.assert_close(grads[0][k], grads[1][k], rtol=1e-10, atol=1e-12, msg=k)
    with torch.no_grad():
        fast(x)  # cached derived tensors
        for mod in (plain, fast):
            mod.consts["s1"].mul_(-0.5)  # in place: the version counter moves
            mod.consts["six"].fill_(2.0)
        torch.testing.assert_close(plain(x)[0], fast(x)[0], rtol=1e-12, atol=1e-12)
        plain.load_state_dict(fast.state_dict())
        torch.testing.assert_close(plain(x)[1], fast(x)[1], rtol=1e-12, atol=1e-12)


def test_dtype_and_layout_follow_the_module():
    fast = _fusable_graph().to_module(fast=True)
    x = torch.randn(2, 3, 7, 6)
    with torch.no_grad():
        y32 = fast(x)[0]
        fast.double()
        y64 = fast(x.double())[0]
        assert y64.dtype == torch.float64
        torch.testing.assert_close(y32.double(), y64, rtol=1e-5, atol=1e-5)
        fast.float()
        assert fast(x)[0].dtype == torch.float32


def test_broken_assumption_falls_back_to_plain(caplog):
    plain, fast = _pair(_fusable_graph())
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    with torch.no_grad():
        for mod in (plain, fast):
            mod.consts["zero2"].fill_(0.25)  # max(y, .25) + a * min(y, .25) is no PReLU any more
        with caplog.at_level(logging.WARNING):
            torch.testing.assert_close(plain(x)[0], fast(x)[0])
    assert "fast plan disabled" in caplog.text


def test_env_var_disables_the_plan(monkeypatch):
    monkeypatch.setenv("NULLSWAP_TFJS_FAST", "0")
    assert not _fusable_graph().to_module().fast
    monkeypatch.delenv("NULLSWAP_TFJS_FAST")
    assert _fusable_graph().to_module().fast


# ------------------------------------------------------------------------------------------------- real weights
def _lfw_crops(shared: Path, size: tuple[int, int], template: str, n: int = 4) -> torch.Tensor:
    """``n`` LFW images aligned with fixed landmarks (LFW faces sit at about the same place in every image)."""
    from PIL import Image

    from nullswap.faces.alignment import align_faces

    paths = sorted((shared / "data" / "lfw" / "images").glob("*/*_0001.jpg"))[:n]
    if len(paths) < n:
        pytest.skip(f"fewer than {n} LFW images under {shared / 'data' / 'lfw' / 'images'}")
    imgs = [torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1).float() / 255 for p in paths]
    marks = torch.tensor([[[103.0, 115.0], [147.0, 115.0], [125.0, 140.0], [107.0, 163.0], [143.0, 163.0]]])
    crops = torch.cat([align_faces(img[None], marks, template)[0] for img in imgs])
    assert crops.shape[-2:] == size
    return crops


@pytest.mark.shared
@pytest.mark.parametrize("name", ["human-mobilefacenet", "human-mobileface", "human-faceres"])
def test_real_models_fast_equals_plain(shared, name):
    weights = shared / "weights"
    if not (weights / "human-models").is_dir():
        pytest.skip(f"the human-models weights are not under {weights}")
    model = create_recognizer(name, weights_dir=str(weights))
    crops = _lfw_crops(shared, model.input_size, model.template)

    def run(fast: bool, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        model.net.fast = fast
        x = x.clone().requires_grad_(True)
        raw = model.embed(x)
        (raw * torch.linspace(-1, 1, raw.shape[1], dtype=raw.dtype)).sum().backward()
        with torch.no_grad():
            emb = model(x)
        return raw.detach(), emb, x.grad

    (raw0, emb0, g0), (raw1, emb1, g1) = run(False, crops), run(True, crops)
    log.info("%s: max |fast - plain| raw %.2e, normalised %.2e", name, (raw0 - raw1).abs().max(),
             (emb0 - emb1).abs().max())
    assert (raw0 - raw1).abs().max() <= 1e-5 * max(1.0, float(raw0.abs().max()))
    assert (emb0 - emb1).abs().max() <= 1e-5
    # float32 rounding flips a few ReLU6 units sitting on a bound, so input gradients are compared in float64
    assert torch.nn.functional.cosine_similarity(g0.flatten(), g1.flatten(), dim=0) > 0.999
    model.double()
    (raw0, _, g0), (raw1, _, g1) = run(False, crops.double()), run(True, crops.double())
    torch.testing.assert_close(raw1, raw0, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(g1, g0, rtol=1e-8, atol=1e-10)
