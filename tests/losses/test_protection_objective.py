"""Issue-12 objective options: threshold-aware identity term, chroma penalty, EOT degradations, max_delta bound."""

import math
import random

import pytest
import torch
import torch.nn.functional as F

from nullswap.errors import InputError
from nullswap.losses import NullSwapLoss
from nullswap.losses.eot import EOTConfig, RandomDegradation, gaussian_blur, jpeg_differentiable, resize_round_trip
from nullswap.losses.identity import identity_cosines, threshold_hinge, threshold_target
from nullswap.losses.reconstruction import chroma_loss
from nullswap.protectors.nullswap import NullSwapConfig, NullSwapGenerator
from nullswap.recognizers.ensemble import RecognizerEnsemble
from tests.losses.test_losses import L1Perceptual, TinyRecognizer


def test_threshold_target_and_hinge_hand_values():
    assert threshold_target(0.906, 0.5) == pytest.approx(0.859)
    assert threshold_target(0.283, 0.5) == pytest.approx(-0.0755)
    cos = torch.tensor([0.9, 0.1, -0.5, 0.3])
    # relu(cos - 0.2) = [0.7, 0, 0, 0.1] -> mean 0.2, / (1 - 0.2)
    assert float(threshold_hinge(cos, 0.2)) == pytest.approx(0.2 / 0.8)
    # a face already below the target gets no gradient
    c = torch.tensor([0.9, -0.5], requires_grad=True)
    threshold_hinge(c, 0.2).backward()
    assert c.grad.tolist() == pytest.approx([0.5 / 0.8, 0.0])


