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
from nullswap.checkpoint import VERSION, read_checkpoint, write_checkpoint

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
    "read_manipulator",
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
