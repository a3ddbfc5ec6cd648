"""ARS (ars.txt): DCT high-frequency mask, perturbation module, eps bounds, Eq. 2/10 and Eq. 8 directions, export."""

import pytest
import torch
from torch import nn

from nullswap.errors import WeightsNotFoundError
from nullswap.losses.ars import PerturbationModule, block_dct, block_idct, dct_lowpass_mask, dct_matrix, jpeg_mask
from nullswap.manipulators.base import Manipulator
from nullswap.protectors.base import create_protector
from nullswap.recipes.ars import ARSRecipe
from nullswap.recognizers.ensemble import RecognizerEnsemble

MODEL = {"image_size": 128, "base": 4, "depth": 3, "channels": 8, "encoder_layers": 2, "eps": 0.05,
         "adv_base": 4, "adv_depth": 2}


class TinyManip(Manipulator):
    name = "tiny"
    template = "protector-128"

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))

    def forward(self, x, condition=None):
        return torch.sigmoid(self.net(x * 2 - 1) * 3)


def test_dct_orthonormal_and_mask():
    d = dct_matrix(8)
    assert torch.allclose(d @ d.T, torch.eye(8), atol=1e-6)
    assert float(d[0, 0]) == pytest.approx(1 / 8**0.5)
    m = dct_lowpass_mask(3)
    assert int(m.sum()) == 9 and m[2, 2] == 1 and m[3, 0] == 0 and m[0, 3] == 0
    x = torch.rand(1, 3, 16, 16)
    assert torch.allclose(block_idct(block_dct(x)), x, atol=1e-5)
    c = block_dct(torch.full((1, 1, 8, 8), 0.5))
    assert float(c[0, 0, 0, 0, 0, 0]) == pytest.approx(4.0, abs=1e-5)  # DC = 8 * mean; everything else 0
    assert float(c.abs().sum()) == pytest.approx(4.0, abs=1e-4)


def test_jpeg_mask_removes_high_frequency_only():
    flat = torch.full((1, 3, 16, 16), 0.4)
    assert torch.allclose(jpeg_mask(flat, 1, 1), flat, atol=1e-4)  # DC-only content survives any mask
    x = torch.rand(1, 3, 16, 16)
    assert torch.allclose(jpeg_mask(x, 8, 8), x, atol=1e-4)  # keeping all coefficients = identity
    gray = (0.3 + 0.4 * torch.rand(1, 1, 16, 16)).expand(1, 3, 16, 16)  # R = G = B, no clipping
    coef = block_dct(jpeg_mask(gray, 4, 3)[:, :1])
    high = 1 - dct_lowpass_mask(4)
    assert float((coef * high).abs().max()) < 1e-4  # every coefficient with u >= 4 or v >= 4 removed
    low = block_dct(gray[:, :1]) * dct_lowpass_mask(4)
    assert torch.allclose(coef, low, atol=1e-4)  # the low frequencies kept exactly
    xg = torch.rand(1, 3, 16, 16, requires_grad=True)
    jpeg_mask(xg, 5, 3).sum().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all()


def test_perturbation_module_probabilities():
    x = torch.rand(8, 3, 32, 32)
    y = x + 0.05
    assert torch.equal(PerturbationModule(0.0)(y, x), y)
    out = PerturbationModule(1.0)(y, x, generator=torch.Generator().manual_seed(0))
    assert out.shape == y.shape and not torch.equal(out, y)
    drop = PerturbationModule().op("drop", y, x, torch.Generator().manual_seed(1))
    assert torch.all((drop == y) | (drop == x))  # Eq. 7: each pixel from x~ or x


def test_recipe_steps_and_roundtrip(tmp_path):
    torch.manual_seed(0)
    r = ARSRecipe(MODEL, {}, TinyManip(), RecognizerEnsemble([]))
    r.train()
    g = r.optimizer_groups()
    assert g["discriminator"] and not {id(p) for p in g["generator"]} & {id(p) for p in g["discriminator"]}
    opt_g = torch.optim.Adam(g["generator"], lr=3e-3)
    opt_d = torch.optim.Adam(g["discriminator"], lr=1e-3)
    x = torch.rand(4, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    basic, robust, advs = [], [], []
    for _ in range(10):
        loss, logs, xt = r.generator_step(x, 0)
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()
        assert (xt.detach() - x).abs().max() <= 0.05 + 1e-6  # Eq. 6 L_inf bound
        opt_d.zero_grad()
        ld, logs_d = r.discriminator_step(x, xt.detach())
        ld.backward()
        opt_d.step()
        basic.append(logs["loss/basic"])
        robust.append(logs["loss/robust"])
        advs.append(logs_d["loss/adv_net"])
    assert basic[-1] < basic[0]  # Eq. 2 (white target + lambda ||eta_b||) decreases
    assert robust[-1] < robust[0]  # Eq. 10 decreases
    assert all(torch.isfinite(torch.tensor(advs)))
    r.eval()
    r.export(str(tmp_path / "exp"), {})
    prot = create_protector("ars", checkpoint=str(tmp_path / "exp"), strength="high")
    out = prot.protect(x)
    assert (out - x).abs().max() <= 0.075 + 1e-6
    with torch.no_grad():
        assert torch.allclose(out, r.generator(x, scale=1.5), atol=1e-6)
    with pytest.raises(WeightsNotFoundError):
        create_protector("ars")


def test_adv_net_step_reduces_eq8():
    torch.manual_seed(0)
    r = ARSRecipe(MODEL, {}, TinyManip(), RecognizerEnsemble([]))
    r.train()
    x = torch.rand(4, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    xt = (x + 0.05).clamp(0, 1)  # a smooth protection q_phi can learn to undo
    opt = torch.optim.Adam(r.optimizer_groups()["discriminator"], lr=3e-4)
    vals = []
    for _ in range(8):
        ld, logs = r.discriminator_step(x, xt)
        opt.zero_grad()
        ld.backward()
        opt.step()
        vals.append(logs["loss/adv_net"])
    assert vals[-1] < vals[0]  # Eq. 8: q_phi restores the original manipulation
