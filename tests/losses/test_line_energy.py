"""Line-energy term: structure tensor against numpy, eigenvalue split, stripes vs grain, config and the total loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nullswap.errors import InputError
from nullswap.losses.line_energy import (
    DEFAULT_LINES,
    coherence,
    line_energy_loss,
    line_energy_map,
    lines_config,
    structure_tensor,
)
from nullswap.losses.nullswap import NullSwapLoss


def test_oriented_and_total_are_the_eigenvalue_difference_and_sum():
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(1, 3, 20, 20, generator=g, dtype=torch.float64)
    prot = clean + (torch.rand(1, 3, 20, 20, generator=g, dtype=torch.float64) - 0.5) * 0.05
    oriented, total = line_energy_map(clean, prot)
    d = 0.299 * (prot - clean)[:, 0:1] + 0.587 * (prot - clean)[:, 1:2] + 0.114 * (prot - clean)[:, 2:3]
    jxx, jyy, jxy = (t[0, 0].numpy() for t in structure_tensor(d))
    for i, j in ((3, 4), (10, 10), (15, 2)):
        lam = np.linalg.eigvalsh(np.array([[jxx[i, j], jxy[i, j]], [jxy[i, j], jyy[i, j]]]))
        assert oriented[0, 0, i, j].item() == pytest.approx(lam[1] - lam[0], rel=1e-4, abs=1e-12)
        assert total[0, 0, i, j].item() == pytest.approx(lam[1] + lam[0], rel=1e-6)


def test_structure_tensor_of_a_ramp_matches_its_slope_inside():
    # d = 0.01 * x: gradient (0.01, 0) per pixel, so Jxx = 1e-4, Jyy = Jxy = 0 away from the borders
    d = (0.01 * torch.arange(40, dtype=torch.float64)).expand(1, 1, 40, 40).clone()
    jxx, jyy, jxy = structure_tensor(d, sigma=1.0, rho=2.0)
    inner = (slice(None), slice(None), slice(12, -12), slice(12, -12))
    assert torch.allclose(jxx[inner], torch.full_like(jxx[inner], 1e-4), rtol=1e-6)
    assert jyy[inner].abs().max() < 1e-12 and jxy[inner].abs().max() < 1e-12


def test_stripes_are_coherent_and_grain_is_not():
    clean = torch.full((1, 3, 48, 48), 0.5)
    stripes = clean + 0.01 * torch.sin(torch.arange(48.0) * 2 * torch.pi / 6).view(1, 1, 48, 1)
    g = torch.Generator().manual_seed(1)
    grain = clean + 0.01 * torch.randn(1, 1, 48, 48, generator=g)
    assert coherence(clean, stripes) > 0.95
    assert coherence(clean, grain) < 0.4
    # the same stripes turned 90 degrees cost the same
    turned = clean + (stripes - clean).transpose(2, 3)
    assert line_energy_loss(clean, turned).item() == pytest.approx(line_energy_loss(clean, stripes).item(), rel=1e-5)


def test_no_change_costs_nothing_and_gradients_flow():
    clean = torch.rand(2, 3, 16, 16)
    assert line_energy_loss(clean, clean.clone()).item() < 1e-9
    p = (clean + 0.01 * torch.randn_like(clean)).requires_grad_(True)
    line_energy_loss(clean, p).backward()
    assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    q = clean.clone().requires_grad_(True)  # no change: sqrt stays differentiable
    line_energy_loss(clean, q).backward()
    assert torch.isfinite(q.grad).all()


def test_bad_inputs_raise_typed_errors():
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(InputError, match="shape"):
        line_energy_loss(x, torch.rand(1, 3, 8, 9))
    with pytest.raises(InputError, match=r"\(B,1,H,W\)"):
        structure_tensor(x)
    with pytest.raises(InputError, match="rho"):
        structure_tensor(x[:, :1], rho=0)
    with pytest.raises(InputError, match="unknown"):
        lines_config({"scale": 2})
    with pytest.raises(InputError, match="lines.sigma"):
        lines_config({"sigma": -1})
    assert lines_config(None) == DEFAULT_LINES


def test_total_loss_adds_the_term_divided_by_the_budget(extra_term_case):
    clean, prot, kw, args = extra_term_case
    t0, c0 = NullSwapLoss(["a"], **kw)(clean, prot, **args)
    t1, c1 = NullSwapLoss(["a"], lambda_lines=3.0, lines={"rho": 2.0}, **kw)(clean, prot, **args)
    assert c0["loss/lines"] == 0.0
    expect = 3.0 * line_energy_loss(clean, prot, rho=2.0) / 1e-4
    assert torch.isclose(t1 - t0, expect, rtol=1e-4)
    with pytest.raises(InputError, match="lambda_lines"):
        NullSwapLoss(["a"], lambda_lines=-1.0)
    assert NullSwapLoss.from_config({"lambda_lines": 1.0, "lines": {"sigma": 0.7}}, ["a"]).lines["sigma"] == 0.7
