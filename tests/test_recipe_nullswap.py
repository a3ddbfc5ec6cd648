"""The NullSwap training recipe: a few optimisation steps on tiny random recognizers reduce the Eq. 13 loss."""

import json

import pytest
import torch
from torch import nn

from nullswap.errors import InputError
from nullswap.protectors.nullswap import NullSwapProtector, load_nullswap
from nullswap.recipes import create_recipe
from nullswap.recipes.nullswap import NullSwapRecipe
from nullswap.recognizers.base import FaceRecognizer, RecognizerInfo
from nullswap.recognizers.ensemble import RecognizerEnsemble

MODEL = {"L": 1, "M": 1, "N": 2, "image_size": 128, "id_channels": 16, "perturb_channels": 8,
         "feature_channels": 8, "cloak_channels": 8, "disc_channels": 8}
LOSS = {"dlw": {"k": 3}, "mse_form": "mse"}  # squared form: tiny random recognizers move faster


class TinyRecognizer(FaceRecognizer):
    def __init__(self, seed: int, dim: int = 16) -> None:
        super().__init__(RecognizerInfo(f"tiny-{seed}", dim, (112, 112), "arcface-112", "x*2-1"))
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.AvgPool2d(4), nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                                 nn.LazyLinear(dim))
        self.net(torch.zeros(1, 3, 112, 112))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1)


class L1Perceptual(nn.Module):
    name = "l1-standin"

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))  # a frozen parameter, like a real perceptual network

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.scale * (x - y).pow(2).flatten(1).mean(1)  # smooth at x = y, like LPIPS


def _recipe(**loss) -> NullSwapRecipe:
    torch.manual_seed(0)
    ens = RecognizerEnsemble([TinyRecognizer(1), TinyRecognizer(2)], source_template="protector-128")
    return NullSwapRecipe(MODEL, {**LOSS, **loss}, ens, L1Perceptual())


def _images() -> torch.Tensor:
    return torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))


def test_groups_exclude_frozen_helpers_and_state_dict():
    r = _recipe()
    groups = r.optimizer_groups()
    frozen = {id(p) for p in list(r.ensemble.parameters()) + list(r.perceptual.parameters())}
    assert groups["generator"] and groups["discriminator"]
    assert not frozen & {id(p) for g in groups.values() for p in g}
    assert {id(p) for p in groups["generator"]} == {id(p) for p in r.generator.parameters()}
    sd = r.state_dict()
    assert sd and all(k.startswith(("generator.", "discriminator.")) for k in sd)
    r2 = _recipe()
    r2.load_state_dict(sd)
    with pytest.raises(RuntimeError, match="missing"):
        r2.load_state_dict({k: v for k, v in sd.items() if not k.startswith("discriminator.")})
    r.train()
    assert r.generator.training and not r.ensemble.training and not r.perceptual.training
    assert _recipe(lambda_d=0.0).discriminator is None


