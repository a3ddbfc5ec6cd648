"""Checkpoints of the project's trained manipulators, in the schema every trainable model uses.

A folder with ``model.safetensors`` and ``config.json`` ``{"format", "version", "config", "meta"}``
(:mod:`nullswap.checkpoint`). The format names the model: ``"face-autoencoder"`` (the ID-Guard surrogate,
``"surrogate-ae"``) or ``"swap-generator"`` (the generator of ``"swapper-celeba"``); :data:`MANIPULATOR_FORMATS`
maps it to the manipulator to build. The shipped weights live in :data:`ASSETS_DIR`.

The first manipulator checkpoints stored ``{"kind", "model", **meta}`` instead; :func:`read_manipulator` reads those
too (:func:`upgrade_legacy`), so folders trained before the schema still load.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nullswap._common import ASSETS_ROOT
from nullswap.checkpoint import VERSION, read_checkpoint, read_document, write_checkpoint
from nullswap.errors import InputError, WeightsError

log = logging.getLogger(__name__)

#: Folder of the shipped manipulator weights (``surrogate-ae/``, ``swapper-celeba/``).
ASSETS_DIR = ASSETS_ROOT / "manipulators"

#: ``config.json`` "format" of each trainable manipulator's checkpoint -> manipulator name.
MANIPULATOR_FORMATS = {"face-autoencoder": "surrogate-ae", "swap-generator": "swapper-celeba"}

#: ``kind`` of the first checkpoints -> their format.
_LEGACY_KINDS = {"surrogate-ae": "face-autoencoder", "swapper": "swap-generator"}

__all__ = [
    "ASSETS_DIR",
    "MANIPULATOR_FORMATS",
    "checkpoint_manipulator",
    "read_manipulator",
    "resolve_manipulator",
    "save_manipulator",
    "upgrade_legacy",
]


def upgrade_legacy(doc: dict[str, Any]) -> dict[str, Any]:
    """A first-schema document ``{"kind", "model", **meta}`` as ``{"format", "version", "config", "meta"}``.

    A document without ``kind`` or ``model`` is returned unchanged (the reader then reports it).
    """
    if "kind" not in doc or "model" not in doc:
        return doc
    meta = {k: v for k, v in doc.items() if k not in ("kind", "model")}
    return {
        "format": _LEGACY_KINDS.get(doc["kind"], doc["kind"]),
        "version": VERSION,
        "config": doc["model"],
        "meta": meta,
    }


def save_manipulator(
    folder: str | Path, module: nn.Module, fmt: str, config: dict[str, Any], meta: dict[str, Any] | None = None
) -> Path:
    """Write ``module`` (format ``fmt``, its ``config``, training ``meta``) into ``folder``; returns the folder."""
    write_checkpoint(folder, module, fmt, config, meta)
    return Path(folder)


def read_manipulator(
    folder: str | Path, fmt: str, what: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """Read a manipulator checkpoint of format ``fmt`` (or of the first schema).

    Returns:
        ``(tensors, config, meta)``.

    Raises:
        WeightsNotFoundError: the folder or one of its files is missing.
        WeightsError: unreadable files or another format.
    """
    tensors, doc = read_checkpoint(folder, fmt, what, upgrade=upgrade_legacy)
    return tensors, doc["config"], doc["meta"]


def checkpoint_manipulator(folder: str | Path) -> str:
    """The manipulator a checkpoint folder holds, from its ``config.json`` ``format`` (:data:`MANIPULATOR_FORMATS`).

    Folders of the first schema are read through :func:`upgrade_legacy`.

    Raises:
        WeightsNotFoundError: no ``config.json`` in the folder.
        WeightsError: an unreadable ``config.json``, or the format of something else (a protector's generator, ...).
    """
    doc = read_document(folder, "manipulator", upgrade=upgrade_legacy)
    fmt = doc.get("format") if isinstance(doc, dict) else None
    if fmt not in MANIPULATOR_FORMATS:
        raise WeightsError(
            f"manipulator checkpoint {str(folder)!r}: expected config.json format "
            f"{' or '.join(map(repr, sorted(MANIPULATOR_FORMATS)))} (a trained manipulator), got {fmt!r}"
        )
    return MANIPULATOR_FORMATS[fmt]


def resolve_manipulator(spec: str | Path) -> tuple[str, Path | None]:
    """A registered manipulator name, or a checkpoint folder dispatched by its ``format``.

    A registered name wins over a folder of the same name in the working directory.

    Returns:
        ``(name, checkpoint)``: the manipulator to build and the folder to load (``None``: its own weights).

    Raises:
        InputError: neither a registered name nor an existing path, naming the registered ones.
        WeightsNotFoundError: a folder without ``config.json``.
        WeightsError: a folder holding another format (:func:`checkpoint_manipulator`).
    """
    from nullswap.manipulators.base import MANIPULATORS

    if isinstance(spec, str) and spec in MANIPULATORS:
        return spec, None
    path = Path(spec)
    if path.exists():
        return checkpoint_manipulator(path), path
    raise InputError(
        f"manipulator: expected a name among {MANIPULATORS.names()} or a checkpoint folder (config.json + "
        f"model.safetensors), got {str(spec)!r}"
    )
