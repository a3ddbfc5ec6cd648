"""Hyper-parameters of the NullSwap generator and discriminator (:class:`NullSwapConfig`), as stored in checkpoints."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from nullswap._common import config_from_dict
from nullswap.errors import InputError

__all__ = ["NullSwapConfig"]


@dataclass
class NullSwapConfig:
    """Hyper-parameters of :class:`NullSwapGenerator` / :class:`NullSwapDiscriminator`.

    ``L``, ``M``, ``N`` and ``image_size`` are the paper's (Sec. 4.1); the widths and initial values are Choices.

    Attributes:
        L: SEResBlocks in the ID Extraction module.
        M: SEResBlocks in the Perturbation Block.
        N: SEResBlocks in the Feature Block, and ConvBlocks of the discriminator.
        image_size: training/inference crop size (a multiple of 8, at least 64).
        id_channels: width of the ID Extraction module.
        perturb_channels: width of the Perturbation Block (= channels of the perturbation and the noise).
        feature_channels: width of the Feature Block.
        cloak_channels: width of the Cloaking Block (halved after its second DeConvBlock).
        disc_channels: width of the first discriminator ConvBlock (doubled per block, capped at 8x).
        se_reduction: SE reduction ratio.
        expansion: bottleneck expansion.
        upsample: DeConvBlock interpolation, ``"bilinear"`` or ``"nearest"``.
        noise_size: side of the learnable noise map ``eta`` (Eq. 1); ``0`` means ``image_size // 4``. It is
            bilinearly resized to the perturbation's size when they differ.
        alpha_init: initial ``alpha`` of Eq. 1.
        beta_init: initial ``beta`` of Eq. 1.
        gamma_init: initial ``gamma`` (the Cloaking Block's perturbation weight).
        residual_init_std: std of the normal init of the residual head's weights; 0 keeps PyTorch's default init.
        max_delta: bound on each pixel's change, in 1/255 units, at ``perturbation_scale`` 1 (scaled with it); the
            change ``d`` becomes ``c * tanh(d / c)``. 0 = no bound (the paper has none). Choice, from whole-photo
            viewing: a PSNR floor bounds the *mean* change but lets the cloak concentrate into strong streaks on
            eyes, nose and lips, which an upsampled residual makes visible on large faces; a smooth per-pixel cap
            keeps the budget spread out. Differentiable, so training sees the same bound.
        detail_channels: width of the full-resolution detail branch; 0 (default) = no branch, the paper's network.
            Choice (issue 12, not in the paper): the paper's network draws its change at H/4 and has only two
            ConvBlocks at full resolution, so it cannot represent the per-image, pixel-scale part of what the
            refinement steps add (distillation measured in session 15); the branch adds ``detail_blocks``
            SEResBlocks at full resolution whose residual is summed with the Cloaking path's. Its output convolution
            starts at zero, so a trained generator grown with it computes the same function at the first step.
        detail_blocks: SEResBlocks in the detail branch (used when ``detail_channels > 0``).
    """

    L: int = 4
    M: int = 3
    N: int = 5
    image_size: int = 256
    id_channels: int = 128
    perturb_channels: int = 64
    feature_channels: int = 64
    cloak_channels: int = 64
    disc_channels: int = 32
    se_reduction: int = 16
    expansion: int = 4
    upsample: str = "bilinear"
    noise_size: int = 0
    alpha_init: float = 1.0
    beta_init: float = 0.1
    gamma_init: float = 1.0
    residual_init_std: float = 0.01
    max_delta: float = 0.0
    detail_channels: int = 0
    detail_blocks: int = 2

    def __post_init__(self) -> None:
        for name in ("L", "M", "N", "detail_channels", "detail_blocks"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise InputError(f"{name}: expected an int >= 0, got {v!r}")
        for name in (
            "id_channels",
            "perturb_channels",
            "feature_channels",
            "cloak_channels",
            "disc_channels",
            "se_reduction",
            "expansion",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"{name}: expected an int >= 1, got {v!r}")
        if self.cloak_channels < 2:
            raise InputError(f"cloak_channels: expected an int >= 2, got {self.cloak_channels!r}")
        _check_size(self.image_size, "image_size")
        if self.upsample not in ("bilinear", "nearest"):
            raise InputError(f"upsample: expected 'bilinear' or 'nearest', got {self.upsample!r}")
        if isinstance(self.noise_size, bool) or not isinstance(self.noise_size, int) or self.noise_size < 0:
            raise InputError(f"noise_size: expected an int >= 0, got {self.noise_size!r}")
        if isinstance(self.max_delta, bool) or not isinstance(self.max_delta, int | float) or self.max_delta < 0:
            raise InputError(f"max_delta: expected a number >= 0 (1/255 units), got {self.max_delta!r}")

    @property
    def eta_size(self) -> int:
        """Side of the learnable noise map ``eta``."""
        return self.noise_size or self.image_size // 4

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> NullSwapConfig:
        """Build from a dict (missing keys take defaults).

        Raises:
            InputError: unknown keys or invalid values.
        """
        return config_from_dict(cls, d, "nullswap model")


def _check_size(size: object, name: str) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 64 or size % 8:
        raise InputError(f"{name}: expected a multiple of 8 that is at least 64, got {size!r}")
