"""NullSwap generator checkpoints: ``model.safetensors`` + ``config.json`` ``{format, version, config, meta}``.

The schema of every trainable model (:mod:`nullswap.checkpoint`) with format ``"nullswap-generator"``: what training
exports and what the packaged default (:data:`DEFAULT_WEIGHTS_DIR`) holds; loading checks keys and shapes strictly.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nullswap._common import ASSETS_ROOT
from nullswap.checkpoint import (
    CONFIG_FILENAME,
    MODEL_FILENAME,
    VERSION,
    checkpoint_files,
    read_checkpoint,
    write_checkpoint,
)
from nullswap.errors import InputError, WeightsError
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

FORMAT = "nullswap-generator"
FORMAT_VERSION = VERSION
#: Folder of the packaged default weights (``model.safetensors`` + ``config.json``), if shipped.
DEFAULT_WEIGHTS_DIR = ASSETS_ROOT / "nullswap-default"


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
    gen = unwrap_module(generator)
    model_path = write_checkpoint(path, gen, FORMAT, config.to_dict(), extra)
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
    tensors, doc = read_checkpoint(path, FORMAT, "NullSwap")
    model_path, config_path = checkpoint_files(path)
    try:
        config = NullSwapConfig.from_dict(doc["config"])
    except InputError as e:
        raise WeightsError(f"NullSwap checkpoint {str(config_path)!r}: invalid config: {e}") from e
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
    return gen, config, doc["meta"]
