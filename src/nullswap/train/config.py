"""Training configuration: YAML files with defaults, ``key.sub=value`` overrides, and the resolved copy.

A config is a plain nested ``dict`` (what YAML gives). :func:`load_config` merges, in order: the trainer defaults
(:data:`TRAIN_DEFAULTS`), the YAML file, then command-line overrides. The resolved dict is written beside every
checkpoint (``config.yaml``) so a run can be reproduced and resumed from its folder alone.

The merged config is checked against the schema (:func:`validate_config`): a key the trainer does not know, from the
file or from an override (``--set train.max_step=10``), is an :class:`~nullswap.errors.InputError` naming the closest
valid key. The ``model`` and ``loss`` sections belong to the recipe, whose ``from_dict``/``from_config`` checks them.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from nullswap.errors import InputError

TRAIN_DEFAULTS: dict[str, Any] = {
    "recipe": "nullswap",
    "seed": 0,
    "out": "runs/nullswap",
    "data": {
        "root": "../shared/data/celeba",
        "layout": "identity-folders",
        "template": "protector-256",
        "split": [0.8, 0.1, 0.1],
        "split_seed": 0,
        "max_identities": None,
        "max_per_identity": None,
        "detector": "mtcnn",
        "num_workers": 0,
        "identity_file": None,
        "mapping_file": None,
        "celeba_identity_file": None,
        "partition_file": None,
        # {train: FILE, val: FILE, test: FILE}: crop packs (nullswap.datasets.crop_pack) instead of scanning root
        "packs": None,
    },
    "recognizers": ["dlib-resnet29", "mobilefacenet-casia"],
    "eval_recognizers": [],
    "perceptual": "auto",
    # expectation over transformation (nullswap.losses.eot.EOTConfig); null = train on undegraded crops (the paper)
    "eot": None,
    "model": {},
    "loss": {},
    "optim": {
        # The paper gives the learning rates (Sec. 4.1), not the optimiser. Choice: Adam, GAN-style betas.
        "generator": {"lr": 5.0e-4, "betas": [0.5, 0.999], "weight_decay": 0.0},
        "discriminator": {"lr": 1.0e-4, "betas": [0.5, 0.999], "weight_decay": 0.0},
    },
    "train": {
        "epochs": 60,
        "max_steps": None,
        "batch_size": 32,  # per device; the paper's 256 is 8 GPUs x 32
        "accumulate": 1,
        "accelerator": "auto",
        "devices": "auto",
        "num_nodes": 1,
        "strategy": "auto",
        "precision": "auto",  # bf16-mixed on CUDA, 32-true on CPU
        "log_every": 10,
        "checkpoint_every": 500,
        "eval_every": 500,
        "eval_images": 64,
        "threads": None,
        # optional step decay of every optimiser's lr (nullswap.train.trainer.lr_factor); null = constant (the papers)
        "lr_milestones": None,
        "lr_gamma": 0.1,
        # wall-clock budget in seconds: stop at the first checkpoint after it (null = none)
        "max_seconds": None,
    },
}


#: Top-level keys that recipes read beside the trainer's own (:data:`TRAIN_DEFAULTS`); optional, no default.
RECIPE_KEYS: tuple[str, ...] = (
    "weights_dir",  # folder searched first for weight files (every recipe)
    "manipulator",  # the manipulation model of ID-Guard / ARS / retentive
    "manipulators",  # several manipulation models (ID-Guard)
    "init",  # NullSwap: a trained generator folder to start from, grown if the config is deeper (growth.py)
    "teacher",  # NullSwap: {targets: FILE or [FILES]} made by `nullswap teacher`, for loss.lambda_distill
)
#: Sections whose keys the recipe checks itself (its model / loss ``from_dict``).
RECIPE_SECTIONS: tuple[str, ...] = ("model", "loss")
#: Keys of each optimiser entry of ``optim`` (what the trainer passes to Adam).
#: ``lr_multipliers``: ``{parameter-name prefix: factor}`` on the module's parameters (e.g. ``{detail: 10}`` for a
#: newly grown branch); the longest matching prefix wins, every prefix must match (:func:`~nullswap.train.trainer.
#: param_groups`).
OPTIM_KEYS: tuple[str, ...] = ("lr", "betas", "weight_decay", "lr_multipliers")


def _unknown_key(path: str, key: object, known: Sequence[str]) -> InputError:
    full = f"{path}.{key}" if path else str(key)
    close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
    hint = f"; did you mean {(f'{path}.' if path else '') + close[0]!r}?" if close else ""
    return InputError(f"config key {full!r}: expected one of {sorted(known)}, got an unknown key{hint}")


def _check_section(parent: Mapping[str, Any], path: str, known: Sequence[str] | None) -> Mapping[str, Any]:
    """The mapping at ``path`` (its last part a key of ``parent``), every key in ``known`` (``None``: any key)."""
    section = parent.get(path.rsplit(".", 1)[-1])
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise InputError(f"config key {path!r}: expected a mapping, got {type(section).__name__} {section!r}")
    if known is not None:
        for key in section:
            if key not in known:
                raise _unknown_key(path, key, known)
    return section


def validate_config(cfg: Mapping[str, Any]) -> None:
    """Check the trainer's own keys: top level, ``train``, ``data``, ``optim`` and ``eot``.

    ``model`` and ``loss`` are checked by the recipe (their dataclasses' ``from_dict``), which knows its fields.

    Raises:
        InputError: an unknown key (naming the closest valid one) or a section that is not a mapping.
    """
    if not isinstance(cfg, Mapping):
        raise InputError(f"config: expected a mapping, got {type(cfg).__name__}")
    top = [*TRAIN_DEFAULTS, *RECIPE_KEYS]
    for key in cfg:
        if key not in top:
            raise _unknown_key("", key, top)
    _check_section(cfg, "train", list(TRAIN_DEFAULTS["train"]))
    _check_section(cfg, "data", list(TRAIN_DEFAULTS["data"]))
    for section in RECIPE_SECTIONS:
        _check_section(cfg, section, None)
    optim = _check_section(cfg, "optim", list(TRAIN_DEFAULTS["optim"]))
    for group in optim:
        _check_section(optim, f"optim.{group}", OPTIM_KEYS)
    if isinstance(cfg.get("eot"), Mapping):  # null = off; a mapping = EOTConfig fields
        from dataclasses import fields

        from nullswap.losses.eot import EOTConfig

        _check_section(cfg, "eot", [f.name for f in fields(EOTConfig)])


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``update`` merged in (dicts recursively, everything else replaced)."""
    out = copy.deepcopy(dict(base))
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def apply_overrides(cfg: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides; values are parsed as YAML (``1e-4``, ``[a, b]``, ``null``).

    Raises:
        InputError: an override without ``=``.
    """
    cfg = copy.deepcopy(cfg)
    for ov in overrides:
        if "=" not in ov:
            raise InputError(f"config override: expected KEY=VALUE (e.g. train.max_steps=100), got {ov!r}")
        key, raw = ov.split("=", 1)
        node = cfg
        parts = key.strip().split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[parts[-1]] = _parse_value(raw)
    return cfg


def _parse_value(raw: str) -> Any:
    """YAML value, with YAML 1.1's gap fixed: ``1e-3`` (no dot) is a number, not a string."""
    v = yaml.safe_load(raw)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Defaults, then the YAML file at ``path`` (if any), then ``overrides``.

    A relative ``data.root`` is resolved against the current directory first, then the config file's folder.

    Raises:
        InputError: missing file, YAML that is not a mapping, or a key unknown to the schema
            (:func:`validate_config`), naming the closest valid key.
    """
    cfg = copy.deepcopy(TRAIN_DEFAULTS)
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"config: expected a YAML file, got {str(p)!r} (not found)")
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise InputError(f"config {str(p)!r}: expected a mapping at top level, got {type(data).__name__}")
        cfg = deep_merge(cfg, data)
    cfg = apply_overrides(cfg, overrides)
    validate_config(cfg)
    root = cfg["data"].get("root")
    if root and path is not None and not Path(root).is_absolute() and not Path(root).exists():
        alt = (Path(path).parent / root).resolve()
        if alt.exists():
            cfg["data"]["root"] = str(alt)
    return cfg


def dump_config(cfg: Mapping[str, Any], path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(dict(cfg), sort_keys=False), encoding="utf-8")


__all__ = [
    "OPTIM_KEYS", "RECIPE_KEYS", "RECIPE_SECTIONS", "TRAIN_DEFAULTS", "apply_overrides", "deep_merge", "dump_config",
    "load_config", "validate_config",
]
