"""End-to-end resume: N steps in one go == k steps, stop, ``--resume`` to N (same weights, bit for bit)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import Dataset

from nullswap.train import Trainer, load_config


class RandomCrops(Dataset):
    """Fixed random 128-px crops with the two methods the trainer uses (items and ``tensor``)."""

    def __init__(self, n: int, seed: int) -> None:
        self.x = torch.rand(n, 3, 128, 128, generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int):
        return self.x[i], 0

    def tensor(self, indices=None):
        return self.x if indices is None else self.x[list(indices)]


def _cfg(shared, steps: int):
    return load_config(None, _cfg_args(shared, steps))


def _cfg_args(shared, steps: int) -> list[str]:
    return ([
        "recipe=nullswap", "recognizers=[mobilefacenet-casia, faceplugin-512]", "eval_recognizers=[]",
        f"weights_dir={shared / 'weights'}",
        "model={L: 1, M: 1, N: 1, image_size: 128, id_channels: 8, perturb_channels: 8, feature_channels: 8, "
        "cloak_channels: 8, disc_channels: 8, se_reduction: 4, expansion: 2, max_delta: 10}",
        "loss={identity: threshold, strategy: average, recognizers_per_step: 1, psnr_floor: 38.0, "
        "lambda_chroma: 0.5, lambda_lpips: 0.0, lambda_d: 0.1}",
        "eot={p: 1.0}",
        "data.template=protector-128",
        f"train.max_steps={steps}", "train.batch_size=2", "train.accelerator=cpu", "train.devices=1",
        "train.precision=32-true", "train.checkpoint_every=0", "train.eval_every=0", "train.eval_images=2",
    ])


@pytest.mark.shared
def test_resume_continues_exactly(shared, tmp_path):
    torch.set_num_threads(1)
    data = {"train": RandomCrops(6, 0)}  # 3 batches per epoch: the resume lands mid-epoch and crosses an epoch
    Trainer(_cfg(shared, 4), out=tmp_path / "once", loggers=False).fit(datasets=data)
    Trainer(_cfg(shared, 2), out=tmp_path / "twice", loggers=False).fit(datasets=data)
    Trainer(_cfg(shared, 4), out=tmp_path / "twice", loggers=False).fit(resume=True, datasets=data)
    a = load_file(str(tmp_path / "once" / "export" / "model.safetensors"))
    b = load_file(str(tmp_path / "twice" / "export" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.shared
def test_resume_keeps_earlier_csv_logs(shared, tmp_path):
    """Lightning's CSVLogger empties its folder; each launch therefore logs into its own ``logs/<NNN-time>/``."""
    torch.set_num_threads(1)
    data = {"train": RandomCrops(4, 0)}
    Trainer(_cfg(shared, 1), out=tmp_path / "run").fit(datasets=data)
    Trainer(_cfg(shared, 2), out=tmp_path / "run").fit(resume=True, datasets=data)
    csvs = sorted((tmp_path / "run" / "logs").glob("*/metrics.csv"))
    assert [p.parent.name[:3] for p in csvs] == ["000", "001"], csvs
    assert all(p.read_text().strip() for p in csvs)


