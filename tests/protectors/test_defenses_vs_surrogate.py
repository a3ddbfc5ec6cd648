"""ID-Guard, ARS and the retentive generator trained (CPU smoke runs) against the shipped surrogate autoencoder.

Each defense is trained through the one Fabric trainer from its paper config (narrowed for CPU) on CelebA train
identities, and its own objective is then measured with the shipped ``surrogate-ae`` on held-out identities, for the
generator before and after training:

* ID-Guard (id-guard.txt, Eq. 4-8): the manipulation of the protected image moves away from that of the clean image,
  ``||M(x') - M(x)||`` grows.
* ARS (ars.txt, Eq. 2/10): the manipulation of the protected image moves towards the white target image.
* Retentive (retentive-defense.txt, Eq. 7): the manipulation leaves the protected image unchanged,
  ``||x' - M(x')||`` shrinks.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from nullswap.losses.retentive import l2_distance
from nullswap.manipulators import create_manipulator
from nullswap.manipulators.checkpoint import ASSETS_DIR
from nullswap.protectors import create_protector
from nullswap.train import Trainer, build_datasets, load_config
from nullswap.train.trainer import build_recipe

log = logging.getLogger(__name__)
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
STEPS = 30
# Narrower widths than the papers' (CPU); lr 1e-3 instead of 1e-4 so that 30 steps move the objective. ID-Guard also
# on batches of 4 with 2 prior steps and 1 heat-map probe: 3.2x less time (224 -> 70 s, 1 thread, loaded VM) and its
# objective still grows 4.3x (0.0073 -> 0.0314; the assertion asks 1.05x). ARS at batch 4 moved only 0.978x (the
# assertion asks < 0.98), so it stays at 8.
NARROW = {
    "idguard": ["model.base=16", "model.n_blocks=2", "loss.gradient_prior.steps=2", "loss.heatmap_probes=1",
                "train.batch_size=4"],
    "ars": ["model.base=8", "model.depth=5", "model.channels=16", "model.encoder_layers=2", "model.adv_base=8",
            "model.adv_depth=3"],
    "retentive": ["model.base=8", "model.depth=5"],
}


def _objective(name: str, m: torch.nn.Module, x: torch.Tensor, xp: torch.Tensor) -> float:
    with torch.no_grad():
        if name == "idguard":
            return float(l2_distance(m(xp), m(x)))
        if name == "ars":
            return float(l2_distance(m(xp), torch.ones_like(xp)))
        return float(l2_distance(xp, m(xp)))


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.parametrize("name", ["idguard", "ars", "retentive"])
def test_defense_moves_its_objective_on_held_out_faces(shared, tmp_path, name):
    # a committed asset: never skipped
    assert (ASSETS_DIR / "surrogate-ae" / "model.safetensors").is_file(), "the shipped surrogate-ae is missing"
    torch.set_num_threads(2)
    cfg = load_config(CONFIGS / f"{name}.yaml", [
        f"data.root={shared / 'data' / 'celeba'}", "data.max_identities=40", "data.max_per_identity=6",
        "recognizers=[mobilefacenet-casia]", "train.batch_size=8", f"train.max_steps={STEPS}", "train.epochs=10",
        f"train.eval_every={STEPS}", f"train.checkpoint_every={STEPS}", "train.eval_images=8", "train.accelerator=cpu",
        "optim.generator.lr=1.0e-3", *NARROW[name]])
    data = build_datasets(cfg)
    held = data["val"].tensor()[:8]
    assert not set(data["train"].identities) & set(data["val"].identities)
    surrogate = create_manipulator("surrogate-ae")
    torch.manual_seed(cfg["seed"])
    untrained = build_recipe(cfg).eval().protector()
    with torch.no_grad():
        before = _objective(name, surrogate, held, untrained.protect(held, generator=torch.Generator().manual_seed(0)))
    result = Trainer(cfg, out=tmp_path / "run").fit(datasets=data)
    assert result.step == STEPS
    prot = create_protector(name, checkpoint=str(tmp_path / "run" / "export"))
    with torch.no_grad():
        xp = prot.protect(held, generator=torch.Generator().manual_seed(0))
    after = _objective(name, surrogate, held, xp)
    log.info("%s objective on %d held-out crops: untrained %.4f -> trained %.4f", name, len(held), before, after)
    assert xp.shape == held.shape and float(xp.min()) >= 0 and float(xp.max()) <= 1
    if name == "idguard":
        assert after > before * 1.05, (before, after)
    else:
        assert after < before * 0.98, (before, after)
