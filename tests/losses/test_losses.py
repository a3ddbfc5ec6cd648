"""NullSwap losses: adversarial (Eqs. 10-11) vs hand values, identity (Eq. 12), reconstruction (8-9), total (13)."""

import math

import pytest
import torch
from torch import nn

from nullswap.errors import InputError
from nullswap.losses import (
    NullSwapLoss,
    discriminator_loss,
    generator_adversarial_loss,
    identity_losses,
    mse_loss,
    perceptual_loss,
)
from nullswap.recognizers.base import FaceRecognizer, RecognizerInfo
from nullswap.recognizers.ensemble import RecognizerEnsemble


class TinyRecognizer(FaceRecognizer):
    def __init__(self, seed: int, dim: int = 16) -> None:
        super().__init__(RecognizerInfo(f"tiny-{seed}", dim, (112, 112), "arcface-112", "x*2-1"))
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.AvgPool2d(8), nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(dim))
        self.net(torch.zeros(1, 3, 112, 112))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1)


class L1Perceptual(nn.Module):
    """Stand-in perceptual distance: mean absolute difference per image."""

    name = "l1-standin"

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x - y).abs().flatten(1).mean(1)


def _sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def test_adversarial_losses_hand_values():
    real = torch.tensor([2.0, -1.0])
    fake = torch.tensor([0.5, -3.0])
    exp_d = -(math.log(_sigmoid(2.0)) + math.log(_sigmoid(-1.0))) / 2 - (
        math.log(1 - _sigmoid(0.5)) + math.log(1 - _sigmoid(-3.0))
    ) / 2
    assert float(discriminator_loss(real, fake)) == pytest.approx(exp_d, rel=1e-6)
    exp_g = -(math.log(_sigmoid(0.5)) + math.log(_sigmoid(-3.0))) / 2
    assert float(generator_adversarial_loss(fake)) == pytest.approx(exp_g, rel=1e-6)
    # numerically stable for extreme logits
    assert math.isfinite(float(discriminator_loss(torch.tensor([-200.0]), torch.tensor([200.0]))))


def test_reconstruction_losses():
    x = torch.zeros(1, 3, 4, 4)
    y = torch.full((1, 3, 4, 4), 0.5)
    assert float(mse_loss(x, y, "mse")) == pytest.approx(0.25)
    assert float(mse_loss(x, y)) == pytest.approx(0.25)
    assert float(mse_loss(x, y, "l2")) == pytest.approx(0.5)  # Eq. 8's norm, per pixel (RMS)
    y2 = torch.cat([y, torch.zeros_like(y)])  # per-image norms averaged: (0.5 + 0) / 2
    assert float(mse_loss(torch.zeros_like(y2), y2, "l2")) == pytest.approx(0.25, abs=1e-5)
    with pytest.raises(InputError, match="form"):
        mse_loss(x, y, "l1")
    assert float(perceptual_loss(L1Perceptual(), x, y)) == pytest.approx(0.5)
    with pytest.raises(InputError):
        mse_loss(x, y[..., :2])


def test_identity_loss_is_cosine_and_differentiable():
    ens = RecognizerEnsemble([TinyRecognizer(0), TinyRecognizer(1)], source_template="protector-128")
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    same = identity_losses(ens, x, x)
    assert [float(v) for v in same] == pytest.approx([1.0, 1.0], abs=1e-5)
    y = (x + 0.2 * torch.randn_like(x)).clamp(0, 1).requires_grad_(True)
    ls = identity_losses(ens, x, y)
    e_clean, e_prot = ens(x), ens(y)
    for i in range(2):
        hand = (e_clean[i] * e_prot[i]).sum(1) / (e_clean[i].norm(dim=1) * e_prot[i].norm(dim=1))
        assert float(ls[i].detach()) == pytest.approx(float(hand.detach().mean()), abs=1e-5)
    sum(ls).backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    assert all(p.grad is None for p in ens.parameters())


def test_total_loss_eq13_components():
    ens = RecognizerEnsemble([TinyRecognizer(0), TinyRecognizer(1)], source_template="protector-128")
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    y = (x + 0.1).clamp(0, 1)
    fake = torch.tensor([0.3, -0.2])
    crit = NullSwapLoss(ens.names)
    total, comps = crit(x, y, ensemble=ens, perceptual=L1Perceptual(), fake_logits=fake, epoch=0)
    ids = [comps["id/tiny-0"], comps["id/tiny-1"]]
    w = [comps["dlw/tiny-0"], comps["dlw/tiny-1"]]
    assert w == pytest.approx([1.0, 1.0])  # first DLW step
    exp = (0.08 * (w[0] * ids[0] + w[1] * ids[1]) + 1.8 * float(mse_loss(x, y))
           + 1.2 * float((x - y).abs().mean()) + 0.1 * float(generator_adversarial_loss(fake)))
    assert float(total) == pytest.approx(exp, rel=1e-5)
    assert comps["loss/total"] == pytest.approx(exp, rel=1e-5)
    assert crit.state_dict()["step"] == 1
    with pytest.raises(InputError, match="unknown"):
        NullSwapLoss.from_config({"lambda_idd": 1.0}, ens.names)


def test_psnr_floor_penalty_is_a_wall_at_the_floor():
    from nullswap.losses.nullswap import psnr_floor_penalty

    x = torch.zeros(2, 3, 4, 4)
    y = torch.stack([torch.full((3, 4, 4), 0.01), torch.full((3, 4, 4), 0.1)])  # MSE 1e-4 (40 dB), 1e-2 (20 dB)
    # floor 30 dB = MSE 1e-3: only the second image pays (1e-2 - 1e-3) / 2 images
    assert float(psnr_floor_penalty(x, y, 30.0)) == pytest.approx((1e-2 - 1e-3) / 2, rel=1e-4)
    assert float(psnr_floor_penalty(x, y[:1], 30.0)) == 0.0