def test_lr_factor_step_decay_and_errors():
    from nullswap.errors import InputError
    from nullswap.train.trainer import lr_factor

    assert lr_factor(5, None, 0.1) == 1.0 and lr_factor(5, [], 0.1) == 1.0
    assert [lr_factor(s, [2, 4], 0.5) for s in range(6)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    with pytest.raises(InputError, match="lr_gamma"):
        lr_factor(0, [1], 0.0)
    with pytest.raises(InputError, match="lr_milestones"):
        lr_factor(0, [1.5], 0.5)


@pytest.mark.shared
def test_lr_schedule_applies_after_resume(shared, tmp_path):
    """The rate comes from the step, not from the optimiser state a resumed run loads."""
    torch.set_num_threads(1)
    data = {"train": RandomCrops(4, 0)}
    sched = ["train.lr_milestones=[1]", "train.lr_gamma=0.5"]
    Trainer(load_config(None, [*_cfg_args(shared, 1)]), out=tmp_path / "r", loggers=False).fit(datasets=data)
    tr = Trainer(load_config(None, [*_cfg_args(shared, 2), *sched]), out=tmp_path / "r", loggers=False)
    tr.fit(resume=True, datasets=data)
    state = json.loads((tmp_path / "r" / "ckpt" / "last" / "state.json").read_text())
    lrs = [g["lr"] for g in state["optimizers"]["generator"]["param_groups"]]
    assert lrs == [pytest.approx(2.5e-4)] * len(lrs), lrs


@pytest.mark.shared
def test_logs_reach_disk_at_each_checkpoint(shared, tmp_path):
    """A run killed after a checkpoint keeps its logs up to it (CSV and TensorBoard are flushed there)."""
    torch.set_num_threads(1)
    seen: list[int] = []

    def progress(step, total, logs):
        if step == 1:
            csvs = list((tmp_path / "run" / "logs").glob("*/metrics.csv"))
            assert csvs and "loss/total" in csvs[0].read_text()
            seen.append(step)

    cfg = load_config(None, [*_cfg_args(shared, 2), "train.checkpoint_every=1"])
    Trainer(cfg, out=tmp_path / "run", progress=progress).fit(datasets={"train": RandomCrops(4, 0)})
    assert seen == [1]


def test_param_groups_longest_prefix_and_errors():
    from nullswap.errors import InputError
    from nullswap.protectors.nullswap import NullSwapConfig, NullSwapGenerator
    from nullswap.train.trainer import param_groups

    g = NullSwapGenerator(NullSwapConfig(L=1, M=1, N=1, image_size=64, id_channels=8, perturb_channels=8,
                                         feature_channels=8, cloak_channels=8, detail_channels=8))
    params = list(g.parameters())
    assert param_groups(g, params, {}) == [{"params": params, "lr_mult": 1.0}]
    groups = {gr["lr_mult"]: gr["params"] for gr in param_groups(g, params, {"lr_multipliers": {
        "detail": 10, "detail_out": 5, "detail.0": 2}})}
    names = {id(p): n for n, p in g.named_parameters()}
    assert {names[id(p)] for p in groups[5.0]} == {"detail_out.weight", "detail_out.bias"}  # not "detail"
    assert all(names[id(p)].startswith("detail.0.") for p in groups[2.0])  # the longest prefix wins
    assert all(names[id(p)].startswith("detail.") and not names[id(p)].startswith("detail.0.") for p in groups[10.0])
    assert not any(names[id(p)].startswith("detail") for p in groups[1.0])
    assert sum(len(v) for v in groups.values()) == len(params)
    with pytest.raises(InputError, match="'detai', which names none"):
        param_groups(g, params, {"lr_multipliers": {"detai": 10}})
    with pytest.raises(InputError, match=r"lr_multipliers\['detail'\]: expected a number > 0, got 0"):
        param_groups(g, params, {"lr_multipliers": {"detail": 0}})
    with pytest.raises(InputError, match=r"expected \{name prefix: factor\}, got list"):
        param_groups(g, params, {"lr_multipliers": ["detail", 10]})


@pytest.mark.shared
def test_lr_multipliers_set_each_groups_rate(shared, tmp_path):
    """A grown branch's own rate reaches Adam (and the decay applies to every group), through a resume."""
    torch.set_num_threads(1)
    data = {"train": RandomCrops(4, 0)}
    args = [*_cfg_args(shared, 1)]
    args = [a.replace("max_delta: 10}", "max_delta: 10, detail_channels: 4}") for a in args]
    assert any("detail_channels: 4" in a for a in args)
    mult = ["optim.generator.lr_multipliers={detail: 10.0, detail_out: 10.0}"]
    Trainer(load_config(None, [*args, *mult]), out=tmp_path / "r", loggers=False).fit(datasets=data)
    args2 = [a.replace("train.max_steps=1", "train.max_steps=2") for a in args]
    tr = Trainer(load_config(None, [*args2, *mult, "train.lr_milestones=[1]", "train.lr_gamma=0.5"]),
                 out=tmp_path / "r", loggers=False)
    tr.fit(resume=True, datasets=data)
    state = json.loads((tmp_path / "r" / "ckpt" / "last" / "state.json").read_text())
    lrs = sorted(g["lr"] for g in state["optimizers"]["generator"]["param_groups"])
    assert lrs == [pytest.approx(2.5e-4), pytest.approx(2.5e-3)], lrs
    out = load_file(str(tmp_path / "r" / "export" / "model.safetensors"))
    assert float(out["detail_out.weight"].abs().max()) > 0  # the zero-initialised head moved


@pytest.mark.shared
def test_resume_does_not_need_the_init_folder(shared, tmp_path):
    """A run started from ``init`` (grown with a detail branch) resumes on a machine without that folder."""
    import shutil

    from nullswap.protectors.nullswap import NullSwapConfig, NullSwapGenerator, save_nullswap

    torch.set_num_threads(1)
    data = {"train": RandomCrops(4, 0)}
    small = {"L": 1, "M": 1, "N": 1, "image_size": 128, "id_channels": 8, "perturb_channels": 8,
             "feature_channels": 8, "cloak_channels": 8, "disc_channels": 8, "se_reduction": 4, "expansion": 2,
             "max_delta": 10}
    torch.manual_seed(123)  # not the trainer's seed: a fresh init would differ
    start = NullSwapGenerator(NullSwapConfig(**small))
    save_nullswap(tmp_path / "start", start, start.config, {})
    args = [a.replace("max_delta: 10}", "max_delta: 10, detail_channels: 4}") for a in _cfg_args(shared, 1)]
    Trainer(load_config(None, [*args, f"init={tmp_path / 'start'}"]), out=tmp_path / "r", loggers=False).fit(
        datasets=data)
    first = load_file(str(tmp_path / "r" / "export" / "model.safetensors"))
    w0 = start.id_extraction[0][0].weight.detach()
    assert torch.allclose(first["id_extraction.0.0.weight"], w0, atol=2e-3)  # grown from it: one Adam step away
    shutil.rmtree(tmp_path / "start")
    args2 = [a.replace("train.max_steps=1", "train.max_steps=2") for a in args]
    Trainer(load_config(None, [*args2, f"init={tmp_path / 'start'}"]), out=tmp_path / "r", loggers=False).fit(
        resume=True, datasets=data)
    state = json.loads((tmp_path / "r" / "ckpt" / "last" / "state.json").read_text())
    assert state["counters"]["step"] == 2
