"""Teacher targets for distillation: quantisation, round trip, shards, the alignment check and the recipe's term."""

import json

import pytest
import torch
from safetensors.torch import save_file

from nullswap.datasets.teacher_targets import (
    DELTA_STEPS,
    TeacherLookup,
    TeacherTargets,
    load_teacher_targets,
    make_teacher_targets,
    quantize_change,
    save_teacher_targets,
)
from nullswap.errors import InputError
from nullswap.losses.distillation import distillation_loss


def _crops(n: int = 10, size: int = 16) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1


class Shift:
    """A stand-in teacher: a fixed, seed-dependent change of at most 8/255."""

    def protect(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.rand(x.shape, generator=generator) * 2 - 1
        return (x + noise * 8 / 255).clamp(0, 1)


def test_quantize_change_error_and_clipping():
    change = (torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1) * 10 / 255
    q, clipped = quantize_change(change)
    assert q.dtype == torch.int8 and clipped == 0
    assert (q.float() / (255 * DELTA_STEPS) - change).abs().max() <= 0.5 / (255 * DELTA_STEPS) + 1e-9
    q, clipped = quantize_change(torch.full((1, 3, 2, 2), 20 / 255))
    assert clipped == 12 and int(q.max()) == 127


def test_make_save_load_round_trip_and_shards(tmp_path):
    crops = _crops()
    get = lambda idx: crops[idx]  # noqa: E731
    teacher = Shift()
    full = make_teacher_targets(teacher, get, [3, 1, 4, 0], batch_size=3, seed=5, teacher={"name": "shift"})
    assert full.indices.tolist() == [3, 1, 4, 0] and full.size == (16, 16)
    want = teacher.protect(crops[[3, 1, 4]], generator=torch.Generator().manual_seed(5 + 3)) - crops[[3, 1, 4]]
    assert torch.allclose(full.change([0, 1, 2]), want, atol=0.51 / (255 * DELTA_STEPS))
    a = make_teacher_targets(teacher, get, [2, 5], batch_size=2, teacher={"name": "shift"})
    b = make_teacher_targets(teacher, get, [7], batch_size=2, teacher={"name": "shift"})
    save_teacher_targets(tmp_path / "a.safetensors", a)
    save_teacher_targets(tmp_path / "b.safetensors", b)
    merged = load_teacher_targets([tmp_path / "a.safetensors", tmp_path / "b.safetensors"])
    assert merged.indices.tolist() == [2, 5, 7] and merged.teacher == {"name": "shift"}
    assert torch.equal(merged.delta[:2], a.delta) and torch.equal(merged.delta[2:], b.delta)
    # the same crop in two shards, different teachers, foreign files and missing files are refused
    with pytest.raises(InputError, match="duplicates"):
        load_teacher_targets([tmp_path / "a.safetensors", tmp_path / "a.safetensors"])
    c = make_teacher_targets(teacher, get, [8], teacher={"name": "other"})
    save_teacher_targets(tmp_path / "c.safetensors", c)
    with pytest.raises(InputError, match="same teacher"):
        load_teacher_targets([tmp_path / "a.safetensors", tmp_path / "c.safetensors"])
    save_file({"x": torch.zeros(1)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(InputError, match="format"):
        load_teacher_targets(tmp_path / "foreign.safetensors")
    with pytest.raises(InputError, match="no file"):
        load_teacher_targets(tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="unreadable"):
        load_teacher_targets(tmp_path / "bad.safetensors")
    with pytest.raises(InputError, match="at least one"):
        make_teacher_targets(teacher, get, [])


def test_targets_checks_shapes():
    with pytest.raises(InputError, match="int8"):
        TeacherTargets(torch.zeros(2, dtype=torch.int64), torch.zeros(2, 3, 4, 4), torch.zeros(2, 3))
    with pytest.raises(InputError, match="clean_mean"):
        TeacherTargets(torch.zeros(2, dtype=torch.int64), torch.zeros(2, 3, 4, 4, dtype=torch.int8), torch.zeros(3, 3))


def test_lookup_targets_mask_and_alignment_check():
    crops = _crops()
    targets = make_teacher_targets(Shift(), lambda idx: crops[idx], [2, 6], batch_size=2)
    lookup = TeacherLookup(targets)
    batch_idx = torch.tensor([6, 0, 2, 9])
    target, mask = lookup(crops[batch_idx], batch_idx)
    assert mask.tolist() == [True, False, True, False]
    assert torch.equal(target[1], crops[0]) and torch.equal(target[3], crops[9])
    assert torch.allclose(target[0], (crops[6] + targets.change([1])[0]).clamp(0, 1))
    assert torch.allclose(target[2], (crops[2] + targets.change([0])[0]).clamp(0, 1))
    # an index past the targets' range has none; crops other than those the targets were made on are refused
    target, mask = lookup(crops[[9]], torch.tensor([40]))
    assert mask.tolist() == [False]
    with pytest.raises(InputError, match="channel means"):
        lookup(crops[[3]], torch.tensor([2]))
    with pytest.raises(InputError, match="16x16"):
        lookup(torch.rand(1, 3, 8, 8), torch.tensor([2]))
    empty = TeacherTargets(torch.zeros(0, dtype=torch.int64), torch.zeros(0, 3, 4, 4, dtype=torch.int8),
                           torch.zeros(0, 3))
    with pytest.raises(InputError, match="at least one crop"):
        TeacherLookup(empty)


def test_distillation_loss_masked_mean_and_gradient():
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    t = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    y = x.clone().requires_grad_(True)
    mask = torch.tensor([True, False, True])
    loss = distillation_loss(y, t, mask)
    want = ((x - t).pow(2).flatten(1).mean(1))[mask].mean()
    assert torch.allclose(loss, want)
    loss.backward()
    assert float(y.grad[1].abs().sum()) == 0.0 and float(y.grad[0].abs().sum()) > 0
    empty = distillation_loss(y, t, torch.zeros(3, dtype=torch.bool))
    assert float(empty.detach()) == 0.0 and empty.requires_grad
    assert torch.allclose(distillation_loss(x, t), (x - t).pow(2).mean())
    with pytest.raises(InputError, match="bool"):
        distillation_loss(x, t, torch.ones(3))


def test_recipe_distillation_term_pulls_towards_the_teacher(tmp_path):
    from tests.test_recipe_nullswap import _recipe

    crops = torch.rand(4, 3, 128, 128, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    targets = make_teacher_targets(Shift(), lambda idx: crops[idx], [0, 1, 2, 3], batch_size=4)
    save_teacher_targets(tmp_path / "t.safetensors", targets)
    lookup = TeacherLookup(load_teacher_targets(tmp_path / "t.safetensors"))
    from nullswap.recipes.nullswap import NullSwapRecipe

    with pytest.raises(InputError, match="lambda_distill"):
        NullSwapRecipe(**_recipe_kwargs(), teacher=lookup)
    r = _recipe(lambda_distill=50.0, psnr_floor=30.0)
    r.teacher = lookup
    idx = torch.tensor([0, 1, 2, 3])
    _, logs, _ = r.generator_step(crops, 0, indices=idx)
    assert logs["loss/distill"] > 0
    _, logs_none, _ = r.generator_step(crops, 0)  # without indices there is no target
    assert logs_none["loss/distill"] == 0.0
    opt = torch.optim.Adam(r.generator.parameters(), lr=2e-3)
    first = None
    for _ in range(15):
        loss, logs, _ = r.generator_step(crops, 0, indices=idx)
        first = logs["loss/distill"] if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert logs["loss/distill"] < first
    json.dumps(logs)
    r.export(str(tmp_path / "export"), {})
    meta = json.loads((tmp_path / "export" / "config.json").read_text())
    assert json.dumps(meta).count('"crops": 4') == 1  # the targets' provenance travels with the export


def _recipe_kwargs() -> dict:
    from nullswap.recognizers.ensemble import RecognizerEnsemble
    from tests.test_recipe_nullswap import LOSS, MODEL, L1Perceptual, TinyRecognizer

    ens = RecognizerEnsemble([TinyRecognizer(1), TinyRecognizer(2)], source_template="protector-128")
    return {"model_cfg": MODEL, "loss_cfg": LOSS, "ensemble": ens, "perceptual": L1Perceptual()}


def test_teacher_command_writes_a_shard_of_a_seeded_subset(tmp_path):
    import yaml
    from typer.testing import CliRunner

    from nullswap.cli.main import app
    from nullswap.datasets.crop_pack import save_crop_pack
    from nullswap.datasets.faces import AlignedFaces
    from nullswap.protectors.nullswap import NullSwapConfig, NullSwapGenerator, save_nullswap
    from tests.test_recipe_nullswap import MODEL

    crops = (torch.rand(6, 3, 128, 128, generator=torch.Generator().manual_seed(0)) * 200 + 20).round().byte()
    faces = AlignedFaces.from_arrays(crops.numpy(), [0, 0, 1, 1, 2, 2], ["a", "b", "c"], "protector-128")
    pack = save_crop_pack(faces, tmp_path / "train.npz", codec="raw")
    torch.manual_seed(0)
    cfg = NullSwapConfig.from_dict(MODEL)
    save_nullswap(tmp_path / "ckpt", NullSwapGenerator(cfg).eval(), cfg, {})
    conf = tmp_path / "c.yaml"
    conf.write_text(yaml.safe_dump({"recipe": "nullswap", "seed": 3, "recognizers": ["dlib-resnet29"],
                                    "data": {"packs": {"train": str(pack)}, "template": "protector-128"},
                                    "model": MODEL}))
    out = tmp_path / "t1.safetensors"
    made = tmp_path / "new" / "t1.safetensors"  # the folder does not exist yet
    res = CliRunner().invoke(app, ["teacher", "-c", str(conf), "-o", str(made), "--checkpoint", str(tmp_path / "ckpt"),
                                   "--refine", "0", "--limit", "4", "--shard", "1/2", "--threads", "1"])
    assert res.exit_code == 0, res.output
    t = load_teacher_targets(made)
    chosen = torch.randperm(6, generator=torch.Generator().manual_seed(3 + 100_003))[:4].tolist()
    assert t.teacher["subset_seed"] == 3 + 100_003
    assert t.indices.tolist() == chosen[1::2]
    assert t.teacher["refine"] == 0 and t.teacher["checkpoint"] == str(tmp_path / "ckpt")
    assert torch.allclose(t.clean_mean, faces.tensor(chosen[1::2]).mean(dim=(2, 3)))
    summary = json.loads(res.stdout[res.stdout.index("{"):])
    assert summary["crops"] == 2
    x = faces.tensor(chosen[1::2])
    y = (x + t.change([0, 1])).clamp(0, 1)
    want = float((10 * torch.log10(1 / (y - x).pow(2).flatten(1).mean(1))).mean())
    assert abs(summary["psnr_mean"] - want) < 0.01
    bad = CliRunner().invoke(app, ["teacher", "-c", str(conf), "-o", str(out), "--shard", "2/2"])
    assert bad.exit_code != 0 and "0 <= I < N" in bad.output