def test_threshold_identity_loss_uses_given_thresholds_and_seen_images():
    ens = RecognizerEnsemble([TinyRecognizer(0), TinyRecognizer(1)], source_template="protector-128")
    x = torch.rand(3, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    y = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    thr = {"tiny-0": 0.5, "tiny-1": 0.9}
    crit = NullSwapLoss(ens.names, identity="threshold", margin=0.5, thresholds=thr, strategy="average",
                        lambda_lpips=0, lambda_d=0)
    cos = identity_cosines(ens, x, y)
    _, comps = crit(x, y, ensemble=ens, perceptual=None, fake_logits=None, epoch=0)
    for i, name in enumerate(ens.names):
        t = threshold_target(thr[name], 0.5)
        assert comps[f"id/{name}"] == pytest.approx(float(threshold_hinge(cos[i], t)), abs=1e-6)
        assert comps[f"cos/{name}"] == pytest.approx(float(cos[i].mean()), abs=1e-6)
    # ``seen`` replaces what the recognizers see, not the quality terms
    _, c2 = crit(x, y, ensemble=ens, perceptual=None, fake_logits=None, epoch=0, seen=x)
    assert c2["cos/tiny-0"] == pytest.approx(1.0, abs=1e-5)
    assert c2["loss/mse"] == pytest.approx(comps["loss/mse"])
    with pytest.raises(InputError, match="identity"):
        NullSwapLoss(ens.names, identity="hinge")


def test_chroma_loss_zero_for_grey_changes_and_hand_value():
    x = torch.rand(2, 3, 8, 8)
    grey = x + 0.1 * torch.ones(2, 1, 8, 8)  # equal change on R, G, B: luminance only
    assert float(chroma_loss(x, grey)) == pytest.approx(0.0, abs=1e-10)
    red = x.clone()
    red[:, 0] += 0.1
    # Cb = -0.168736 * 0.1, Cr = 0.5 * 0.1, mean over the two chroma planes
    assert float(chroma_loss(x, red)) == pytest.approx(((0.0168736**2) + 0.05**2) / 2, rel=1e-4)


def test_perceptual_images_subsamples_the_batch():
    ens = RecognizerEnsemble([TinyRecognizer(0)], source_template="protector-128")
    x = torch.rand(4, 3, 128, 128)
    y = x.clone()
    y[2:] = (y[2:] + 0.2).clamp(0, 1)  # only the last two images differ
    full = NullSwapLoss(ens.names, lambda_d=0)
    sub = NullSwapLoss(ens.names, lambda_d=0, perceptual_images=2)
    _, a = full(x, y, ensemble=ens, perceptual=L1Perceptual(), fake_logits=None, epoch=0)
    _, b = sub(x, y, ensemble=ens, perceptual=L1Perceptual(), fake_logits=None, epoch=0)
    assert a["loss/lpips"] > 0 and b["loss/lpips"] == 0.0


def test_eot_degradations_are_differentiable_and_seeded():
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    for y in (jpeg_differentiable(x, torch.tensor([60.0, 90.0])), resize_round_trip(x, 0.5), gaussian_blur(x, 0.8)):
        assert y.shape == x.shape
        g = torch.autograd.grad(y.sum(), x)[0]
        assert g.abs().sum() > 0
    assert resize_round_trip(x, 1.0) is x
    a, b = RandomDegradation(EOTConfig(p=1.0), seed=3), RandomDegradation(EOTConfig(p=1.0), seed=3)
    kinds_a = [(a(x.detach()), a.last)[1] for _ in range(6)]
    kinds_b = [(b(x.detach()), b.last)[1] for _ in range(6)]
    assert kinds_a == kinds_b and set(kinds_a) <= {"jpeg", "resize", "blur"}
    off = RandomDegradation(EOTConfig(p=0.0))
    assert off(x) is x and off.last == "none"
    with pytest.raises(InputError, match="jpeg_quality"):
        EOTConfig(jpeg_quality=(90, 50))
    with pytest.raises(InputError, match="unknown"):
        EOTConfig.from_dict({"prob": 0.5})
    # the RNG state round-trips through JSON-like lists (exact resume)
    st = a.rng.getstate()
    r = random.Random()
    r.setstate((st[0], tuple(list(st[1])), st[2]))
    assert r.random() == a.rng.random()


def test_max_delta_bounds_every_pixel_change():
    torch.manual_seed(0)
    cfg = NullSwapConfig(L=1, M=1, N=1, image_size=64, id_channels=8, perturb_channels=8, feature_channels=8,
                         cloak_channels=8, residual_init_std=2.0, max_delta=4.0)
    g = NullSwapGenerator(cfg).eval()
    x = torch.rand(2, 3, 64, 64)
    for s in (0.5, 1.0, 1.5):
        d = (g(x, perturbation_scale=s) - x).detach().abs().max()
        assert float(d) <= 4.0 / 255 * s + 1e-6
    assert torch.equal(g(x, perturbation_scale=0.0), x)
    with pytest.raises(InputError, match="max_delta"):
        NullSwapConfig(max_delta=-1)


def test_recognizers_per_step_draws_subsets_and_resumes():
    ens = RecognizerEnsemble([TinyRecognizer(i) for i in range(4)], source_template="protector-128")
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    y = (x + 0.05).clamp(0, 1)
    kw = {"ensemble": ens, "perceptual": None, "fake_logits": None, "epoch": 0}
    a = NullSwapLoss(ens.names, strategy="average", recognizers_per_step=2, lambda_lpips=0, lambda_d=0, subset_seed=5)
    state = a.state_dict()
    draws = [sorted(k for k in a(x, y, **kw)[1] if k.startswith("cos/")) for _ in range(8)]
    assert all(len(d) == 2 for d in draws) and len({tuple(d) for d in draws}) > 1
    b = NullSwapLoss(ens.names, strategy="average", recognizers_per_step=2, lambda_lpips=0, lambda_d=0)
    b.load_state_dict(state)  # resumes the same sequence of draws
    assert [sorted(k for k in b(x, y, **kw)[1] if k.startswith("cos/")) for _ in range(8)] == draws
    # the identity loss is (c/k) x the sum of the drawn recognizers' values: unbiased for "average" (sum over all)
    total, comps = a(x, y, **kw)
    ids = [v for k, v in comps.items() if k.startswith("id/")]
    assert comps["loss/id"] == pytest.approx(sum(ids) * 4 / 2, abs=1e-5)
    full = NullSwapLoss(ens.names, strategy="average", lambda_lpips=0, lambda_d=0)(x, y, **kw)[1]
    assert full["loss/id"] == pytest.approx(sum(v for k, v in full.items() if k.startswith("id/")), abs=1e-5)
    with pytest.raises(InputError, match="average"):
        NullSwapLoss(ens.names, strategy="dlw", recognizers_per_step=2)
    with pytest.raises(InputError, match="recognizers_per_step"):
        NullSwapLoss(ens.names, strategy="average", recognizers_per_step=5)


def test_psnr_target_scales_the_identity_term_by_dual_ascent():
    ens = RecognizerEnsemble([TinyRecognizer(0)], source_template="protector-128")
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    y = (x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    mse = (y - x).pow(2).flatten(1).mean(1)
    psnr = float((-10 * torch.log10(mse)).mean())  # ~40 dB
    kw = {"ensemble": ens, "perceptual": None, "fake_logits": None, "epoch": 0}
    base = {"strategy": "average", "lambda_lpips": 0, "lambda_d": 0, "lambda_mse": 0}
    fixed = NullSwapLoss(ens.names, **base)
    crit = NullSwapLoss(ens.names, **base, psnr_target=psnr - 2.0, psnr_target_rate=0.1)
    t0, c0 = crit(x, y, **kw)  # first step at s = 1, then log s += 0.1 * 2
    assert float(t0) == pytest.approx(float(fixed(x, y, **kw)[0]), rel=1e-6) and c0["loss/id_scale"] == 1.0
    assert crit.log_id_scale == pytest.approx(0.2, abs=1e-4)
    t1, c1 = crit(x, y, **kw)  # a batch cleaner than the target: the identity term weighs more
    assert c1["loss/id_scale"] == pytest.approx(math.exp(0.2), rel=1e-4)
    assert float(t1) == pytest.approx(float(t0) * math.exp(0.2), rel=1e-4)
    # dirtier than the target: the scale falls; the bounds hold
    low = NullSwapLoss(ens.names, **base, psnr_target=psnr + 50.0, psnr_target_rate=1.0, id_scale_bounds=(0.5, 2.0))
    low(x, y, **kw)
    assert low.log_id_scale == pytest.approx(math.log(0.5))
    # the scale is part of the resumable state; an older state without it starts at 1
    again = NullSwapLoss(ens.names, **base, psnr_target=psnr - 2.0)
    again.load_state_dict(crit.state_dict())
    assert again.log_id_scale == pytest.approx(crit.log_id_scale)
    old = {k: v for k, v in crit.state_dict().items() if k != "_log_id_scale"}
    again.load_state_dict(old)
    assert again.log_id_scale == 0.0
    # without a target the weights are fixed
    fixed(x, y, **kw)
    assert fixed.log_id_scale == 0.0 and fixed(x, y, **kw)[1]["loss/id_scale"] == 1.0
    for bad in ({"psnr_target": 0}, {"psnr_target": True}, {"id_scale_bounds": (2.0, 4.0)},
                {"id_scale_bounds": (0.5,)}, {"psnr_target_rate": -1.0}):
        with pytest.raises(InputError):
            NullSwapLoss(ens.names, **bad)
    assert NullSwapLoss.from_config({"psnr_target": 38.5, "id_scale_bounds": [0.2, 5]}, ens.names).psnr_target == 38.5


def _refine_setup():
    """A tiny 128-px generator (cap 6/255) and a two-recognizer ensemble for the refine-step tests."""
    torch.manual_seed(0)
    cfg = NullSwapConfig(L=1, M=1, N=1, image_size=128, id_channels=8, perturb_channels=8, feature_channels=8,
                         cloak_channels=8, max_delta=6.0)
    gen = NullSwapGenerator(cfg).eval()
    return cfg, gen, RecognizerEnsemble([TinyRecognizer(0), TinyRecognizer(1)], source_template="protector-128")


def test_refine_steps_lower_the_cosine_within_the_budget():
    from nullswap.protectors.nullswap import NullSwapProtector

    cfg, gen, ens = _refine_setup()
    x = torch.rand(3, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(0)
    one = NullSwapProtector(gen, cfg, psnr_floor=30.0).protect(x, generator=g)
    g = torch.Generator().manual_seed(0)
    ref = NullSwapProtector(gen, cfg, psnr_floor=30.0, refine=5, refine_recognizers=ens).protect(x, generator=g)

    def cos(y):
        return float(sum(F.cosine_similarity(a, b, dim=1).mean() for a, b in zip(ens(x), ens(y), strict=True)))

    assert cos(ref) < cos(one)
    assert float((ref - x).abs().max()) <= 6.0 / 255 + 1e-6  # the model's per-pixel cap
    mse = (ref - x).pow(2).flatten(1).mean(1)
    assert bool((10 * torch.log10(1 / mse) >= 30.0 - 1e-3).all())  # the PSNR floor
    # under the floor the steps are L2 steps on the floor's ball: the change's L2 norm reaches (not exceeds) it
    radius = (x[0].numel() * 10 ** (-30.0 / 10)) ** 0.5
    assert float((ref - x).flatten(1).norm(dim=1).max()) <= radius * (1 + 1e-4)
    steps: list[tuple[int, int]] = []  # progress per refine step; it does not change the result
    prot = NullSwapProtector(gen, cfg, psnr_floor=30.0, refine=5, refine_recognizers=ens)
    prot.on_step = lambda done, total: steps.append((done, total))
    assert torch.equal(prot.protect(x, generator=torch.Generator().manual_seed(0)), ref)
    assert steps == [(k, 5) for k in range(1, 6)]
    g = torch.Generator().manual_seed(0)
    raw = NullSwapProtector(gen, cfg, refine=5, refine_recognizers=ens).protect(x, generator=g)  # signed steps
    assert cos(raw) < cos(one) and float((raw - x).abs().max()) <= 6.0 / 255 + 1e-6
    with pytest.raises(InputError, match="refine_recognizers"):
        NullSwapProtector(gen, cfg, refine=2)
    # the blurred copy in the objective (LowKey): same budget, a different (still lower) cosine; it lowers the
    # cosine of the blurred protected crop more than the plain objective does
    import kornia

    blurred = NullSwapProtector(gen, cfg, psnr_floor=30.0, refine=5, refine_recognizers=ens, refine_blur=1.0)
    bl = blurred.protect(x, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(bl, ref) and cos(bl) < cos(one)
    assert float((bl - x).flatten(1).norm(dim=1).max()) <= radius * (1 + 1e-4)
    assert float((bl - x).abs().max()) <= 6.0 / 255 + 1e-6

    def cos_blur(y):
        return cos(kornia.filters.gaussian_blur2d(y, (5, 5), (1.0, 1.0)))

    assert cos_blur(bl) < cos_blur(ref)
    for bad in (-1.0, float("nan"), float("inf"), True, "1"):
        with pytest.raises(InputError, match="refine_blur"):
            NullSwapProtector(gen, cfg, refine=2, refine_recognizers=ens, refine_blur=bad)


def test_refine_chroma_and_masking_place_the_steps():
    """refine_chroma / refine_masking: less colour from the steps; with masking, more of them where it is textured."""
    from nullswap.losses.masking import masking_weights
    from nullswap.protectors.nullswap import NullSwapProtector

    cfg, gen, ens = _refine_setup()
    x = torch.full((2, 3, 128, 128), 0.5)
    x[..., 64:] = torch.rand(2, 3, 128, 64, generator=torch.Generator().manual_seed(3)) * 0.6 + 0.2  # right: texture
    one = NullSwapProtector(gen, cfg, psnr_floor=30.0).protect(x, generator=torch.Generator().manual_seed(0))
    kw = dict(psnr_floor=30.0, refine=5, refine_recognizers=ens)
    rgb = NullSwapProtector(gen, cfg, **kw).protect(x, generator=torch.Generator().manual_seed(0))
    luma = NullSwapProtector(gen, cfg, refine_chroma=0.0, refine_masking=True, **kw).protect(
        x, generator=torch.Generator().manual_seed(0))

    def cos(y):
        return float(sum(F.cosine_similarity(a, b, dim=1).mean() for a, b in zip(ens(x), ens(y), strict=True)))

    assert cos(luma) < cos(one)  # it still attacks
    radius = (x[0].numel() * 10 ** (-30.0 / 10)) ** 0.5
    assert float((luma - x).flatten(1).norm(dim=1).max()) <= radius * (1 + 1e-4)  # the same L2 ball / PSNR floor
    # the refinement adds no colour to the one pass's change (the L2 projection can only shrink it), plain RGB steps do
    c_luma = chroma_loss(x, luma)
    c_rgb = chroma_loss(x, rgb)
    c_one = chroma_loss(x, one)
    assert c_luma <= c_one * (1 + 1e-3)
    assert c_rgb > c_one
    plain = NullSwapProtector(gen, cfg, refine_chroma=0.0, **kw).protect(
        x, generator=torch.Generator().manual_seed(0))
    assert chroma_loss(x, plain) <= c_one * (1 + 1e-3)
    assert cos(plain) < cos(one)
    half = NullSwapProtector(gen, cfg, refine_chroma=0.5, **kw).protect(x, generator=torch.Generator().manual_seed(0))
    c_half = chroma_loss(x, half)
    assert c_luma < c_half < c_rgb and cos(half) < cos(one)
    # and it goes where the clean crop is textured (away from the seam between the halves)
    w = masking_weights(x)
    assert float(w[..., :56].mean()) > 0.99 and float(w[..., 72:].mean()) < 0.3
    extra = (luma - one).pow(2).sum(1)
    assert float(extra[..., 72:].mean()) > 2 * float(extra[..., :56].mean())
    for bad in (-0.1, 1.5, True, "0.5"):
        with pytest.raises(InputError, match="refine_chroma"):
            NullSwapProtector(gen, cfg, refine_chroma=bad, **kw)
