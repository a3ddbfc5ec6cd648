"""NullSwap generator checkpoints: ``model.safetensors`` + ``config.json`` ``{format, version, config, meta}``.

The format (``"nullswap-generator"``, version 1) is what training exports and what the packaged default
(:data:`DEFAULT_WEIGHTS_DIR`) holds; loading checks keys and shapes strictly.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nullswap._common import ASSETS_ROOT
from nullswap.errors import InputError, WeightsError, WeightsNotFoundError
from nullswap.protectors.nullswap.config import NullSwapConfig
from nullswap.protectors.nullswap.networks import NullSwapGenerator, count_parameters, unwrap_module

log = logging.getLogger(__name__)

__all__ = [
    "CONFIG_FILENAME",
    "DEFAULT_WEIGHTS_DIR",
    "FORMAT",
    "FORMAT_VERSION",
    "MODEL_FILENAME",
    "load_nullswap",
    "save_nullswap",
]

MODEL_FILENAME = "model.safetensors"
CONFIG_FILENAME = "config.json"
FORMAT = "nullswap-generator"
FORMAT_VERSION = 1
#: Folder of the packaged default weights (``model.safetensors`` + ``config.json``), if shipped.
DEFAULT_WEIGHTS_DIR = ASSETS_ROOT / "nullswap-default"


def _resolve(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix == ".safetensors":
        return p, p.with_name(CONFIG_FILENAME)
    if p.name == CONFIG_FILENAME:
        return p.with_name(MODEL_FILENAME), p
    return p / MODEL_FILENAME, p / CONFIG_FILENAME


def save_nullswap(
    path: str | Path,
    generator: nn.Module,
    config: NullSwapConfig,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a generator checkpoint: ``model.safetensors`` and ``config.json``.

    Args:
        path: a folder (created) or a ``*.safetensors`` file path (``config.json`` goes beside it).
        generator: the generator (DDP/Fabric wrappers are unwrapped).
        config: its config.
        extra: JSON-serialisable metadata (training step, recognizers, ...); non-JSON values are stored as strings.

    Returns:
        The path of the weights file.
    """
    from safetensors.torch import save_file

    model_path, config_path = _resolve(path)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    gen = unwrap_module(generator)
    tensors = {k: v.detach().cpu().contiguous() for k, v in gen.state_dict().items()}
    save_file(tensors, str(model_path), metadata={"format": FORMAT})
    doc = {"format": FORMAT, "version": FORMAT_VERSION, "config": config.to_dict(), "meta": dict(extra or {})}
    config_path.write_text(json.dumps(doc, indent=2, default=str))
    log.info("saved NullSwap generator (%d parameters) to %s", count_parameters(gen), model_path)
    return model_path


def load_nullswap(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[NullSwapGenerator, NullSwapConfig, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_nullswap` (strict keys and shapes), in eval mode.

    Args:
        path: the folder, its ``model.safetensors`` or its ``config.json``.
        map_location: device of the returned generator.

    Returns:
        ``(generator, config, meta)``.

    Raises:
        WeightsNotFoundError: a file is missing.
        WeightsError: unreadable files, wrong format, or weights that do not match the config.
    """
    from safetensors.torch import load_file

    model_path, config_path = _resolve(path)
    for f in (model_path, config_path):
        if not f.is_file():
            raise WeightsNotFoundError(f"NullSwap checkpoint {str(path)!r}: expected {f.name} at {str(f)!r}, not found")
    try:
        doc = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise WeightsError(f"NullSwap checkpoint {str(config_path)!r}: expected JSON, got unreadable file: {e}") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or "config" not in doc:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise WeightsError(f"NullSwap checkpoint {str(config_path)!r}: expected format {FORMAT!r}, got {got!r}")
    try:
        config = NullSwapConfig.from_dict(doc["config"])
    except InputError as e:
        raise WeightsError(f"NullSwap checkpoint {str(config_path)!r}: invalid config: {e}") from e
    try:
        tensors = load_file(str(model_path))
    except Exception as e:  # safetensors raises its own error types
        raise WeightsError(f"NullSwap checkpoint {str(model_path)!r}: expected safetensors, cannot read: {e}") from e
    gen = NullSwapGenerator(config)
    expected = gen.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise WeightsError(
            f"NullSwap checkpoint {str(model_path)!r}: expected the keys of the config's generator, got "
            f"{len(missing)} missing (e.g. {missing[:3]}) and {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    bad = [k for k, v in tensors.items() if tuple(v.shape) != tuple(expected[k].shape)]
    if bad:
        k = bad[0]
        raise WeightsError(
            f"NullSwap checkpoint {str(model_path)!r}: expected {k} of shape {tuple(expected[k].shape)}, "
            f"got {tuple(tensors[k].shape)} ({len(bad)} mismatched tensors)"
        )
    gen.load_state_dict(tensors, strict=True)
    gen.to(map_location).eval()
    return gen, config, dict(doc.get("meta") or {})
