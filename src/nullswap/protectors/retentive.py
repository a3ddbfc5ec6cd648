"""The retentive proactive defense (retentive-defense.txt, Jiang et al.): a U-Net perturbation generator PG.

``x_adv = clip(x + P(x))`` (Eq. 2) with ``||P(x)||_2 < eps`` (Eq. 3), trained so that a manipulation ``G`` leaves
``x_adv`` unchanged (``G(x_adv) ~ x_adv``, Eq. 7). The paper uses pix2pix's "UNet-128"; :class:`UNet` is that
encoder-decoder with skip connections, with configurable depth and width.

This module also holds the pieces the ID-Guard and ARS protectors share: :class:`UNet`, the checkpoint IO
(:func:`save_generator` / :func:`load_generator`), :func:`strength_factor` and :class:`PerturbationProtector`.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nullswap._common import config_from_dict, unwrap
from nullswap.checkpoint import CONFIG_FILENAME, MODEL_FILENAME, read_checkpoint, write_checkpoint
from nullswap.errors import InputError, WeightsError, WeightsNotFoundError
from nullswap.losses.retentive import project_l2
from nullswap.protectors.base import STRENGTH_SCALES, Protector, register_protector, strength_scale

log = logging.getLogger(__name__)

#: ``strength`` -> factor on the learned perturbation and on its bound ``eps``, shared by the ID-Guard, ARS and
#: retentive protectors (the same table as NullSwap's, :data:`nullswap.protectors.base.STRENGTH_SCALES`).
STRENGTH_FACTORS = STRENGTH_SCALES
strength_factor = strength_scale


def template_for(image_size: int) -> str:
    """The protector template of a crop size (``protector-128`` or ``protector-256``)."""
    if image_size == 128:
        return "protector-128"
    if image_size == 256:
        return "protector-256"
    raise InputError(f"image_size: expected 128 or 256 (a protector template), got {image_size!r}")


# ----------------------------------------------------------------------------------------------------------------------
# U-Net
# ----------------------------------------------------------------------------------------------------------------------


class UNet(nn.Module):
    """pix2pix-style U-Net (Ronneberger et al.; Isola et al.'s ``unet_128`` with ``depth=7``).

    Encoder: ``depth`` stride-2 4x4 convolutions (BN except on the first, LeakyReLU 0.2), widths ``base * 2^i`` capped
    at ``8 * base``. Decoder: per level a x2 bilinear upsampling + 3x3 conv + BN + ReLU, concatenated with the
    encoder feature of the same size (skip connection); a final x2 upsampling + 3x3 conv gives ``out_ch`` channels
    (no activation; callers apply their own bound).

    Choice: bilinear upsampling + conv instead of pix2pix's transposed convolutions (no checkerboard artefacts in
    an imperceptible perturbation).

    Args:
        in_ch: input channels.
        out_ch: output channels.
        base: width of the first level.
        depth: number of down-sampling levels (the input side must be divisible by ``2^depth``).
    """

    def __init__(self, in_ch: int, out_ch: int, base: int = 64, depth: int = 7) -> None:
        super().__init__()
        if depth < 1 or base < 1:
            raise InputError(f"UNet: expected depth >= 1 and base >= 1, got depth={depth}, base={base}")
        self.depth = depth
        widths = [base * min(2**i, 8) for i in range(depth)]
        self.downs = nn.ModuleList()
        prev = in_ch
        for i, w in enumerate(widths):
            layers: list[nn.Module] = [nn.Conv2d(prev, w, 4, stride=2, padding=1, bias=i == 0)]
            if i > 0:
                layers.append(nn.BatchNorm2d(w))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            self.downs.append(nn.Sequential(*layers))
            prev = w
        self.ups = nn.ModuleList()
        for i in reversed(range(1, depth)):
            in_up = widths[i] if i == depth - 1 else 2 * widths[i]
            self.ups.append(nn.Sequential(nn.Conv2d(in_up, widths[i - 1], 3, padding=1, bias=False),
                                          nn.BatchNorm2d(widths[i - 1]), nn.ReLU(inplace=True)))
        last_in = widths[0] * (2 if depth > 1 else 1)
        self.head = nn.Conv2d(last_in, out_ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, out_ch, H, W)`` output."""
        m = 2**self.depth
        if x.shape[-1] % m or x.shape[-2] % m:
            raise InputError(f"UNet: expected H and W divisible by {m}, got {tuple(x.shape[-2:])}")
        skips = []
        h = x
        for down in self.downs:
            h = down(h)
            skips.append(h)
        h = skips.pop()
        for up in self.ups:
            h = up(F.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False))
            h = torch.cat([h, skips.pop()], 1)
        return self.head(F.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False))


