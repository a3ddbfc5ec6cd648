"""Folding a residual factor into a NullSwap generator (protectors/nullswap/folding.py)."""

from __future__ import annotations

import pytest
import torch

from nullswap.errors import InputError
from nullswap.protectors.nullswap.config import NullSwapConfig
from nullswap.protectors.nullswap.folding import fold_residual_factor
from nullswap.protectors.nullswap.networks import NullSwapGenerator

_SMALL = {"L": 1, "M": 1, "N": 1, "image_size": 64, "id_channels": 8, "perturb_channels": 8, "feature_channels": 8,
          "cloak_channels": 8, "disc_channels": 4, "se_reduction": 2, "expansion": 2, "max_delta": 10.0}


@pytest.mark.parametrize("detail", [0, 8])
def test_folded_model_at_strength_one_is_the_trained_one_at_the_factor(detail):
    torch.manual_seed(0)
    g = NullSwapGenerator(NullSwapConfig(detail_channels=detail, **_SMALL)).eval()
    if detail:  # a trained branch: non-zero output convolution
        with torch.no_grad():
            g.detail_out.weight.normal_(std=0.05)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    folded, cfg = fold_residual_factor(g, 1.3)
    assert cfg.max_delta == pytest.approx(13.0) and g.config.max_delta == 10.0  # the source is not modified
    with torch.no_grad():
        want = g(x, generator=torch.Generator().manual_seed(2), perturbation_scale=1.3)
        got = folded(x, generator=torch.Generator().manual_seed(2))
        # the detail branch is scaled too: without it the outputs would differ
        assert torch.allclose(got, want, atol=1e-6), float((got - want).abs().max())
        kept, cfg_kept = fold_residual_factor(g, 1.3, keep_cap=True)
        assert cfg_kept.max_delta == 10.0
        uncapped = NullSwapGenerator(NullSwapConfig(**(g.config.to_dict() | {"max_delta": 0.0}))).eval()
        uncapped.load_state_dict(g.state_dict())
        base = uncapped(x, generator=torch.Generator().manual_seed(2), perturbation_scale=1.3)
        d = kept(x, generator=torch.Generator().manual_seed(2)) - x
        assert float(d.abs().max()) < 10 / 255 + 1e-6  # the trained cap still bounds the folded change
        assert float((base - x).abs().max()) > float(d.abs().max())  # and it did bind


def test_fold_refuses_bad_factors():
    g = NullSwapGenerator(NullSwapConfig(**_SMALL))
    for bad in (0, -1.0, float("nan"), True):
        with pytest.raises(InputError, match="residual factor > 0"):
            fold_residual_factor(g, bad)
    with pytest.raises(InputError, match="expected a NullSwapGenerator"):
        fold_residual_factor(torch.nn.Conv2d(3, 3, 1), 1.2)
