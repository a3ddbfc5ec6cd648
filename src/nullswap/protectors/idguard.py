"""ID-Guard's perturbation generator (id-guard.txt, Qu et al., Sec. III-A and III-D) and its :class:`Protector`.

``G`` is a ResNet generator (Sec. III-A, "G is designed as a Resnet architecture"): Johnson et al.'s layout (7x7 conv,
two stride-2 convs, ``n_blocks`` residual blocks, two x2 up-sampling convs, 7x7 conv). Its input is
``cat(x, delta_p)`` (Eq. 12: the gradient prior perturbation ``delta_p``, a trainable global ``3xHxW`` tensor held by
the generator), its output is bounded by ``eps * tanh`` so ``||G(x)||_inf <= eps`` (Eq. 2), and the protected image is
``clip(x + G(cat(x, delta_p)), 0, 1)``.

Choices: ``eps`` is on the [0, 1] scale (the paper's 0.05 on [-1, 1] is 0.025 here); ``delta_p`` is kept in the
``eps`` ball by clamping where it is used; up-sampling is bilinear + conv (no checkerboard artefacts); instance norm as
in Johnson et al.'s image-translation ResNets.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nullswap.errors import InputError
from nullswap.protectors.base import register_protector
from nullswap.protectors.retentive import PerturbationProtector, load_generator, save_generator, template_for

log = logging.getLogger(__name__)

FORMAT = "idguard-generator"


@dataclass
class IDGuardConfig:
    """Hyper-parameters of :class:`IDGuardGenerator`.

    Attributes:
        image_size: crop size (the paper's 256; 128 with template ``protector-128``).
        base: width of the first conv (Johnson et al.'s ``ngf = 64``).
        n_blocks: residual blocks (6, the 128-px ResNet of CycleGAN; the paper does not give it).
        eps: L_inf bound of ``G(x)`` and ``delta_p`` on the [0, 1] scale (paper: 0.05 on [-1, 1] = 0.025).
    """

    image_size: int = 128
    base: int = 64
    n_blocks: int = 6
    eps: float = 0.025

    def __post_init__(self) -> None:
        template_for(self.image_size)
        if not self.eps > 0 or self.base < 1 or self.n_blocks < 0:
            raise InputError(f"IDGuardConfig: expected eps > 0, base >= 1, n_blocks >= 0, got {asdict(self)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields."""
        return asdict(self)


class _ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3, bias=False), nn.InstanceNorm2d(ch, affine=True),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3, bias=False), nn.InstanceNorm2d(ch, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class IDGuardGenerator(nn.Module):
    """ResNet perturbation generator with the gradient prior perturbation ``delta_p`` (Eq. 2, 12).

    Attributes:
        prior: the trainable global prior ``delta_p`` ``(3, H, W)`` (used clamped to ``[-eps, eps]``).
        prior_ready: buffer, 1 once ``delta_p`` was initialised by PGD (:func:`nullswap.losses.idguard.gradient_prior`).
    """

    def __init__(self, config: IDGuardConfig | None = None) -> None:
        super().__init__()
        c = self.config = config or IDGuardConfig()
        b = c.base
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(6, b, 7, bias=False),
                                   nn.InstanceNorm2d(b, affine=True), nn.ReLU(inplace=True)]
        for i in range(2):
            layers += [nn.Conv2d(b * 2**i, b * 2 ** (i + 1), 3, stride=2, padding=1, bias=False),
                       nn.InstanceNorm2d(b * 2 ** (i + 1), affine=True), nn.ReLU(inplace=True)]
        layers += [_ResBlock(b * 4) for _ in range(c.n_blocks)]
        for i in (2, 1):
            layers += [nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=False),
                       nn.Conv2d(b * 2**i, b * 2 ** (i - 1), 3, padding=1, bias=False),
                       nn.InstanceNorm2d(b * 2 ** (i - 1), affine=True), nn.ReLU(inplace=True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(b, 3, 7)]
        self.net = nn.Sequential(*layers)
        self.prior = nn.Parameter(torch.zeros(3, c.image_size, c.image_size))
        self.register_buffer("prior_ready", torch.zeros((), dtype=torch.uint8))

    def prior_perturbation(self) -> torch.Tensor:
        """``delta_p`` clamped to the ``eps`` ball, ``(1, 3, H, W)``."""
        return self.prior.clamp(-self.config.eps, self.config.eps)[None]

    def perturbation(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """``G(cat(x, delta_p))`` with ``||.||_inf <= scale * eps`` (Eq. 12's generator term)."""
        if tuple(x.shape[-2:]) != (self.config.image_size,) * 2:
            raise InputError(f"IDGuardGenerator: expected {self.config.image_size}px crops, got {tuple(x.shape[-2:])}")
        p = self.prior_perturbation().to(x.dtype).expand(x.shape[0], -1, -1, -1)
        inp = torch.cat([x * 2 - 1, p / self.config.eps], 1)  # Choice: the prior is fed normalised to [-1, 1]
        return scale * self.config.eps * torch.tanh(self.net(inp))

    def forward(self, x: torch.Tensor, scale: float = 1.0, return_parts: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Protected crops ``clip(x + G(cat(x, delta_p)))``; with ``return_parts`` also ``(delta, delta_p)``."""
        delta = self.perturbation(x, scale)
        out = (x + delta).clamp(0, 1)
        if return_parts:
            return out, delta, self.prior_perturbation().to(x.dtype)
        return out


def save_idguard(path: str | Path, generator: nn.Module, config: IDGuardConfig,
                 meta: dict[str, Any] | None = None) -> Path:
    """Write an :class:`IDGuardGenerator` checkpoint folder (``model.safetensors`` + ``config.json``)."""
    return save_generator(path, generator, IDGuardGenerator, FORMAT, config, meta)


def load_idguard(path: str | Path | None, map_location: str | torch.device = "cpu"
                 ) -> tuple[IDGuardGenerator, IDGuardConfig, dict[str, Any]]:
    """Load a :func:`save_idguard` folder.

    Raises:
        WeightsNotFoundError: no path or a missing file.
        WeightsError: unreadable or mismatched checkpoint.
    """
    return load_generator(path, IDGuardGenerator, IDGuardConfig, FORMAT, "idguard", map_location)


@register_protector("idguard", "ID-Guard ResNet perturbation generator (Qu et al.), needs trained weights")
def _make_idguard(checkpoint: str | None = None, strength: str | float = "mid",
                  device: str | torch.device | None = None) -> PerturbationProtector:
    """Factory: a trained ID-Guard generator as a protector (strength scales the perturbation and ``eps``).

    Raises:
        WeightsNotFoundError: no ``checkpoint`` (no default weights are shipped) or missing files.
    """
    gen, cfg, _meta = load_idguard(checkpoint, torch.device(device) if device is not None else "cpu")
    return PerturbationProtector(gen, cfg.image_size, strength, name="idguard").eval()


__all__ = ["IDGuardConfig", "IDGuardGenerator", "load_idguard", "save_idguard"]
