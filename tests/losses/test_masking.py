"""Texture (contrast) masking term: local contrast against scipy, weights, loss limits, config and the total loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nullswap.errors import InputError
from nullswap.losses.masking import (
    DEFAULT_MASKING,
    local_contrast,
    masked_luma_loss,
    masking_config,
    masking_weights,
)
from nullswap.losses.nullswap import NullSwapLoss


def test_local_contrast_matches_scipy_inside_the_border():
    ndimage = pytest.importorskip("scipy.ndimage")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 24, 20, generator=g, dtype=torch.float64)
    got = local_contrast(x, window=5)[:, 0].numpy()
    y = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).numpy()
    for b in range(2):
        m = ndimage.uniform_filter(y[b], size=5)
        v = ndimage.uniform_filter(y[b] ** 2, size=5) - m**2
        ref = np.sqrt(np.clip(v, 0, None))
        np.testing.assert_allclose(got[b, 2:-2, 2:-2], ref[2:-2, 2:-2], atol=1e-6)


def test_local_contrast_is_zero_on_flat_and_positive_on_texture():
    flat = torch.full((1, 3, 16, 16), 0.4)
    assert local_contrast(flat).abs().max() < 1e-6
    stripes = flat.clone()
    stripes[..., ::2] = 0.6
    assert local_contrast(stripes)[..., 4:-4, 4:-4].min() > 0.09


def test_weights_fall_with_texture_and_follow_the_rule():
    flat = torch.full((1, 3, 16, 16), 0.5)
    tex = flat.clone()
    tex[..., ::2] = 0.7  # local std ~0.1 inside
    wf, wt = masking_weights(flat), masking_weights(tex)
    assert torch.allclose(wf, torch.ones_like(wf))
    c = local_contrast(tex)[0, 0, 8, 8]
    expect = (1 + (c / 0.03) ** 2) ** -0.7
    assert torch.isclose(wt[0, 0, 8, 8], expect, rtol=1e-5)
    assert wt[0, 0, 8, 8] < 0.2


def test_loss_is_luma_mse_without_masking_and_smaller_on_texture():
    g = torch.Generator().manual_seed(1)
    clean = torch.rand(2, 3, 16, 16, generator=g) * 0.8 + 0.1
    d = (torch.rand(2, 3, 16, 16, generator=g) - 0.5) * 0.02
    prot = clean + d
    luma = 0.299 * d[:, 0] + 0.587 * d[:, 1] + 0.114 * d[:, 2]
    # contrast -> infinity: every weight 1, the luminance part of the squared error
    assert torch.isclose(masked_luma_loss(clean, prot, contrast=1e6), luma.pow(2).mean(), rtol=1e-4)
    # the same change costs less on a textured image than on a flat one
    flat = torch.full_like(clean, 0.5)
    assert masked_luma_loss(clean, prot) < masked_luma_loss(flat, flat + d)
    # gradients reach the protected image only
    p = prot.clone().requires_grad_(True)
    masked_luma_loss(clean, p).backward()
    assert p.grad is not None and p.grad.abs().sum() > 0


def test_bad_inputs_raise_typed_errors():
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(InputError, match="odd int"):
        local_contrast(x, window=4)
    with pytest.raises(InputError, match="contrast"):
        masking_weights(x, contrast=0)
    with pytest.raises(InputError, match="shape"):
        masked_luma_loss(x, torch.rand(1, 3, 8, 9))
    with pytest.raises(InputError, match="unknown"):
        masking_config({"size": 3})
    with pytest.raises(InputError, match="masking.window"):
        masking_config({"window": 6})
    assert masking_config(None) == DEFAULT_MASKING


def test_total_loss_adds_the_term_divided_by_the_budget(extra_term_case):
    clean, prot, kw, args = extra_term_case
    base = NullSwapLoss(["a"], **kw)
    with_term = NullSwapLoss(["a"], lambda_masked=2.0, masking={"window": 5}, **kw)
    t0, c0 = base(clean, prot, **args)
    t1, c1 = with_term(clean, prot, **args)
    assert c0["loss/masked"] == 0.0
    expect = 2.0 * masked_luma_loss(clean, prot, window=5) / 1e-4
    assert torch.isclose(t1 - t0, expect, rtol=1e-4)
    assert c1["loss/masked"] == pytest.approx(float(masked_luma_loss(clean, prot, window=5)), rel=1e-5)
    with pytest.raises(InputError, match="lambda_masked"):
        NullSwapLoss(["a"], lambda_masked=-1.0)
    assert NullSwapLoss.from_config({"lambda_masked": 1.0, "masking": {"contrast": 0.05}}, ["a"]).masking["contrast"] \
        == 0.05
