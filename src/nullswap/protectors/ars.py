"""Adversarial Robust Safeguard (ars.txt, Guan et al., AAAI 2024): the two-way protection model and adv net q_phi.

* **Basic protection** ``f_theta`` (Eq. 2-3): a U-Net, ``eta_b = eps * tanh(f_theta(x))``, ``x_b = clip(x + eta_b)``.
* **Robust protection** ``g_psi`` (Eq. 4-6): stage-1 ``z = g_1(x)`` (U-Net, ``C`` channels), noise encoding
  ``n = g_n(eta_b)`` (stacked stride-2 Conv-BN-ReLU + global average pooling to ``1x1xC``), spatially repeated to
  ``n_s`` (``HxWxC``), stage-2 ``eta = eps * tanh(g_2(cat(z, n_s, eta_b)))`` (U-Net), ``x~ = clip(x + eta)``.
* **Adv net** ``q_phi`` (Eq. 8-9): tries to undo the protection; Choice: a residual U-Net ``q(x) = clip(x + U(x))``
  whose last conv starts at zero (``q`` starts as the identity).

Choices: ``eps`` on the [0, 1] scale (paper: 0.1 on [-1, 1] = 0.05 here); the U-Nets are
:class:`~nullswap.protectors.retentive.UNet` (the paper gives no widths); ``eta_b`` enters ``g_psi`` detached, so
``f_theta`` is trained by Eq. 2 only and ``g_psi`` by Eq. 10 only (the paper writes two separate minimisations).
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
from nullswap.protectors.retentive import (
    PerturbationProtector,
    UNet,
    load_generator,
    save_generator,
    template_for,
)

log = logging.getLogger(__name__)

FORMAT = "ars-generator"


@dataclass
class ARSConfig:
    """Hyper-parameters of :class:`ARSGenerator` and :class:`ARSAdvNet`.

    Attributes:
        image_size: crop size (paper: 256).
        base: U-Net width of ``f_theta``, ``g_1``, ``g_2``.
        depth: U-Net levels.
        channels: ``C`` of Eq. 4-5 (paper: 128).
        encoder_layers: Conv-BN-ReLU layers of ``g_n``.
        eps: L_inf bound of ``eta_b`` and ``eta`` on [0, 1] (paper: 0.1 on [-1, 1]).
        adv_base: U-Net width of ``q_phi``.
        adv_depth: U-Net levels of ``q_phi``.
    """

    image_size: int = 128
    base: int = 32
    depth: int = 6
    channels: int = 128
    encoder_layers: int = 4
    eps: float = 0.05
    adv_base: int = 32
    adv_depth: int = 5

    def __post_init__(self) -> None:
        template_for(self.image_size)
        if not self.eps > 0 or min(self.base, self.depth, self.channels, self.encoder_layers, self.adv_base,
                                   self.adv_depth) < 1:
            raise InputError(f"ARSConfig: expected eps > 0 and positive sizes, got {asdict(self)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields."""
        return asdict(self)


class NoiseEncoder(nn.Module):
    """``g_n`` of Eq. 5: stride-2 Conv-BN-ReLU layers then global average pooling to ``(B, C, 1, 1)``."""

    def __init__(self, channels: int, layers: int) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        prev = 3
        for i in range(layers):
            w = max(channels // 2 ** (layers - 1 - i), 8)
            mods += [nn.Conv2d(prev, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            prev = w
        mods += [nn.Conv2d(prev, channels, 1)]
        self.net = nn.Sequential(*mods)

    def forward(self, eta_b: torch.Tensor) -> torch.Tensor:
        """``n`` ``(B, C, 1, 1)``."""
        return self.net(eta_b).mean((2, 3), keepdim=True)


class ARSGenerator(nn.Module):
    """The two-way protection model (Fig. 2): basic ``f_theta`` and robust ``g_psi = (g_1, g_n, g_2)``."""

    def __init__(self, config: ARSConfig | None = None) -> None:
        super().__init__()
        c = self.config = config or ARSConfig()
        self.f = UNet(3, 3, c.base, c.depth)
        self.g1 = UNet(3, c.channels, c.base, c.depth)
        self.gn = NoiseEncoder(c.channels, c.encoder_layers)
        self.g2 = UNet(2 * c.channels + 3, 3, c.base, c.depth)

    def forward(self, x: torch.Tensor, scale: float = 1.0, return_parts: bool = False
                ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Protected crops ``x~`` (Eq. 6); with ``return_parts`` a dict ``eta_b, x_b, eta, x_tilde``.

        ``scale`` (strength) multiplies ``eps`` in both ways.
        """
        eps = scale * self.config.eps
        xin = x * 2 - 1
        eta_b = eps * torch.tanh(self.f(xin))  # Eq. 2-3
        z = self.g1(xin)  # Eq. 4
        eb = eta_b.detach()
        n = self.gn(eb / eps)  # Eq. 5 (Choice: fed normalised to [-1, 1])
        n_s = n.expand(-1, -1, x.shape[-2], x.shape[-1])  # spatial repeat H x W
        eta = eps * torch.tanh(self.g2(torch.cat([z, n_s, eb / eps], 1)))  # Eq. 6
        x_tilde = (x + eta).clamp(0, 1)
        if return_parts:
            return {"eta_b": eta_b, "x_b": (x + eta_b).clamp(0, 1), "eta": eta, "x_tilde": x_tilde}
        return x_tilde


class ARSAdvNet(nn.Module):
    """``q_phi`` (Eq. 8): ``q(x) = clip(x + U(x), 0, 1)``, initialised to the identity."""

    def __init__(self, config: ARSConfig | None = None) -> None:
        super().__init__()
        c = config or ARSConfig()
        self.net = UNet(3, 3, c.adv_base, c.adv_depth)
        nn.init.zeros_(self.net.head.weight)
        nn.init.zeros_(self.net.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The "cleaned" image in [0, 1]."""
        return (x + self.net(x * 2 - 1)).clamp(0, 1)


def save_ars(path: str | Path, generator: nn.Module, config: ARSConfig, meta: dict[str, Any] | None = None) -> Path:
    """Write an :class:`ARSGenerator` checkpoint folder (``q_phi`` is a training-only helper and is not saved)."""
    return save_generator(path, generator, ARSGenerator, FORMAT, config, meta)


def load_ars(path: str | Path | None, map_location: str | torch.device = "cpu"
             ) -> tuple[ARSGenerator, ARSConfig, dict[str, Any]]:
    """Load a :func:`save_ars` folder.

    Raises:
        WeightsNotFoundError: no path or a missing file.
        WeightsError: unreadable or mismatched checkpoint.
    """
    return load_generator(path, ARSGenerator, ARSConfig, FORMAT, "ars", map_location)


@register_protector("ars", "Adversarial Robust Safeguard two-way protection (Guan et al.), needs trained weights")
def _make_ars(checkpoint: str | None = None, strength: str | float = "mid",
              device: str | torch.device | None = None) -> PerturbationProtector:
    """Factory: a trained ARS generator as a protector (strength scales ``eps``).

    Raises:
        WeightsNotFoundError: no ``checkpoint`` (no default weights are shipped) or missing files.
    """
    gen, cfg, _meta = load_ars(checkpoint, torch.device(device) if device is not None else "cpu")
    return PerturbationProtector(gen, cfg.image_size, strength, name="ars").eval()


__all__ = ["ARSAdvNet", "ARSConfig", "ARSGenerator", "NoiseEncoder", "load_ars", "save_ars"]
