"""The shared-change term (:mod:`nullswap.losses.shared_change`) against brute force and its statistics."""

from __future__ import annotations

import itertools

import pytest
import torch

from nullswap.errors import InputError
from nullswap.losses.nullswap import NullSwapLoss
from nullswap.losses.shared_change import shared_change_energy, shared_change_loss, shared_change_share


def _pairs_brute_force(clean: torch.Tensor, protected: torch.Tensor) -> float:
    d = (protected - clean).double().flatten(1)
    vals = [float(d[i] @ d[j]) for i, j in itertools.permutations(range(len(d)), 2)]
    return sum(vals) / len(vals) / d.shape[1]


def test_energy_equals_the_mean_inner_product_of_distinct_pairs():
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(5, 3, 8, 8, generator=g)
    prot = clean + torch.randn(5, 3, 8, 8, generator=g) * 0.01 + 0.003
    assert shared_change_energy(clean, prot).item() == pytest.approx(_pairs_brute_force(clean, prot), rel=1e-5)


def test_unbiased_for_a_common_pattern_plus_independent_noise():
    g = torch.Generator().manual_seed(1)
    pattern = torch.randn(1, 3, 16, 16, generator=g) * 0.01
    clean = torch.rand(64, 3, 16, 16, generator=g) * 0.8 + 0.1
    noise = torch.randn(64, 3, 16, 16, generator=g) * 0.03  # 9x the pattern's energy per image
    prot = clean + pattern + noise
    truth = float(pattern.pow(2).mean())
    est = float(shared_change_energy(clean, prot))
    biased = float((prot - clean).mean(0).pow(2).mean())  # the plain batch mean's square: + noise energy / B
    assert est == pytest.approx(truth, rel=0.15)
    assert biased > truth * 1.1
    share = shared_change_share(clean, prot)
    assert share == pytest.approx(truth / float((prot - clean).pow(2).mean()), rel=0.15)


def test_independent_changes_share_nothing_and_the_loss_is_clamped():
    g = torch.Generator().manual_seed(2)
    clean = torch.rand(32, 3, 16, 16, generator=g)
    prot = clean + torch.randn(32, 3, 16, 16, generator=g) * 0.02
    assert abs(shared_change_share(clean, prot)) < 0.02
    anti = torch.cat([clean[:1], clean[:1]])
    d = torch.randn(1, 3, 16, 16, generator=g) * 0.01
    prot2 = torch.cat([anti[:1] + d, anti[1:] - d])  # exactly opposite changes: the estimate is negative
    assert shared_change_energy(anti, prot2).item() < 0
    assert shared_change_loss(anti, prot2).item() == 0.0
    assert shared_change_share(clean, clean) == 0.0


def test_gradient_removes_the_common_part():
    g = torch.Generator().manual_seed(3)
    clean = torch.rand(4, 3, 8, 8, generator=g)
    delta = (torch.randn(4, 3, 8, 8, generator=g) * 0.01 + 0.02).requires_grad_(True)
    shared_change_loss(clean, clean + delta).backward()
    # d/d(d_b) of mean_{b != c} <d_b, d_c> is 2 (sum_c d_c - d_b) / (B (B-1) P): along the other changes' sum
    others = delta.detach().sum(0, keepdim=True) - delta.detach()
    expect = 2 * others / (4 * 3 * delta[0].numel())
    assert torch.allclose(delta.grad, expect, rtol=1e-4, atol=1e-12)


def test_bad_batches_are_refused():
    with pytest.raises(InputError, match=r"batch of >= 2 images.*got 1"):
        shared_change_loss(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(InputError, match="same shape"):
        shared_change_loss(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 9))


def test_total_loss_adds_the_term_divided_by_the_budget(extra_term_case):
    clean, prot, kw, args = extra_term_case
    prot = prot + 0.004  # a change both images share
    t0, c0 = NullSwapLoss(["a"], **kw)(clean, prot, **args)
    t1, c1 = NullSwapLoss(["a"], lambda_shared=2.0, **kw)(clean, prot, **args)
    assert c0["loss/shared"] == 0.0 and c1["loss/shared"] > 0
    assert torch.isclose(t1 - t0, 2.0 * shared_change_loss(clean, prot) / 1e-4, rtol=1e-4)
    with pytest.raises(InputError, match="lambda_shared"):
        NullSwapLoss(["a"], lambda_shared=-1.0)
    assert NullSwapLoss.from_config({"lambda_shared": 1.5}, ["a"]).lambda_shared == 1.5
