"""Config merging/overrides and exact checkpoint round trips (model, optimiser, RNG, counters)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from nullswap.errors import InputError, WeightsError
from nullswap.train.checkpoint import load_training_state, save_training_state
from nullswap.train.config import apply_overrides, load_config
from nullswap.train.trainer import ResumableSampler


def test_load_config_merges_defaults_file_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  batch_size: 4\nloss:\n  lambda_id: 0.5\n")
    cfg = load_config(f, ["train.max_steps=7", "recognizers=[a, b]", "optim.generator.lr=1e-3"])
    assert cfg["train"]["batch_size"] == 4 and cfg["train"]["max_steps"] == 7
    assert cfg["train"]["epochs"] == 60  # default kept
    assert cfg["recognizers"] == ["a", "b"] and cfg["optim"]["generator"]["lr"] == 1e-3
    assert cfg["loss"]["lambda_id"] == 0.5
    with pytest.raises(InputError, match="KEY=VALUE"):
        apply_overrides(cfg, ["train.max_steps"])
    with pytest.raises(InputError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_shipped_configs_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "configs"
    for name in ("nullswap.yaml", "nullswap-cpu-small.yaml"):
        cfg = load_config(root / name)
        assert cfg["recipe"] == "nullswap" and cfg["recognizers"] == ["dlib-resnet29", "mobilefacenet-casia"]
    paper = load_config(root / "nullswap.yaml")
    assert paper["loss"]["lambda_id"] == 0.08 and paper["loss"]["lambda_mse"] == 1.8
    assert paper["optim"]["generator"]["lr"] == 5e-4 and paper["optim"]["discriminator"]["lr"] == 1e-4


def _train_a_bit(model, opt, steps):
    for _ in range(steps):
        x = torch.randn(4, 3)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_checkpoint_round_trip_is_exact(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Linear(5, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.5, 0.999))
    _train_a_bit(model, opt, 3)
    save_training_state(tmp_path / "ck", {"g": model}, {"g": opt}, {"step": 3, "epoch": 0, "batch_in_epoch": 3},
                        {"dlw": {"history": [[1.0, 0.5]]}}, {"seed": 0})
    random.random()
    np.random.rand()
    _train_a_bit(model, opt, 2)
    expected = [p.detach().clone() for p in model.parameters()]
    expected_py, expected_np = random.random(), np.random.rand()

    torch.manual_seed(123)  # scramble
    model2 = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Linear(5, 1))
    opt2 = torch.optim.Adam(model2.parameters(), lr=1e-2, betas=(0.5, 0.999))
    state = load_training_state(tmp_path / "ck", {"g": model2}, {"g": opt2})
    assert state["counters"]["step"] == 3 and state["extra"]["dlw"]["history"] == [[1.0, 0.5]]
    random.random()
    np.random.rand()
    _train_a_bit(model2, opt2, 2)
    for a, b in zip(expected, model2.parameters(), strict=True):
        assert torch.equal(a, b)
    assert random.random() == expected_py and np.random.rand() == expected_np
    assert (tmp_path / "ck" / "config.yaml").is_file()


def test_checkpoint_strict_keys(tmp_path):
    save_training_state(tmp_path / "ck", {"g": nn.Linear(2, 2)}, {}, {"step": 0}, {}, {})
    with pytest.raises(WeightsError, match="does not match"):
        load_training_state(tmp_path / "ck", {"g": nn.Linear(2, 3)}, {})
    with pytest.raises(WeightsError, match="state.safetensors"):
        load_training_state(tmp_path / "nothing", {}, {})


def test_resumable_sampler_shards_and_resumes():
    s = ResumableSampler(10, seed=3)
    s.set_position(2)
    full = list(s)
    s.set_position(2, start=4)
    assert list(s) == full[4:]
    s.set_position(3)
    assert list(s) != full and sorted(list(s)) == list(range(10))
    shards = [list(ResumableSampler(10, 3, rank=r, world=3)) for r in range(3)]
    assert all(len(x) == 3 for x in shards) and len(set(sum(shards, []))) == 9