# ----------------------------------------------------------------------------------------------------------------------
# Config + generator
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class RetentiveConfig:
    """Hyper-parameters of :class:`RetentiveGenerator`.

    Attributes:
        image_size: crop size (128 = the paper's, template ``protector-128``).
        base: U-Net width (pix2pix's ``ngf = 64``).
        depth: U-Net levels (``7`` = "UNet-128").
        eps: RMS bound of ``P(x)`` on the [0, 1] scale (Eq. 3; the paper's ``eps = 0.05``).
    """

    image_size: int = 128
    base: int = 64
    depth: int = 7
    eps: float = 0.05

    def __post_init__(self) -> None:
        template_for(self.image_size)
        if not self.eps > 0:
            raise InputError(f"eps: expected a positive number, got {self.eps!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields."""
        return asdict(self)


class RetentiveGenerator(nn.Module):
    """PG of the retentive defense: ``x_adv = clip(x + proj_eps(U(x)), 0, 1)`` (Eq. 2-3).

    Choice: the raw U-Net output passes through ``tanh`` (an L_inf cap of 1) before the RMS projection of
    :func:`~nullswap.losses.retentive.project_l2`, and ``x_adv`` is clipped to the valid image range.
    """

    def __init__(self, config: RetentiveConfig | None = None) -> None:
        super().__init__()
        self.config = config or RetentiveConfig()
        self.net = UNet(3, 3, self.config.base, self.config.depth)

    def perturbation(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """``P(x)`` with ``rms(P) <= scale * eps``."""
        return project_l2(scale * torch.tanh(self.net(x * 2 - 1)), scale * self.config.eps)

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """``x_adv`` in [0, 1] (Eq. 2); ``scale`` multiplies the perturbation and its bound (strength)."""
        return (x + self.perturbation(x, scale)).clamp(0, 1)


# ----------------------------------------------------------------------------------------------------------------------
# Checkpoint IO (shared by ID-Guard, ARS and retentive; the schema is nullswap.checkpoint's)
# ----------------------------------------------------------------------------------------------------------------------


def save_generator(path: str | Path, generator: nn.Module, cls: type, fmt: str, config: Any,
                   meta: dict[str, Any] | None = None) -> Path:
    """Write ``model.safetensors`` + ``config.json`` (:mod:`nullswap.checkpoint`, format ``fmt``) into folder ``path``.

    Returns:
        The weights file path.
    """
    gen = unwrap(generator, cls)
    model_path = write_checkpoint(Path(path) / MODEL_FILENAME, gen, fmt, config.to_dict(), meta)
    log.info("saved %s (%d parameters) to %s", fmt, sum(p.numel() for p in gen.parameters()), model_path.parent)
    return model_path


def load_generator(path: str | Path | None, cls: type, config_cls: type, fmt: str, name: str,
                   map_location: str | torch.device = "cpu") -> tuple[nn.Module, Any, dict[str, Any]]:
    """Load a :func:`save_generator` folder into a fresh ``cls(config)`` (strict keys and shapes), in eval mode.

    Raises:
        WeightsNotFoundError: no path, or a missing file.
        WeightsError: unreadable files, another format, or weights that do not match the config.
    """
    if path is None:
        raise WeightsNotFoundError(
            f"{name}: expected a trained checkpoint (pass checkpoint=<folder with {MODEL_FILENAME} and "
            f"{CONFIG_FILENAME}>, e.g. the export/ folder of `nullswap train --config configs/{name}.yaml`), got none; "
            f"no default weights are shipped"
        )
    tensors, doc = read_checkpoint(path, fmt, name)
    try:
        config = config_from_dict(config_cls, doc["config"], name)
    except (InputError, TypeError) as e:
        raise WeightsError(f"{name} checkpoint {str(path)!r}: invalid config: {e}") from e
    gen = cls(config)
    expected = gen.state_dict()
    bad = sorted(set(expected) ^ set(tensors)) or [k for k in expected if tuple(expected[k].shape)
                                                   != tuple(tensors[k].shape)]
    if bad:
        raise WeightsError(f"{name} checkpoint {str(path)!r}: expected the tensors of its config's generator, "
                           f"got {len(bad)} missing/unexpected/mis-shaped (e.g. {bad[:3]})")
    gen.load_state_dict(tensors, strict=True)
    return gen.to(map_location).eval(), config, doc["meta"]


# ----------------------------------------------------------------------------------------------------------------------
# Protector
# ----------------------------------------------------------------------------------------------------------------------


class PerturbationProtector(Protector):
    """A :class:`Protector` running a perturbation generator ``gen(x, scale=s) -> protected`` on aligned crops.

    Args:
        generator: the generator (its train/eval mode is left as it is).
        image_size: its crop size (sets the template).
        strength: ``"low"`` / ``"mid"`` / ``"high"`` or a number: the factor ``s`` on the perturbation and on its
            bound (:data:`STRENGTH_FACTORS`).
        name: registry name.
    """

    def __init__(self, generator: nn.Module, image_size: int, strength: str | float = "mid",
                 name: str = "perturbation") -> None:
        super().__init__()
        self.generator = generator
        self.name = name
        self.template = template_for(image_size)
        self.strength = strength
        self.scale = strength_factor(strength)

    @torch.no_grad()
    def protect(self, faces: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Protected crops (same shape, device and dtype, in [0,1]); deterministic (``generator`` is unused)."""
        self.check_input(faces)
        if faces.shape[0] == 0:
            return faces.clone()
        p = next(self.generator.parameters())
        y = self.generator(faces.to(p.device, torch.float32), scale=self.scale)
        return y.to(faces.device, faces.dtype).clamp(0, 1)


FORMAT = "retentive-generator"


def save_retentive(path: str | Path, generator: nn.Module, config: RetentiveConfig,
                   meta: dict[str, Any] | None = None) -> Path:
    """Write a :class:`RetentiveGenerator` checkpoint folder."""
    return save_generator(path, generator, RetentiveGenerator, FORMAT, config, meta)


def load_retentive(path: str | Path | None, map_location: str | torch.device = "cpu"
                   ) -> tuple[RetentiveGenerator, RetentiveConfig, dict[str, Any]]:
    """Load a :func:`save_retentive` folder (see :func:`load_generator` for the errors)."""
    return load_generator(path, RetentiveGenerator, RetentiveConfig, FORMAT, "retentive", map_location)


@register_protector("retentive", "retentive proactive defense U-Net (Jiang et al.), needs trained weights")
def _make_retentive(checkpoint: str | None = None, strength: str | float = "mid",
                    device: str | torch.device | None = None) -> PerturbationProtector:
    """Factory: a trained retentive generator as a protector.

    Raises:
        WeightsNotFoundError: no ``checkpoint`` (no default weights are shipped) or missing files.
    """
    gen, cfg, _meta = load_retentive(checkpoint, torch.device(device) if device is not None else "cpu")
    return PerturbationProtector(gen, cfg.image_size, strength, name="retentive").eval()


__all__ = [
    "STRENGTH_FACTORS",
    "PerturbationProtector",
    "RetentiveConfig",
    "RetentiveGenerator",
    "UNet",
    "config_from_dict",
    "load_generator",
    "load_retentive",
    "save_generator",
    "save_retentive",
    "strength_factor",
    "template_for",
    "unwrap",
]
