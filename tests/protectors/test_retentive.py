"""Retentive defense (retentive-defense.txt): eps projection (Eq. 3), Eq. 8 descent, checkpoint round trip."""

import pytest
import torch
from torch import nn

from nullswap.errors import WeightsNotFoundError
from nullswap.losses.retentive import RetentiveLoss, l2_distance, project_l2
from nullswap.manipulators.base import Manipulator
from nullswap.protectors.base import create_protector
from nullswap.recipes.retentive import RetentiveRecipe
from nullswap.recognizers.ensemble import RecognizerEnsemble

MODEL = {"image_size": 128, "base": 4, "depth": 3, "eps": 0.05}


class TinyManip(Manipulator):
    name = "tiny"
    template = "protector-128"

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))

    def forward(self, x, condition=None):
        return torch.sigmoid(self.net(x * 2 - 1) * 3)


def _images() -> torch.Tensor:
    return torch.rand(4, 3, 128, 128, generator=torch.Generator().manual_seed(0))


def test_project_l2_bounds_and_identity_inside():
    p = torch.randn(3, 3, 8, 8)
    q = project_l2(p, 0.05)
    rms = q.flatten(1).pow(2).mean(1).sqrt()
    assert torch.allclose(rms, torch.full((3,), 0.05), atol=1e-5)
    small = torch.full((1, 3, 8, 8), 0.01)
    assert torch.equal(project_l2(small, 0.05), small)


def test_l2_distance_hand_checked():
    a = torch.zeros(2, 1, 2, 2)
    b = torch.full((2, 1, 2, 2), 0.5)
    assert float(l2_distance(a, b)) == pytest.approx(0.5, abs=1e-6)  # RMS of 0.5 differences
    mask = torch.tensor([1.0, 0, 0, 0]).view(1, 1, 2, 2)
    assert float(l2_distance(a, b, mask)) == pytest.approx(0.25, abs=1e-6)  # sqrt(0.25 / 4)


def test_retentive_loss_terms():
    x = torch.zeros(1, 3, 4, 4)
    xa = torch.full_like(x, 0.1)
    loss, logs = RetentiveLoss(1.0, 0.0, 2.0)(x, xa, torch.full_like(x, 0.3), None)
    assert logs["loss/pix"] == pytest.approx(0.1, abs=1e-4) and logs["loss/adv"] == pytest.approx(0.2, abs=1e-4)
    assert float(loss) == pytest.approx(0.1 + 2 * 0.2, abs=1e-4)


def test_recipe_steps_reduce_adv_loss_and_roundtrip(tmp_path):
    torch.manual_seed(0)
    r = RetentiveRecipe(MODEL, {"lambda_feat": 0.0, "lambda_adv": 10.0}, TinyManip(), RecognizerEnsemble([]))
    r.train()
    opt = torch.optim.Adam(r.optimizer_groups()["generator"], lr=3e-3)
    x = _images()
    advs = []
    for _ in range(12):
        loss, logs, xa = r.generator_step(x, 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        advs.append(logs["loss/adv"])
        rms = (xa.detach() - x).flatten(1).pow(2).mean(1).sqrt()
        assert (rms <= 0.05 + 1e-5).all()  # Eq. 3 (clipping to [0,1] only shrinks it)
    assert advs[-1] < advs[0]  # Eq. 7: G(x_adv) moves towards x_adv
    assert not any(id(p) in {id(q) for q in r.manipulator.parameters()} for p in r.optimizer_groups()["generator"])
    r.eval()
    r.export(str(tmp_path / "exp"), {"step": 12})
    prot = create_protector("retentive", checkpoint=str(tmp_path / "exp"))
    with torch.no_grad():
        ref = r.generator(x)
    assert torch.allclose(prot.protect(x), ref, atol=1e-6)
    low = create_protector("retentive", checkpoint=str(tmp_path / "exp"), strength="low").protect(x)
    assert ((low - x).flatten(1).pow(2).mean(1).sqrt() <= 0.025 + 1e-5).all()
    with pytest.raises(WeightsNotFoundError, match="checkpoint"):
        create_protector("retentive")
    with pytest.raises(WeightsNotFoundError):
        create_protector("retentive", checkpoint=str(tmp_path / "missing"))
