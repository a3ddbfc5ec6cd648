"""ID-Guard (id-guard.txt): MGDA min-norm (S-I), KPI weights (Eq. 10-11), gradient prior (Eq. 12), IDM, recipe."""

import math

import pytest
import torch
from torch import nn

from nullswap.errors import InputError, WeightsNotFoundError
from nullswap.losses.idguard import FeatureTap, attack_loss, binary_mask, gradient_prior, heatmap_mask
from nullswap.losses.weighting import kpi_weights, min_norm_weights
from nullswap.manipulators.base import Manipulator
from nullswap.protectors.base import create_protector
from nullswap.recipes.idguard import IDGuardRecipe
from nullswap.recognizers.base import FaceRecognizer, RecognizerInfo
from nullswap.recognizers.ensemble import RecognizerEnsemble

MODEL = {"image_size": 128, "base": 4, "n_blocks": 1, "eps": 0.025}


class TinyManip(Manipulator):
    name = "tiny"
    template = "protector-128"

    def __init__(self, seed: int = 3) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))

    def forward(self, x, condition=None):
        return torch.sigmoid(self.net(x * 2 - 1) * 3)


class TinyRecognizer(FaceRecognizer):
    def __init__(self, seed: int, dim: int = 16) -> None:
        super().__init__(RecognizerInfo(f"tiny-{seed}", dim, (112, 112), "arcface-112", "x*2-1"))
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.AvgPool2d(4), nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                                 nn.LazyLinear(dim))
        self.net(torch.zeros(1, 3, 112, 112))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1)


def _ens() -> RecognizerEnsemble:
    return RecognizerEnsemble([TinyRecognizer(1)], source_template="protector-128")


def _images() -> torch.Tensor:
    return torch.rand(4, 3, 128, 128, generator=torch.Generator().manual_seed(0))


def test_mgda_two_tasks_closed_form():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    lam = min_norm_weights([g1, g2])
    # gamma = <g2 - g1, g2> / ||g1 - g2||^2 = 4 / 5
    assert lam.tolist() == pytest.approx([0.8, 0.2])
    combo = lam[0] * g1.double() + lam[1] * g2.double()
    assert float(combo @ (g1.double() - g2.double())) == pytest.approx(0.0, abs=1e-12)  # orthogonal to the segment
    assert min_norm_weights([g1, 3 * g1]).tolist() == pytest.approx([1.0, 0.0])  # the shorter vertex
    three = min_norm_weights([torch.tensor([1.0, 0]), torch.tensor([0, 1.0]), torch.tensor([-1.0, -1.0])])
    point = three[0] * torch.tensor([1.0, 0]).double() + three[1] * torch.tensor([0, 1.0]).double() \
        + three[2] * torch.tensor([-1.0, -1.0]).double()
    assert float(point.norm()) < 1e-3 and float(three.sum()) == pytest.approx(1.0)  # 0 lies in the hull
    with pytest.raises(InputError):
        min_norm_weights([])


def test_kpi_weights_eq10_11():
    lam = kpi_weights([0.5, 0.1], [1.0, 10.0])
    assert lam[0] == pytest.approx(-(0.5) * math.log(0.5))
    assert lam[1] == pytest.approx(10 * -(0.9) * math.log(0.1))
    easy, hard = kpi_weights([0.6, 0.05], [1.0, 1.0])
    assert hard > easy  # harder-to-attack task (lower KPI) gets the larger weight
    assert torch.isfinite(kpi_weights([0.0, 1.0], [1, 1])).all()
    with pytest.raises(InputError):
        kpi_weights([0.1], [1.0, 2.0])


def test_gradient_prior_bounded_and_disruptive():
    m = TinyManip()
    x = _images()
    prior = gradient_prior(lambda z: m(z), x, eps=0.03, steps=5, step_size=0.01,
                           generator=torch.Generator().manual_seed(0))
    assert prior.shape == (3, 128, 128) and float(prior.abs().max()) <= 0.03 + 1e-7
    with torch.no_grad():
        y = m(x)
        d_prior = (m((x + prior).clamp(0, 1)) - y).pow(2).mean()
        rand = (torch.rand(3, 128, 128, generator=torch.Generator().manual_seed(5)) * 2 - 1) * 0.03
        d_rand = (m((x + rand).clamp(0, 1)) - y).pow(2).mean()
    assert d_prior > d_rand  # PGD-derived prior disrupts more than random noise of the same bound


def test_masks_and_feature_tap():
    mb = binary_mask("protector-128")
    assert mb.shape == (1, 1, 128, 128) and set(mb.unique().tolist()) <= {0.0, 1.0}
    assert mb[0, 0, 64, 64] == 1 and mb[0, 0, 2, 2] == 0  # face centre in, corner out
    hm = heatmap_mask(_ens(), _images(), probes=2, generator=torch.Generator().manual_seed(0))
    assert hm.shape == (4, 1, 128, 128) and float(hm.min()) >= 0 and torch.allclose(hm.flatten(1).amax(1),
                                                                                       torch.ones(4))
    m = TinyManip()
    tap = FeatureTap(m)
    assert tap.layer == "net.0"
    m(_images())
    assert tap.pop().shape == (4, 8, 128, 128)
    t = {"bin": torch.tensor(1.0), "hm": torch.tensor(2.0), "feat": torch.tensor(3.0), "id": torch.tensor(0.5)}
    assert float(attack_loss(t)) == pytest.approx(-6.0 + 0.5)


@pytest.mark.parametrize("strategy", ["kpi", "mgda"])
def test_recipe_steps_increase_disruption_and_roundtrip(tmp_path, strategy):
    torch.manual_seed(0)
    loss_cfg = {"strategy": strategy, "prior_alpha": [1.0, 10.0], "heatmap_probes": 1,
                "gradient_prior": {"steps": 2}}
    r = IDGuardRecipe(MODEL, loss_cfg, [TinyManip(3), TinyManip(4)], _ens())
    r.train()
    opt = torch.optim.Adam(r.optimizer_groups()["generator"], lr=3e-3)
    x = _images()
    totals, bins = [], []
    for _ in range(8):
        loss, logs, prot = r.generator_step(x, 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert float((prot.detach() - x).abs().max()) <= 0.025 + 1e-6  # ||G(x)||_inf <= eps
        totals.append(float(loss))
        bins.append(logs["m0/bin"] + logs["m1/bin"])
    assert int(r.generator.prior_ready) == 1 and float(r.generator.prior.abs().max()) > 0
    assert bins[-1] > bins[0]  # Eq. 4: masked distortion of the manipulations grows
    if strategy == "mgda":
        assert sum(r.last_weights) == pytest.approx(1.0)
        assert totals[-1] < totals[0]
    else:
        assert r.last_weights[1] > r.last_weights[0]  # alpha prior 10 on the second task
    state = r.state_dict()
    assert all(k.startswith("generator.") for k in state) and "generator.prior" in state
    r.eval()
    r.export(str(tmp_path / "exp"), {})
    prot = create_protector("idguard", checkpoint=str(tmp_path / "exp"))
    with torch.no_grad():
        assert torch.allclose(prot.protect(x), r.generator(x), atol=1e-6)
    low = create_protector("idguard", checkpoint=str(tmp_path / "exp"), strength="low").protect(x)
    assert float((low - x).abs().max()) <= 0.0125 + 1e-6
    with pytest.raises(WeightsNotFoundError, match="idguard"):
        create_protector("idguard")


def test_recipe_requires_recognizer():
    with pytest.raises(InputError, match="recognizer"):
        IDGuardRecipe(MODEL, {}, [TinyManip()], RecognizerEnsemble([], source_template="protector-128"))
