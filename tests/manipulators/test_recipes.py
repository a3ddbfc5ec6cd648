"""Manipulator recipes: a few steps on 4 tiny images reduce the loss; export round-trips through the loaders."""

import pytest
import torch

from nullswap.errors import InputError
from nullswap.manipulators.autoencoder import load_autoencoder
from nullswap.manipulators.swapper import IdentitySwapper, load_swapper
from nullswap.recipes import create_recipe, list_recipes
from nullswap.recipes.manipulators import AutoencoderRecipe, SwapperRecipe
from nullswap.recognizers.ensemble import RecognizerEnsemble

from ._tiny import TinyRecognizer

AE = {"image_size": 128, "channels": 4, "n_down": 2, "n_res": 1, "max_channels": 8}
SW = {"image_size": 128, "channels": 4, "n_down": 2, "max_channels": 8, "n_blocks": 1}


def _ens() -> RecognizerEnsemble:
    return RecognizerEnsemble([TinyRecognizer(1), TinyRecognizer(2)], source_template="protector-128")


def _images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    base = torch.rand(4, 3, 1, 1, generator=g) * 0.6 + 0.2  # smooth, face-like colour fields
    return (base + 0.1 * torch.rand(4, 3, 128, 128, generator=g)).clamp(0, 1)


def test_registered():
    assert {"surrogate-ae", "swapper"} <= set(list_recipes())


def test_autoencoder_steps_reduce_loss(tmp_path):
    torch.manual_seed(0)
    r = AutoencoderRecipe(AE, {}, _ens())
    r.train()
    assert not r.ensemble.training and r.discriminator is None
    opt = torch.optim.Adam(r.optimizer_groups()["generator"], lr=3e-3)
    x = _images()
    losses = []
    for _ in range(12):
        loss, logs, out = r.generator_step(x, 0)
        assert out.shape == x.shape and {"loss/l1", "psnr", "loss/total"} <= set(logs)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] * 0.8, losses
    with pytest.raises(InputError):
        r.discriminator_step(x, x)
    y = r.protector().protect(x).detach()
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    r.export(str(tmp_path / "ae"), {"step": 12})
    m = load_autoencoder(tmp_path / "ae")
    assert not m.training and not any(p.requires_grad for p in m.parameters())
    r.eval()
    with torch.no_grad():
        assert torch.allclose(m(x), r.generator(x), atol=1e-6)


def test_swapper_steps_reduce_loss(tmp_path):
    torch.manual_seed(0)
    ens = _ens()
    r = SwapperRecipe(SW, {"disc_channels": 4}, ens)
    assert r.config.latent_dim == 16 and r.config.identity_recognizer == "tiny-1"
    assert SwapperRecipe.source_index(4).tolist() == [0, 1, 3, 2]
    r.train()
    groups = r.optimizer_groups()
    frozen = {id(p) for p in ens.parameters()}
    assert groups["discriminator"] and not frozen & {id(p) for g in groups.values() for p in g}
    opt_g = torch.optim.Adam(groups["generator"], lr=3e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(groups["discriminator"], lr=1e-4, betas=(0.5, 0.999))
    x = _images()
    totals, ids = [], []
    for _ in range(12):
        loss, logs, out = r.generator_step(x, 0)
        assert {"loss/id", "loss/rec", "loss/adv", "loss/wfm", "id/cos_self", "id/cos_swap"} <= set(logs)
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()
        loss_d, logs_d = r.discriminator_step(x, out.detach())
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        totals.append(logs["loss/rec"] * 10 + logs["loss/id"] * 10)
        ids.append(logs["loss/id"])
    assert totals[-1] < totals[0], totals
    assert all(p.grad is None for p in ens.parameters())
    y = r.protector().protect(x)
    assert y.shape == x.shape
    r.export(str(tmp_path / "sw"), {"step": 12})
    sw = load_swapper(tmp_path / "sw", recognizer=TinyRecognizer(1))
    assert isinstance(sw, IdentitySwapper) and not sw.training
    r.eval()
    with torch.no_grad():
        assert torch.allclose(sw.swap(x, x.flip(0)), r.generator(x, r.embed(x.flip(0))), atol=1e-5)


def test_create_recipe_from_config(monkeypatch):
    import nullswap.recipes.manipulators as mod

    monkeypatch.setattr(mod, "_ensemble", lambda cfg, template: _ens())
    r = create_recipe("surrogate-ae", {"model": AE, "recognizers": ["x"]})
    assert isinstance(r, AutoencoderRecipe)
    r = create_recipe("swapper", {"model": SW, "recognizers": ["x"]})
    assert isinstance(r, SwapperRecipe)
    with pytest.raises(InputError, match="template"):
        create_recipe("swapper", {"model": SW, "recognizers": ["x"], "data": {"template": "protector-256"}})
