"""The training config schema: unknown keys are errors naming the closest valid key; shipped configs load."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from nullswap.errors import InputError
from nullswap.train.config import TRAIN_DEFAULTS, dump_config, load_config, validate_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads_and_round_trips(path, tmp_path):
    cfg = load_config(path)
    raw = yaml.safe_load(path.read_text())
    assert cfg["recipe"] == raw["recipe"]
    dump_config(cfg, tmp_path / "config.yaml")  # the resolved copy written beside each checkpoint loads again
    assert load_config(tmp_path / "config.yaml") == cfg


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("train.max_step=10", r"'train.max_step'.*did you mean 'train.max_steps'"),
        ("data.rot=x", r"'data.rot'.*did you mean 'data.root'"),
        ("recognizer=[a]", r"'recognizer'.*did you mean 'recognizers'"),
        ("optim.generator.learning_rate=1",
         r"'optim.generator.learning_rate'.*\['betas', 'lr', 'lr_multipliers', 'weight_decay'\]"),
        ("optim.gen.lr=1", r"'optim.gen'"),
        ("eot={jpeg_qualty: [50, 90]}", r"'eot.jpeg_qualty'.*did you mean 'eot.jpeg_quality'"),
        ("train=3", r"'train': expected a mapping, got int"),
    ],
)
def test_unknown_override_names_the_close_match(override, match):
    with pytest.raises(InputError, match=match):
        load_config(CONFIGS / "nullswap-cpu-small.yaml", [override])


def test_unknown_yaml_key_is_an_error(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  batchsize: 4\n")
    with pytest.raises(InputError, match=r"'train.batchsize'.*did you mean 'train.batch_size'"):
        load_config(f)


def test_recipe_keys_and_sections_pass_through():
    cfg = load_config(None, ["weights_dir=/w", "manipulator=surrogate-ae", "model={anything: 1}", "loss.x=2",
                             "eot={p: 1.0}"])
    assert cfg["model"] == {"anything": 1} and cfg["loss"] == {"x": 2} and cfg["weights_dir"] == "/w"
    validate_config(TRAIN_DEFAULTS)


def test_train_command_reports_unknown_key_in_one_line():
    from nullswap.cli.main import app

    r = CliRunner().invoke(app, ["train", "--config", str(CONFIGS / "nullswap-cpu-small.yaml"),
                                 "--set", "train.max_step=10"])
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit)
    assert "train.max_steps" in r.output