def test_training_steps_reduce_total_loss(tmp_path):
    r = _recipe()
    r.train()
    groups = r.optimizer_groups()
    opt_g = torch.optim.Adam(groups["generator"], lr=2e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(groups["discriminator"], lr=1e-4, betas=(0.5, 0.999))
    x = _images()
    totals, ids = [], []
    for _ in range(10):
        loss, logs, protected = r.generator_step(x, epoch=0)
        assert torch.isfinite(loss) and protected.shape == x.shape
        assert {"loss/total", "loss/id", "loss/mse", "loss/lpips", "loss/adv", "dlw/tiny-1", "id/tiny-2"} <= set(logs)
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()
        opt_d.zero_grad()
        loss_d, logs_d = r.discriminator_step(x, protected.detach())
        assert torch.isfinite(loss_d) and "loss/dis" in logs_d
        loss_d.backward()
        opt_d.step()
        totals.append(logs["loss/total"])
        ids.append((logs["id/tiny-1"] + logs["id/tiny-2"]) / 2)
        assert sum(logs[f"dlw/tiny-{i}"] for i in (1, 2)) == pytest.approx(2.0)  # Eq. 3: weights sum to c
    assert all(v == v for v in totals)
    assert sum(totals[-3:]) / 3 < totals[0], totals
    assert ids[-1] < ids[0] - 0.01, ids  # the identity is being cloaked
    assert all(p.grad is None for p in r.ensemble.parameters())

    # DLW state resumes exactly
    state = json.loads(json.dumps(r.extra_state()))
    assert state["dlw"]["step"] == 10 and len(state["dlw"]["history"]) == 3
    r2 = _recipe()
    r2.load_state_dict(r.state_dict())
    r2.load_extra_state(state)
    r.eval()
    r2.eval()
    with torch.no_grad():
        torch.manual_seed(1)
        _, la, _ = r.generator_step(x, epoch=1)
        torch.manual_seed(1)
        _, lb, _ = r2.generator_step(x, epoch=1)
    assert la == lb  # same weights, same DLW history, same noise -> identical logs, DLW weights included

    # protector and export
    prot = r.protector()
    assert isinstance(prot, NullSwapProtector)
    y1 = prot.protect(x, generator=torch.Generator().manual_seed(3))
    r.export(str(tmp_path / "export"), {"step": 8})
    gen, cfg, meta = load_nullswap(tmp_path / "export")
    assert meta["step"] == 8 and meta["recognizers"] == ["tiny-1", "tiny-2"] and cfg.image_size == 128
    g = torch.Generator().manual_seed(3)
    assert torch.equal(NullSwapProtector(gen, cfg).protect(x, generator=g), y1)


def test_discriminator_step_without_discriminator():
    r = _recipe(lambda_d=0.0)
    with pytest.raises(InputError, match="discriminator"):
        r.discriminator_step(_images(), _images())


def test_from_config_and_create_recipe(monkeypatch):
    import nullswap.metrics.perceptual
    import nullswap.recipes.nullswap as mod

    def fake_ensemble(names, source_template, weights_dir=None):
        assert names == ["a", "b"] and source_template == "protector-128"
        return RecognizerEnsemble([TinyRecognizer(1), TinyRecognizer(2)], source_template=source_template)

    monkeypatch.setattr(mod, "RecognizerEnsemble", fake_ensemble)
    monkeypatch.setattr(nullswap.metrics.perceptual, "create_perceptual", lambda name="auto": L1Perceptual())
    cfg = {"model": MODEL, "loss": {"strategy": "average"}, "recognizers": ["a", "b"], "perceptual": "auto"}
    r = create_recipe("nullswap", cfg)
    assert isinstance(r, NullSwapRecipe) and r.criterion.aggregator.strategy == "average"
    with pytest.raises(InputError, match="recognizers"):
        NullSwapRecipe.from_config({**cfg, "recognizers": []})
    with pytest.raises(InputError, match="template"):
        NullSwapRecipe.from_config({**cfg, "data": {"template": "protector-256"}})


def test_from_config_init_starts_from_a_trained_generator_grown_deeper(monkeypatch, tmp_path):
    import nullswap.metrics.perceptual
    import nullswap.recipes.nullswap as mod
    from nullswap.protectors.nullswap.checkpoint import save_nullswap
    from nullswap.train.config import validate_config

    monkeypatch.setattr(mod, "RecognizerEnsemble", lambda names, source_template, weights_dir=None:
                        RecognizerEnsemble([TinyRecognizer(1), TinyRecognizer(2)], source_template=source_template))
    monkeypatch.setattr(nullswap.metrics.perceptual, "create_perceptual", lambda name="auto": L1Perceptual())
    trained = _recipe().generator.eval()
    save_nullswap(tmp_path / "trained", trained, trained.config)
    cfg = {"model": {**MODEL, "L": 2, "N": 3}, "loss": {"strategy": "average"}, "recognizers": ["a", "b"],
           "init": str(tmp_path / "trained")}
    validate_config(cfg)  # "init" is a known top-level key
    r = NullSwapRecipe.from_config(cfg)
    assert r.generator.config.L == 2 and r.generator.config.N == 3
    x = _images()
    with torch.no_grad():
        a = trained(x, generator=torch.Generator().manual_seed(0))
        b = r.generator.eval()(x, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(a, b, atol=1e-6)  # the grown generator starts as the trained one
    with pytest.raises(InputError, match="init: expected a NullSwap checkpoint folder"):
        NullSwapRecipe.from_config({**cfg, "init": 3})
