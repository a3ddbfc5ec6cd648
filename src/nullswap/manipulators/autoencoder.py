"""ID-Guard's surrogate manipulation model M_s: a face-reconstruction autoencoder (``"surrogate-ae"``).

ID-Guard (idguard.txt, Sec. III) trains its perturbation generator against a surrogate face-manipulation network
M_s: an encoder-decoder trained to reconstruct faces. Outputs of M_s on protected faces are pushed away from its
outputs on clean faces. The paper does not give the architecture. Choice: a small conv encoder (7x7 stem, two stride-2
convs), a few residual blocks at 1/4 resolution and a mirrored nearest-upsampling decoder with a ``tanh`` head,
working in [-1, 1] internally, trained with L1 (+ optional perceptual) reconstruction loss on protector-128 crops.

Checkpoints: :mod:`nullswap.manipulators.checkpoint` (format ``"face-autoencoder"``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nullswap._common import config_from_dict as _config_from_dict
from nullswap._common import freeze, load_strict
from nullswap.errors import InputError
from nullswap.manipulators.base import Manipulator, register_manipulator, unused_model_kwargs
from nullswap.manipulators.checkpoint import ASSETS_DIR, read_manipulator, save_manipulator

log = logging.getLogger(__name__)

#: ``config.json`` format of a :class:`FaceAutoencoder` checkpoint.
FORMAT = "face-autoencoder"


# --- building blocks --------------------------------------------------------------------------------------------


def conv_block(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv -> InstanceNorm(affine) -> ReLU, "same" padding (reflect)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, padding_mode="reflect"),
        nn.InstanceNorm2d(c_out, affine=True),
        nn.ReLU(inplace=True),
    )


class ResBlock(nn.Module):
    """Plain residual block ``x + IN(conv(ReLU(IN(conv(x)))))`` (He et al. 2016, as in StarGAN / CycleGAN)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, padding_mode="reflect"),
            nn.InstanceNorm2d(dim, affine=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(dim, dim, 3, padding=1, padding_mode="reflect"),
            nn.InstanceNorm2d(dim, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual update."""
        return x + self.body(x)


def encoder_widths(channels: int, n_down: int, max_channels: int) -> list[int]:
    """Channel widths of the stem and every downsampling stage."""
    return [min(channels * 2**i, max_channels) for i in range(n_down + 1)]


def make_encoder(channels: int, n_down: int, max_channels: int) -> nn.Sequential:
    """7x7 stem then ``n_down`` stride-2 convs (doubling widths up to ``max_channels``)."""
    w = encoder_widths(channels, n_down, max_channels)
    layers: list[nn.Module] = [conv_block(3, w[0], 7)]
    layers += [conv_block(w[i], w[i + 1], 3, stride=2) for i in range(n_down)]
    return nn.Sequential(*layers)


def make_decoder(channels: int, n_down: int, max_channels: int) -> nn.Sequential:
    """Mirror of :func:`make_encoder`: nearest x2 upsampling + conv per stage, 7x7 head, ``tanh``.

    Choice: nearest upsampling + conv instead of transposed convs (no checkerboard artefacts).
    """
    w = encoder_widths(channels, n_down, max_channels)
    layers: list[nn.Module] = []
    for i in range(n_down, 0, -1):
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), conv_block(w[i], w[i - 1], 3)]
    layers += [nn.Conv2d(w[0], 3, 7, padding=3, padding_mode="reflect"), nn.Tanh()]
    return nn.Sequential(*layers)


# --- the autoencoder --------------------------------------------------------------------------------------------


def config_from_dict(cls: type, d: dict[str, Any] | None, what: str) -> Any:
    """Build the dataclass ``cls`` from a mapping, rejecting unknown keys and image sizes other than 128 / 256.

    Raises:
        InputError: unknown keys or an unsupported image size.
    """
    cfg = _config_from_dict(cls, d, what)
    if cfg.image_size not in (128, 256):
        raise InputError(f"{what} config: expected image_size 128 or 256, got {cfg.image_size}")
    return cfg


@dataclass(frozen=True)
class AutoencoderConfig:
    """Architecture of :class:`FaceAutoencoder`.

    Attributes:
        image_size: crop side (128 for ``protector-128``, 256 for ``protector-256``).
        channels: stem width.
        n_down: stride-2 stages (bottleneck at ``image_size / 2**n_down``).
        n_res: residual blocks in the bottleneck.
        max_channels: width cap.
    """

    image_size: int = 128
    channels: int = 16
    n_down: int = 2
    n_res: int = 2
    max_channels: int = 64

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> AutoencoderConfig:
        """Build from a mapping, rejecting unknown keys.

        Raises:
            InputError: unknown keys or an unsupported image size.
        """
        return config_from_dict(cls, d, "autoencoder")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON)."""
        return asdict(self)


class FaceAutoencoder(Manipulator):
    """Face reconstruction autoencoder, ID-Guard's surrogate M_s (idguard.txt, Sec. III-B).

    ``forward(x)`` returns the reconstruction of ``x`` (crops in [0,1], template ``protector-<image_size>``).
    """

    name = "surrogate-ae"
    condition = "none"

    def __init__(self, config: AutoencoderConfig | dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config = config if isinstance(config, AutoencoderConfig) else AutoencoderConfig.from_dict(config)
        c = self.config
        self.template = f"protector-{c.image_size}"
        width = encoder_widths(c.channels, c.n_down, c.max_channels)[-1]
        self.encoder = make_encoder(c.channels, c.n_down, c.max_channels)
        self.blocks = nn.Sequential(*[ResBlock(width) for _ in range(c.n_res)])
        self.decoder = make_decoder(c.channels, c.n_down, c.max_channels)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruction of ``x`` in [0,1] (``condition`` must be ``None``).

        Raises:
            InputError: bad crops, or a condition given.
        """
        self.check_input(x)
        if condition is not None:
            raise InputError(f"{self.name}: expected condition=None (reconstruction model), got a tensor")
        y = self.decoder(self.blocks(self.encoder(x * 2 - 1)))
        return (y + 1) / 2


def save_autoencoder(folder: str | Path, model: FaceAutoencoder, meta: dict[str, Any] | None = None) -> Path:
    """Write a :class:`FaceAutoencoder` checkpoint (format ``"face-autoencoder"``); returns the folder."""
    return save_manipulator(folder, model, FORMAT, model.config.to_dict(), meta)


def load_autoencoder(folder: str | Path) -> FaceAutoencoder:
    """Load a :func:`save_autoencoder` folder (strict keys), frozen, eval mode.

    Raises:
        WeightsNotFoundError: missing folder/files.
        WeightsError: mismatching keys or shapes.
    """
    state, config, _ = read_manipulator(folder, FORMAT, "surrogate-ae")
    model = FaceAutoencoder(config)
    load_strict(model, state, str(folder))
    return freeze(model)


@register_manipulator("surrogate-ae", "ID-Guard surrogate M_s: face reconstruction autoencoder (protector-128)")
def _surrogate_ae(checkpoint: str | Path | None = None, pretrained: bool = True, **config: Any) -> FaceAutoencoder:
    """The shipped (or a given) trained autoencoder; ``pretrained=False`` builds an untrained one from ``config``."""
    if not pretrained:
        return FaceAutoencoder(config or None)
    unused_model_kwargs("surrogate-ae", config)
    return load_autoencoder(checkpoint or ASSETS_DIR / "surrogate-ae")


__all__ = [
    "ASSETS_DIR",
    "FORMAT",
    "AutoencoderConfig",
    "FaceAutoencoder",
    "ResBlock",
    "conv_block",
    "freeze",
    "load_autoencoder",
    "load_strict",
    "make_decoder",
    "make_encoder",
    "save_autoencoder",
]
