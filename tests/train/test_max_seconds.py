"""``train.max_seconds``: a wall-clock budget stops the run at a checkpoint, which then resumes like any other."""

from __future__ import annotations

import json

import pytest
import torch

from nullswap.errors import InputError
from nullswap.train import Trainer, load_config
from tests.train.test_resume_exact import RandomCrops, _cfg_args


@pytest.mark.shared
def test_max_seconds_stops_at_a_checkpoint_then_resumes(shared, tmp_path):
    torch.set_num_threads(1)
    data = {"train": RandomCrops(6, 0)}
    args = [*_cfg_args(shared, 50), "train.checkpoint_every=2", "train.max_seconds=0"]
    res = Trainer(load_config(None, args), out=tmp_path / "run", loggers=False).fit(datasets=data)
    assert res.step == 2  # the first checkpoint after the (zero) budget, not max_steps
    state = json.loads((tmp_path / "run" / "ckpt" / "last" / "state.json").read_text())
    assert state["counters"]["step"] == 2
    assert (tmp_path / "run" / "export" / "model.safetensors").is_file()
    args = [*_cfg_args(shared, 3), "train.checkpoint_every=2", "train.max_seconds=600"]
    res = Trainer(load_config(None, args), out=tmp_path / "run", loggers=False).fit(resume=True, datasets=data)
    assert res.step == 3  # a generous budget: max_steps ends it


@pytest.mark.shared
def test_max_seconds_needs_checkpoints(shared, tmp_path):
    args = [*_cfg_args(shared, 2), "train.checkpoint_every=0", "train.max_seconds=10"]
    with pytest.raises(InputError, match="max_seconds"):
        Trainer(load_config(None, args), out=tmp_path / "run", loggers=False).fit(datasets={"train": RandomCrops(4, 0)})
