"""NullSwap generator/discriminator (Sec. 3.2): shapes, range, randomness of Eq. 1, gradients, checkpoint IO."""

import json

import pytest
import torch

from nullswap.errors import InputError, WeightsError, WeightsNotFoundError
from nullswap.protectors.base import create_protector, list_protectors
from nullswap.protectors.nullswap import (
    NullSwapConfig,
    NullSwapDiscriminator,
    NullSwapGenerator,
    NullSwapProtector,
    load_nullswap,
    save_nullswap,
)

SMALL = {"L": 1, "M": 1, "N": 2, "id_channels": 16, "perturb_channels": 8, "feature_channels": 8,
         "cloak_channels": 8, "disc_channels": 8}


def small(size: int = 128, **kw) -> NullSwapConfig:
    return NullSwapConfig(image_size=size, **{**SMALL, **kw})


def _imgs(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("size", [64, 128, 256])
def test_shapes_and_range(size):
    torch.manual_seed(0)
    cfg = small(size)
    g, d = NullSwapGenerator(cfg), NullSwapDiscriminator(cfg)
    x = _imgs(2, size)
    x[0, :, :4] = 0.0
    x[1, :, :4] = 1.0
    with torch.no_grad():
        y = g(x, perturbation_scale=50.0)  # a large scale still stays in [0, 1]
        logits = d(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert logits.shape == (2,)


def test_bad_sizes():
    g = NullSwapGenerator(small(64))
    with pytest.raises(InputError, match="multiple of 8"):
        g(_imgs(1, 60))
    with pytest.raises(InputError, match="multiple of 8"):
        g(torch.rand(1, 3, 56, 56))
    with pytest.raises(InputError, match="image_size"):
        NullSwapConfig(image_size=100)
    with pytest.raises(InputError, match="unknown"):
        NullSwapConfig.from_dict({"widthh": 3})


def test_config_round_trip():
    cfg = small(128, upsample="nearest")
    assert NullSwapConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_seeded_repeatable_unseeded_different_scale_zero_identity():
    torch.manual_seed(0)
    g = NullSwapGenerator(small(64)).eval()
    x = _imgs(2, 64)
    with torch.no_grad():
        a = g(x, generator=torch.Generator().manual_seed(7))
        b = g(x, generator=torch.Generator().manual_seed(7))
        c = g(x, generator=torch.Generator().manual_seed(8))
        u1, u2 = g(x), g(x)
        det1, det2 = g(x, noise_scale=0.0), g(x, noise_scale=0.0)
        ident = g(x, perturbation_scale=0.0)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(u1, u2)
    assert torch.equal(det1, det2)
    assert torch.equal(ident, x)


def test_learnable_noise_and_gamma_get_gradients():
    torch.manual_seed(0)
    g = NullSwapGenerator(small(64))
    y = g(_imgs(2, 64))
    (y - 0.5).pow(2).mean().backward()
    for name in ("alpha", "beta", "eta", "gamma"):
        p = getattr(g, name)
        assert p.requires_grad and p.grad is not None and float(p.grad.abs().sum()) > 0, name
    assert g.eta.shape == (1, 8, 16, 16)


def test_checkpoint_round_trip_and_errors(tmp_path):
    torch.manual_seed(0)
    cfg = small(64)
    g = NullSwapGenerator(cfg)
    g(_imgs(2, 64))  # move BN running statistics away from their init
    g.eval()
    save_nullswap(tmp_path / "ck", g, cfg, {"step": 3})
    assert (tmp_path / "ck" / "model.safetensors").is_file() and (tmp_path / "ck" / "config.json").is_file()
    g2, cfg2, meta = load_nullswap(tmp_path / "ck")
    assert cfg2 == cfg and meta == {"step": 3} and not g2.training
    x = _imgs(2, 64, seed=3)
    with torch.no_grad():
        ya = g(x, generator=torch.Generator().manual_seed(1))
        yb = g2(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(ya, yb)
    # also loadable by file path
    load_nullswap(tmp_path / "ck" / "model.safetensors")
    # strict keys: weights of another architecture under this config
    other = NullSwapGenerator(small(64, N=1))
    save_nullswap(tmp_path / "bad", other, cfg, {})
    with pytest.raises(WeightsError, match="missing"):
        load_nullswap(tmp_path / "bad")
    # mismatched shapes
    wider = NullSwapGenerator(small(64, feature_channels=16))
    save_nullswap(tmp_path / "bad2", wider, cfg, {})
    with pytest.raises(WeightsError, match="shape"):
        load_nullswap(tmp_path / "bad2")
    with pytest.raises(WeightsNotFoundError, match="model.safetensors"):
        load_nullswap(tmp_path / "nowhere")
    (tmp_path / "ck" / "config.json").write_text("{not json")
    with pytest.raises(WeightsError, match="JSON"):
        load_nullswap(tmp_path / "ck")


def test_protector_registered_and_strength(tmp_path):
    assert "nullswap" in list_protectors()
    # no checkpoint: the packaged default (sha256-checked through the hub) when installed, else a clear error
    from nullswap.protectors.nullswap import DEFAULT_WEIGHTS_DIR

    if (DEFAULT_WEIGHTS_DIR / "model.safetensors").is_file():
        assert isinstance(create_protector("nullswap"), NullSwapProtector)
    else:
        with pytest.raises(WeightsNotFoundError, match="checkpoint"):
            create_protector("nullswap")
    with pytest.raises(WeightsNotFoundError, match="model.safetensors"):
        create_protector("nullswap", checkpoint=str(tmp_path / "missing"))
    torch.manual_seed(0)
    cfg = small(128)
    save_nullswap(tmp_path, NullSwapGenerator(cfg), cfg, {})
    low = create_protector("nullswap", checkpoint=str(tmp_path), strength="low")
    high = create_protector("nullswap", checkpoint=str(tmp_path), strength="high")
    assert isinstance(low, NullSwapProtector) and low.template == "protector-128"
    x = _imgs(2, 128)
    yl = low.protect(x, generator=torch.Generator().manual_seed(0))
    yh = high.protect(x, generator=torch.Generator().manual_seed(0))
    assert yl.shape == x.shape and float(yl.min()) >= 0 and float(yl.max()) <= 1
    assert float((yh - x).abs().mean()) > float((yl - x).abs().mean())
    with pytest.raises(InputError, match="expected crops of size"):
        low.protect(_imgs(1, 64))
    with pytest.raises(InputError, match="strength"):
        NullSwapProtector(low.generator, cfg, strength="max")


def test_psnr_floor_guard_caps_the_change():
    from nullswap.protectors.nullswap import NullSwapConfig, NullSwapGenerator, NullSwapProtector

    cfg = NullSwapConfig(L=1, M=1, N=1, image_size=64, id_channels=8, perturb_channels=8, feature_channels=8,
                         cloak_channels=8, disc_channels=8, se_reduction=2, expansion=1)
    torch.manual_seed(0)
    gen = NullSwapGenerator(cfg).eval()
    x = torch.rand(2, 3, 64, 64)
    loose = NullSwapProtector(gen, cfg, strength=40.0).protect(x, generator=torch.Generator().manual_seed(0))
    guarded = NullSwapProtector(gen, cfg, strength=40.0, psnr_floor=40.0).protect(
        x, generator=torch.Generator().manual_seed(0))
    mse = (guarded - x).pow(2).mean((1, 2, 3))
    assert float((loose - x).pow(2).mean()) > 1e-4  # the unguarded change is large
    assert bool((10 * torch.log10(1 / mse) >= 40.0 - 1e-3).all())


def test_evaluate_specs_set_guard_and_refine(tmp_path):
    """`nullswap evaluate --protector`: raw by default, '+guard' = training floor, '+guard36.5' = that floor."""
    from nullswap.cli.evaluate import _build

    cfg = small(64)
    meta = {"loss": {"psnr_floor": 38.5}, "recognizers": ["arcface-mbf"]}
    save_nullswap(tmp_path / "export", NullSwapGenerator(cfg).eval(), cfg, meta)
    ck = str(tmp_path / "export")
    cases = {ck: (None, "nullswap[" + tmp_path.name + "]"), ck + "+guard": (38.5, None),
             ck + "+guard36.5": (36.5, None), ck + "+guard40": (40.0, None)}
    for spec, (floor, label) in cases.items():
        name, prot = _build(spec, "mid", "cpu", None, None)
        assert prot.psnr_floor == floor, spec
        assert label is None or name == label
    name, prot = _build(ck + "+refine3+guard36.5", "mid", "cpu", None, None)
    assert name.endswith("+refine3+guard36.5") and prot.refine == 3 and prot.psnr_floor == 36.5
    assert prot.refine_blur == 0.0
    name, prot = _build(ck + "+refine3+blur1+guard36.5", "mid", "cpu", None, None)
    assert name.endswith("+refine3+blur1+guard36.5") and prot.refine == 3 and prot.refine_blur == 1.0
    assert prot.psnr_floor == 36.5 and prot.refine_chroma == 1.0 and not prot.refine_masking
    name, prot = _build(ck + "+refine3+blur1+chroma0.5+mask+guard36.5", "mid", "cpu", None, None)
    assert name.endswith("+refine3+blur1+chroma0.5+mask+guard36.5")
    assert prot.refine_chroma == 0.5 and prot.refine_masking and prot.refine_blur == 1.0 and prot.psnr_floor == 36.5
    name, prot = _build(ck + "+refine3+chroma0", "mid", "cpu", None, None)
    assert name.endswith("+refine3+chroma0") and prot.refine_chroma == 0.0 and not prot.refine_masking
    # a checkpoint's own strength: the one pass's trade-off beside baselines at --strength
    name, prot = _build(ck + "+strength1.15+guard36", "mid", "cpu", None, None)
    assert name.endswith("]+strength1.15+guard36") and prot.perturbation_scale == 1.15 and prot.psnr_floor == 36.0
    assert prot.refine == 0
    name, prot = _build(ck + "+strength0.8+refine3", "high", "cpu", None, None)
    assert name.endswith("]+strength0.8+refine3") and prot.perturbation_scale == 0.8 and prot.refine == 3
    assert _build(ck, "high", "cpu", None, None)[1].perturbation_scale == 1.5


def test_l2_ball_step_and_psnr_radius_against_hand_computation():
    from nullswap.protectors.nullswap.protector import l2_ball_step, psnr_radius

    x = torch.full((2, 3, 4, 4), 0.5)
    r = psnr_radius(x, 30.0)
    assert r == pytest.approx((48 * 1e-3) ** 0.5)  # 48 values, MSE 10^-3 at 30 dB
    g = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    unit = g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    # a short step stays inside the ball: exactly y - alpha * g / |g|
    assert torch.allclose(l2_ball_step(x, x, g, 0.1 * r, r), x - 0.1 * r * unit, atol=1e-7)
    # a long one is scaled back onto it: PSNR exactly the floor, same direction
    y = l2_ball_step(x, x, g, 3.0 * r, r)
    assert torch.allclose((y - x).flatten(1).norm(dim=1), torch.full((2,), r), rtol=1e-5)
    assert torch.allclose(-10 * torch.log10((y - x).pow(2).mean((1, 2, 3))), torch.full((2,), 30.0), atol=1e-4)
    assert torch.allclose(y - x, -r * unit, atol=1e-6)
