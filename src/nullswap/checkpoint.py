"""Model checkpoints: ``model.safetensors`` + ``config.json`` holding ``{"format", "version", "config", "meta"}``.

The one on-disk schema of every trainable model (protector generators and manipulators), in the layout of
huggingface_hub's ``PyTorchModelHubMixin``: the tensors in safetensors (its metadata repeats ``format``), and a JSON
document whose ``format`` names what the folder holds (``"nullswap-generator"``, ``"face-autoencoder"``, ...), so a
loader refuses another model's folder and a caller can dispatch on it; ``config`` is the model's constructor config
and ``meta`` free training metadata. (Resumable *training* state is :mod:`nullswap.train.checkpoint`.)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nullswap.errors import WeightsError, WeightsNotFoundError

MODEL_FILENAME = "model.safetensors"
CONFIG_FILENAME = "config.json"
#: Version of the ``config.json`` document.
VERSION = 1

__all__ = ["CONFIG_FILENAME", "MODEL_FILENAME", "VERSION", "checkpoint_files", "read_checkpoint", "read_document",
           "write_checkpoint"]


def checkpoint_files(path: str | Path) -> tuple[Path, Path]:
    """``(weights, config)`` paths of a checkpoint given as its folder, its ``model.safetensors`` or its config.

    A ``*.safetensors`` path keeps its name; the config is ``config.json`` beside it.
    """
    p = Path(path)
    if p.suffix == ".safetensors":
        return p, p.with_name(CONFIG_FILENAME)
    if p.name == CONFIG_FILENAME:
        return p.with_name(MODEL_FILENAME), p
    return p / MODEL_FILENAME, p / CONFIG_FILENAME


def write_checkpoint(
    path: str | Path, module: nn.Module, fmt: str, config: dict[str, Any], meta: dict[str, Any] | None = None
) -> Path:
    """Write ``module``'s state dict and the ``{format, version, config, meta}`` document.

    Args:
        path: a folder (created) or a ``*.safetensors`` path (``config.json`` goes beside it).
        module: the model (unwrap DDP / Fabric wrappers first).
        fmt: what the checkpoint holds (``"nullswap-generator"``, ``"face-autoencoder"``, ...).
        config: the model's config as a JSON-serialisable dict.
        meta: training metadata; values JSON cannot hold are stored as strings.

    Returns:
        The weights file path.
    """
    from safetensors.torch import save_file

    model_path, config_path = checkpoint_files(path)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(tensors, str(model_path), metadata={"format": fmt})
    doc = {"format": fmt, "version": VERSION, "config": config, "meta": dict(meta or {})}
    config_path.write_text(json.dumps(doc, indent=2, default=str))
    return model_path


def read_document(
    path: str | Path, what: str, upgrade: Callable[[dict[str, Any]], dict[str, Any]] | None = None
) -> Any:
    """The parsed ``config.json`` of a checkpoint, upgraded when it has no ``format`` (not otherwise checked).

    Args:
        path: the folder, its ``model.safetensors`` or its ``config.json``.
        what: the model's name, for messages.
        upgrade: maps an older document without ``format`` to this schema.

    Raises:
        WeightsNotFoundError: no ``config.json``.
        WeightsError: an unreadable file or not JSON.
    """
    config_path = checkpoint_files(path)[1]
    if not config_path.is_file():
        raise WeightsNotFoundError(f"{what} checkpoint {str(path)!r}: expected {CONFIG_FILENAME} at "
                                   f"{str(config_path)!r}, not found")
    try:
        doc = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WeightsError(f"{what} checkpoint {str(config_path)!r}: expected JSON, got unreadable file: {e}") from e
    if isinstance(doc, dict) and "format" not in doc and upgrade is not None:
        doc = upgrade(doc)
    return doc


def read_checkpoint(
    path: str | Path,
    formats: str | Collection[str],
    what: str,
    upgrade: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a :func:`write_checkpoint` folder: its tensors (on the CPU) and its document.

    Args:
        path: the folder, its ``model.safetensors`` or its ``config.json``.
        formats: the accepted ``format`` value(s).
        what: the model's name, for messages.
        upgrade: maps an older document without ``format`` to this schema (``None``: such a document is refused).

    Returns:
        ``(tensors, doc)``; ``doc["config"]`` is a dict and ``doc["meta"]`` a dict.

    Raises:
        WeightsNotFoundError: a file is missing.
        WeightsError: unreadable files or another format.
    """
    from safetensors.torch import load_file

    accepted = (formats,) if isinstance(formats, str) else tuple(formats)
    model_path, config_path = checkpoint_files(path)
    for f in (model_path, config_path):
        if not f.is_file():
            raise WeightsNotFoundError(
                f"{what} checkpoint {str(path)!r}: expected {f.name} at {str(f)!r}, not found "
                "(train one with `nullswap train --config configs/<name>.yaml`)"
            )
    doc = read_document(config_path, what, upgrade)
    if not isinstance(doc, dict) or doc.get("format") not in accepted or not isinstance(doc.get("config"), dict):
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise WeightsError(
            f"{what} checkpoint {str(config_path)!r}: expected format {' or '.join(map(repr, accepted))} with a "
            f"config, got {got!r}"
        )
    doc["meta"] = dict(doc.get("meta") or {})
    try:
        tensors = load_file(str(model_path), device="cpu")
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise WeightsError(f"{what} checkpoint {str(model_path)!r}: expected safetensors, cannot read: {e}") from e
    return tensors, doc
