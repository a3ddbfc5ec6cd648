"""The fused inference copy of the NullSwap generator (batch norm folded, channels-last) against the unfused one."""

import pytest
import torch
from torch import nn

from nullswap.errors import InputError
from nullswap.protectors.base import create_protector
from nullswap.protectors.nullswap import NullSwapConfig, NullSwapGenerator, save_nullswap
from nullswap.protectors.nullswap.inference import fuse_for_inference, is_fused

SMALL = {"L": 1, "M": 1, "N": 2, "id_channels": 16, "perturb_channels": 8, "feature_channels": 8,
         "cloak_channels": 8, "disc_channels": 8}


def _trained_like(cfg: NullSwapConfig, seed: int = 0) -> NullSwapGenerator:
    """A generator whose batch norms have non-trivial statistics and affine parameters (as after training)."""
    torch.manual_seed(seed)
    g = NullSwapGenerator(cfg)
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.3, 3.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
        g.to_residual.weight.normal_(0, 0.05)  # a visible residual, so differences would show
        if g.detail_out is not None:  # a trained full-resolution branch (it starts at zero)
            g.detail_out.weight.normal_(0, 0.05)
    return g.eval()


@pytest.mark.parametrize("kw", [{}, {"expansion": 1, "se_reduction": 2, "upsample": "nearest"},
                                {"detail_channels": 8, "detail_blocks": 2}])
def test_fused_matches_unfused(kw):
    cfg = NullSwapConfig(image_size=64, **{**SMALL, **kw})
    g = _trained_like(cfg)
    f = fuse_for_inference(g)
    assert is_fused(f) and not is_fused(g)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in f.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in g.modules()) > 10  # the original is untouched
    assert not any(p.requires_grad for p in f.parameters())
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ya = g(x, generator=torch.Generator().manual_seed(2))
        yb = f(x.contiguous(memory_format=torch.channels_last), generator=torch.Generator().manual_seed(2))
        assert float((ya - x).abs().max()) > 1e-3  # the cloak changes the image
    assert float((ya - yb).abs().max()) < 1e-5


def test_factory_fuses_and_keeps_outputs(tmp_path):
    cfg = NullSwapConfig(image_size=64, **SMALL)
    save_nullswap(tmp_path, _trained_like(cfg), cfg, {})
    fused = create_protector("nullswap", checkpoint=str(tmp_path))
    plain = create_protector("nullswap", checkpoint=str(tmp_path), fuse=False)
    assert is_fused(fused.generator) and not is_fused(plain.generator)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    ya = plain.protect(x, generator=torch.Generator().manual_seed(4))
    yb = fused.protect(x, generator=torch.Generator().manual_seed(4))
    assert yb.is_contiguous() and yb.shape == x.shape and yb.dtype == x.dtype
    assert float((ya - yb).abs().max()) < 1e-5


def test_rejects_other_modules():
    with pytest.raises(InputError, match="expected a NullSwapGenerator, got Conv2d"):
        fuse_for_inference(nn.Conv2d(3, 3, 3))  # type: ignore[arg-type]


def test_bf16_precision_stays_close_to_fp32(tmp_path):
    """``precision="bf16"``: the generator under bfloat16 autocast, output float32 and within 1/255 of float32's."""
    cfg = NullSwapConfig(image_size=64, **SMALL)
    save_nullswap(tmp_path, _trained_like(cfg), cfg, {})
    f32 = create_protector("nullswap", checkpoint=str(tmp_path), precision="fp32")
    b16 = create_protector("nullswap", checkpoint=str(tmp_path), precision="bf16")
    assert (f32.precision, b16.precision) == ("fp32", "bf16")
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    ya = f32.protect(x, generator=torch.Generator().manual_seed(6))
    yb = b16.protect(x, generator=torch.Generator().manual_seed(6))
    assert yb.dtype == torch.float32 and yb.is_contiguous()
    assert float((ya - x).abs().max()) > 2 / 255  # a real change to compare
    assert float((ya - yb).abs().max()) < 1 / 255


def test_precision_resolution(monkeypatch):
    import nullswap.protectors.nullswap.inference as inference

    assert inference.resolve_precision("fp32") == "fp32" and inference.resolve_precision("bf16") == "bf16"
    assert isinstance(inference.native_bf16(), bool)  # reads /proc/cpuinfo (False off Linux)
    monkeypatch.setattr(inference, "native_bf16", lambda: True)
    assert inference.resolve_precision("auto", "cpu") == "fp32"  # measured slower on the shipped model
    monkeypatch.setattr(inference, "native_bf16", lambda: False)
    assert inference.resolve_precision("auto", "cpu") == "fp32"
    with pytest.raises(InputError, match="precision: expected one of"):
        inference.resolve_precision("fp16")
