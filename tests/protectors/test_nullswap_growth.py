"""Growing a trained NullSwap generator deeper (protectors/nullswap/growth.py): same function at the first step."""

from __future__ import annotations

import pytest
import torch

from nullswap.errors import InputError
from nullswap.protectors.nullswap.checkpoint import save_nullswap
from nullswap.protectors.nullswap.config import NullSwapConfig
from nullswap.protectors.nullswap.growth import grow_generator
from nullswap.protectors.nullswap.networks import NullSwapGenerator

_SMALL = {"image_size": 64, "id_channels": 8, "perturb_channels": 8, "feature_channels": 8, "cloak_channels": 8,
          "disc_channels": 4, "se_reduction": 2, "expansion": 2, "max_delta": 10.0}


def _trained(tmp_path):
    torch.manual_seed(0)
    gen = NullSwapGenerator(NullSwapConfig(L=1, M=1, N=1, **_SMALL))
    with torch.no_grad():  # a "trained" state: non-default BN statistics and affine parameters everywhere
        for m in gen.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    save_nullswap(tmp_path / "old", gen, gen.config)
    return gen


def _same_output(old, new, mode):
    """Both generators in ``mode`` give the same output on a random batch with the same noise; returns the batch."""
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    getattr(old, mode)()
    getattr(new, mode)()
    with torch.no_grad():
        a = old(x, generator=torch.Generator().manual_seed(2))
        b = new(x, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(a, b, atol=1e-6), float((a - b).abs().max())
    return x


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_deeper_generator_starts_as_the_trained_one(tmp_path, mode):
    old = _trained(tmp_path)
    new = NullSwapGenerator(NullSwapConfig(L=3, M=2, N=4, **_SMALL))
    counts = grow_generator(new, tmp_path / "old")
    assert counts == {"copied": len(old.state_dict()), "added_blocks": 2 + 1 + 3, "added_detail": 0}
    x = _same_output(old, new, mode)
    # the added blocks learn from the first step: their bn3 scale gets a gradient
    new.train()
    new(x, generator=torch.Generator().manual_seed(2)).sum().backward()
    grad = new.features[3 + 1].bn3.weight.grad  # the first added Feature Block SEResBlock
    assert grad is not None and float(grad.abs().sum()) > 0


def test_growth_refuses_other_widths_and_shallower_configs(tmp_path):
    _trained(tmp_path)
    with pytest.raises(InputError, match="only in depth.*id_channels=16"):
        grow_generator(NullSwapGenerator(NullSwapConfig(L=2, M=1, N=1, **(_SMALL | {"id_channels": 16}))),
                       tmp_path / "old")
    save_nullswap(tmp_path / "deep", NullSwapGenerator(NullSwapConfig(L=2, M=1, N=1, **_SMALL)),
                  NullSwapConfig(L=2, M=1, N=1, **_SMALL))
    with pytest.raises(InputError, match="expected L >= the trained generator's 2, got L=1"):
        grow_generator(NullSwapGenerator(NullSwapConfig(L=1, M=1, N=1, **_SMALL)), tmp_path / "deep")


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_detail_branch_starts_as_the_trained_generator_and_learns(tmp_path, mode):
    old = _trained(tmp_path)
    new = NullSwapGenerator(NullSwapConfig(L=1, M=1, N=1, detail_channels=8, detail_blocks=2, **_SMALL))
    counts = grow_generator(new, tmp_path / "old")
    assert counts == {"copied": len(old.state_dict()), "added_blocks": 0, "added_detail": 1}
    assert new.residual_heads() == [new.to_residual, new.detail_out]
    x = _same_output(old, new, mode)
    with torch.no_grad():
        branch = new.detail(torch.cat([new.cloak(torch.cat([new.gamma * new.perturbation(new.id_extraction(x)),
                                                             new.features(x)], 1)), x], 1))
    assert float(branch.abs().mean()) > 0  # the branch computes something; only its zero output conv hides it
    new.train()
    new(x, generator=torch.Generator().manual_seed(2)).square().sum().backward()
    grad = new.detail_out.weight.grad
    assert grad is not None and float(grad.abs().sum()) > 0


def test_detail_branch_cannot_be_dropped_or_resized(tmp_path):
    cfg = NullSwapConfig(L=1, M=1, N=1, detail_channels=8, **_SMALL)
    save_nullswap(tmp_path / "d", NullSwapGenerator(cfg), cfg)
    with pytest.raises(InputError, match="detail_channels=0 against its detail_channels=8"):
        grow_generator(NullSwapGenerator(NullSwapConfig(L=1, M=1, N=1, **_SMALL)), tmp_path / "d")
    with pytest.raises(InputError, match="detail_channels=16 against its detail_channels=8"):
        grow_generator(NullSwapGenerator(NullSwapConfig(L=1, M=1, N=1, detail_channels=16, **_SMALL)), tmp_path / "d")
