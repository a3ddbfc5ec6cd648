"""Expectation over transformation (EOT) for training cloaks that survive re-encoding.

Athalye et al., "Synthesizing Robust Adversarial Examples", ICML 2018: optimise the expected loss over a distribution
of input transformations instead of the loss on the untransformed input. Here the protected crop is passed through a
random *differentiable* degradation before the recognizers see it (the clean embeddings stay untransformed), so the
identity loss rewards cloaks that still work after a photo is re-compressed, downscaled or softened.

Not in the NullSwap paper (nullswap.txt trains on clean ``I'_s`` only). Choice, from what a protected photo meets
after upload: JPEG with quality in ``jpeg_quality`` (kornia's differentiable JPEG, Reich et al., WACV 2024), a
down-and-up resize by a factor in ``resize`` (bilinear, antialiased on the way down), and a Gaussian blur with sigma
in ``blur_sigma``; each batch draws one of them with probability ``p`` (uniformly among the three), else identity.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nullswap.errors import InputError


@dataclass
class EOTConfig:
    """Distribution of the training-time degradations.

    Attributes:
        p: probability that a batch is degraded at all.
        jpeg_quality: ``(low, high)`` JPEG quality range (per image, uniform).
        resize: ``(low, high)`` scale range of the down-and-up resize (per batch, uniform).
        blur_sigma: ``(low, high)`` Gaussian sigma range in pixels (per batch, uniform).
        kinds: which degradations may be drawn, among ``"jpeg"``, ``"resize"``, ``"blur"``.
    """

    p: float = 0.5
    jpeg_quality: tuple[float, float] = (50.0, 95.0)
    resize: tuple[float, float] = (0.5, 1.0)
    blur_sigma: tuple[float, float] = (0.3, 1.0)
    kinds: tuple[str, ...] = ("jpeg", "resize", "blur")

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.p) <= 1.0:
            raise InputError(f"eot.p: expected a probability in [0, 1], got {self.p!r}")
        for name, lo_min, hi_max in (("jpeg_quality", 1.0, 100.0), ("resize", 0.05, 1.0), ("blur_sigma", 0.0, 10.0)):
            v = tuple(float(a) for a in getattr(self, name))
            if len(v) != 2 or not lo_min <= v[0] <= v[1] <= hi_max:
                raise InputError(f"eot.{name}: expected (low, high) with {lo_min} <= low <= high <= {hi_max}, got {v}")
            setattr(self, name, v)
        self.kinds = tuple(self.kinds)
        bad = [k for k in self.kinds if k not in ("jpeg", "resize", "blur")]
        if bad or not self.kinds:
            raise InputError(f"eot.kinds: expected a non-empty subset of ('jpeg', 'resize', 'blur'), got {self.kinds}")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> EOTConfig:
        """Build from a config mapping (unknown keys raise :class:`InputError`)."""
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"eot config: expected keys among {sorted(known)}, got unknown {unknown}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Differentiable Gaussian blur of ``(B,3,H,W)`` with a ``2*ceil(3 sigma)+1`` kernel (reflect padding)."""
    if sigma <= 0:
        return x
    import kornia

    k = 2 * int(torch.ceil(torch.tensor(3.0 * sigma)).item()) + 1
    return kornia.filters.gaussian_blur2d(x, (k, k), (sigma, sigma), border_type="reflect")


def resize_round_trip(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Down-scale by ``scale`` (antialiased bilinear) and back to the input size (bilinear): differentiable."""
    if scale >= 1.0:
        return x
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(8, round(h * scale)), max(8, round(w * scale))), mode="bilinear",
                          align_corners=False, antialias=True)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


def jpeg_differentiable(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Differentiable JPEG (kornia's, straight-through rounding) at per-image ``quality`` ``(B,)``, float32."""
    from kornia.enhance import jpeg_codec_differentiable

    return jpeg_codec_differentiable(x.float().clamp(0, 1), quality.to(x.device, torch.float32)).to(x.dtype)


class RandomDegradation(nn.Module):
    """Draws one degradation per call (see :class:`EOTConfig`) from its own seeded RNG (``reseed`` to resume).

    Args:
        config: the distribution.
        seed: seed of the Python RNG that draws kinds and parameters.
    """

    def __init__(self, config: EOTConfig | None = None, seed: int = 0) -> None:
        super().__init__()
        self.config = config or EOTConfig()
        self.rng = random.Random(seed)
        self.last: str = "none"

    def reseed(self, seed: int) -> None:
        """Restart the draws from ``seed`` (a resumed run reseeds with its step)."""
        self.rng.seed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """A randomly degraded copy of ``x`` (RGB ``[0, 1]``), differentiable; ``self.last`` names the draw."""
        c = self.config
        if self.rng.random() >= c.p:
            self.last = "none"
            return x
        kind = self.rng.choice(c.kinds)
        self.last = kind
        if kind == "jpeg":
            q = torch.tensor([self.rng.uniform(*c.jpeg_quality) for _ in range(x.shape[0])])
            return jpeg_differentiable(x, q)
        if kind == "resize":
            return resize_round_trip(x, self.rng.uniform(*c.resize))
        return gaussian_blur(x, self.rng.uniform(*c.blur_sigma))


__all__ = ["EOTConfig", "RandomDegradation", "gaussian_blur", "jpeg_differentiable", "resize_round_trip"]
