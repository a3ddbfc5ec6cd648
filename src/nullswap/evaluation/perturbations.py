"""Evaluation perturbations ("post-processing") applied to protected images, with real codecs.

ARS (ars.txt, "Robust evaluation", Table 6 and Fig. 5) evaluates protections after six kinds of perturbation --
colour saturation, colour contrast, random (pixel) drop, Gaussian blur, down-scale and JPEG -- each at five levels.
The level values are given in the ARS appendix, which is not part of the paper text we have, so the levels below
are our own choice (documented per perturbation), spanning mild to severe; Gaussian noise is added as a seventh kind.
Unlike ARS's training-time perturbation module (differentiable approximations, e.g. DCT masking for JPEG), these are
the real operations: JPEG goes through Pillow's libjpeg encoder/decoder on uint8 pixels.

Level tables (index 0 = mildest, 4 = most severe):

==================  ==========  =================================  ================
name                parameter   levels                             identity value
==================  ==========  =================================  ================
``jpeg``            quality     90, 70, 50, 30, 10                 (none)
``gaussian_blur``   sigma (px)  0.5, 1.0, 1.5, 2.0, 3.0            0
``downscale``       factor      0.9, 0.75, 0.5, 0.35, 0.25         1
``pixel_drop``      fraction    0.05, 0.1, 0.2, 0.3, 0.5           0
``saturation``      factor      0.8, 0.6, 0.4, 0.2, 0.0            1
``contrast``        factor      0.8, 0.65, 0.5, 0.35, 0.2          1
``gaussian_noise``  sigma       0.01, 0.02, 0.04, 0.06, 0.08       0
==================  ==========  =================================  ================

Example:
    >>> x = torch.rand(2, 3, 64, 64)
    >>> y = apply_perturbation(x, "jpeg", 2)  # level index 2 -> quality 50
    >>> y.shape
    torch.Size([2, 3, 64, 64])
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import kornia
import torch
import torch.nn.functional as F

from nullswap.checks import check_image_batch
from nullswap.errors import InputError, UnknownModelError
from nullswap.faces.io import jpeg_roundtrip

log = logging.getLogger(__name__)

ApplyFn = Callable[[torch.Tensor, float, "torch.Generator | None"], torch.Tensor]


@dataclass(frozen=True)
class Perturbation:
    """One kind of evaluation perturbation and its five levels.

    Attributes:
        name: registry key, e.g. ``"jpeg"``.
        levels: the five parameter values, mildest first.
        apply: ``apply(x, value, generator) -> y`` on ``(B,3,H,W)`` in [0,1]; ``y`` has the same shape, in [0,1].
        param: name of the parameter the levels set (``"quality"``, ``"sigma"``, ...).
        domain: inclusive ``(low, high)`` range of valid parameter values.
        identity: the parameter value that leaves images unchanged, or ``None`` when there is none (JPEG).
        integer: whether the parameter is an integer (JPEG quality).
        random: whether the perturbation draws random numbers (seed it with ``generator``).
        description: one line.
    """

    name: str
    levels: tuple[float, ...]
    apply: ApplyFn
    param: str
    domain: tuple[float, float]
    identity: float | None = None
    integer: bool = False
    random: bool = False
    description: str = ""

    def value(self, level: int | float) -> float:
        """The parameter value for a level index (``int`` in ``[0, len(levels))``) or an explicit value.

        An ``int`` inside ``[0, len(levels))`` is an index; any other number is a parameter value that must lie in
        :attr:`domain` (to give, say, JPEG quality 3 literally, pass ``3.0``).

        Raises:
            InputError: for a non-number, or a value outside the domain.
        """
        if isinstance(level, bool) or not isinstance(level, int | float):
            raise InputError(
                f"perturbation {self.name!r}: expected a level index 0..{len(self.levels) - 1} or a {self.param} "
                f"value, got {type(level).__name__}"
            )
        if isinstance(level, int) and 0 <= level < len(self.levels):
            return float(self.levels[level])
        v = float(level)
        lo, hi = self.domain
        if not (math.isfinite(v) and lo <= v <= hi):
            raise InputError(
                f"perturbation {self.name!r}: expected a level index 0..{len(self.levels) - 1} (levels "
                f"{self.param}={list(self.levels)}) or a {self.param} value in [{lo:g}, {hi:g}], got {level!r}"
            )
        if self.integer and v != round(v):
            raise InputError(f"perturbation {self.name!r}: expected an integer {self.param}, got {level!r}")
        return v

    def __call__(self, x: torch.Tensor, level: int | float, generator: torch.Generator | None = None) -> torch.Tensor:
        """Apply at a level index or value (see :meth:`value`)."""
        return apply_perturbation(x, self, level, generator=generator)


def _rand(shape: tuple[int, ...], x: torch.Tensor, generator: torch.Generator | None, normal: bool) -> torch.Tensor:
    """Uniform or normal random numbers drawn on the generator's device, returned on ``x``'s device and dtype."""
    dev = generator.device if generator is not None else x.device
    fn = torch.randn if normal else torch.rand
    return fn(shape, generator=generator, device=dev, dtype=torch.float32).to(x.device, x.dtype)


def _jpeg(x: torch.Tensor, quality: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Real JPEG round trip (:func:`nullswap.faces.io.jpeg_roundtrip`: Pillow's libjpeg, 4:2:0, uint8 pixels)."""
    return jpeg_roundtrip(x, int(round(quality)))


def _gaussian_blur(x: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian blur (kornia), kernel size ``2*ceil(3*sigma)+1``, reflect border."""
    if sigma <= 0:
        return x.clone()
    k = 2 * math.ceil(3 * sigma) + 1
    k = min(k, 2 * ((min(x.shape[-2:]) - 1) // 2) + 1)  # reflect padding needs k//2 < H and W
    if k < 3:
        return x.clone()
    return kornia.filters.gaussian_blur2d(x, (k, k), (sigma, sigma), border_type="reflect").clamp(0, 1)


def _downscale(x: torch.Tensor, factor: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Down-scale by ``factor`` (bilinear, antialiased) then up-scale back to the input size (bilinear)."""
    H, W = x.shape[-2:]
    h, w = max(1, round(H * factor)), max(1, round(W * factor))
    if (h, w) == (H, W):
        return x.clone()
    small = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return F.interpolate(small, size=(H, W), mode="bilinear", align_corners=False).clamp(0, 1)


def _pixel_drop(x: torch.Tensor, fraction: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Set a random ``fraction`` of pixels (all three channels) to 0, as ARS's ``p_drop`` mask ``m`` (H x W x 1)."""
    B, _, H, W = x.shape
    drop = _rand((B, 1, H, W), x, generator, normal=False) < fraction
    return x.masked_fill(drop, 0.0)


def _saturation(x: torch.Tensor, factor: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Blend with the grayscale image: ``factor*x + (1-factor)*gray`` (0 = grayscale, 1 = unchanged; as PIL/TV)."""
    return kornia.enhance.adjust_saturation_with_gray_subtraction(x, float(factor))


def _contrast(x: torch.Tensor, factor: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Blend with each image's mean gray level: ``factor*x + (1-factor)*mean`` (1 = unchanged; as PIL/TV)."""
    return kornia.enhance.adjust_contrast_with_mean_subtraction(x, float(factor))


def _gaussian_noise(x: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add i.i.d. ``N(0, sigma^2)`` noise per pixel and channel, then clip to [0,1]."""
    if sigma <= 0:
        return x.clone()
    return (x + sigma * _rand(tuple(x.shape), x, generator, normal=True)).clamp(0, 1)


PERTURBATIONS: dict[str, Perturbation] = {
    p.name: p
    for p in (
        Perturbation("jpeg", (90, 70, 50, 30, 10), _jpeg, "quality", (1, 100), None, integer=True,
                     description="JPEG compression with Pillow/libjpeg at the given quality (ARS: JPEG)"),
        Perturbation("gaussian_blur", (0.5, 1.0, 1.5, 2.0, 3.0), _gaussian_blur, "sigma", (0, 20), 0.0,
                     description="Gaussian blur, sigma in pixels, kernel 2*ceil(3 sigma)+1 (ARS: Gaussian Blur)"),
        Perturbation("downscale", (0.9, 0.75, 0.5, 0.35, 0.25), _downscale, "factor", (0.01, 1), 1.0,
                     description="bilinear down-scale by factor and up-scale back (ARS: Down Scale)"),
        Perturbation("pixel_drop", (0.05, 0.1, 0.2, 0.3, 0.5), _pixel_drop, "fraction", (0, 1), 0.0, random=True,
                     description="random fraction of pixels set to 0 (ARS: Random Drop, p_drop)"),
        Perturbation("saturation", (0.8, 0.6, 0.4, 0.2, 0.0), _saturation, "factor", (0, 10), 1.0,
                     description="colour saturation factor, 0 = grayscale (ARS: Color Saturation)"),
        Perturbation("contrast", (0.8, 0.65, 0.5, 0.35, 0.2), _contrast, "factor", (0, 10), 1.0,
                     description="contrast factor around the mean gray level (ARS: Color Contrast)"),
        Perturbation("gaussian_noise", (0.01, 0.02, 0.04, 0.06, 0.08), _gaussian_noise, "sigma", (0, 1), 0.0,
                     random=True, description="additive Gaussian noise, sigma in [0,1] units (not in ARS)"),
    )
}


def list_perturbations() -> list[str]:
    """Names of all evaluation perturbations, in table order."""
    return list(PERTURBATIONS)


def get_perturbation(name: str) -> Perturbation:
    """The :class:`Perturbation` called ``name``.

    Raises:
        UnknownModelError: (a :class:`~nullswap.errors.NullswapError` and ``KeyError``) listing the valid names.
    """
    try:
        return PERTURBATIONS[name]
    except (KeyError, TypeError):
        raise UnknownModelError("perturbation", str(name), list(PERTURBATIONS)) from None


def apply_perturbation(
    x: torch.Tensor,
    name: str | Perturbation,
    level: int | float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Apply one evaluation perturbation (ARS "Robust evaluation" protocol) to an image batch.

    Args:
        x: RGB float ``(B,3,H,W)`` in [0,1].
        name: a name from :func:`list_perturbations` (or a :class:`Perturbation`).
        level: a level index ``0..4`` (``int``) or an explicit parameter value (see :meth:`Perturbation.value`).
        generator: random source for ``pixel_drop`` and ``gaussian_noise`` (seeded runs are repeatable).

    Returns:
        The perturbed batch, same shape, dtype and device as ``x``, values in [0,1]. Not differentiable for JPEG.

    Raises:
        InputError: for a bad image batch, an unknown name (listing the valid ones) or an invalid level.
    """
    check_image_batch(x, "x")
    if isinstance(name, Perturbation):
        p = name
    else:
        if not isinstance(name, str) or name not in PERTURBATIONS:
            raise InputError(f"expected a perturbation name in {list(PERTURBATIONS)}, got {name!r}")
        p = PERTURBATIONS[name]
    value = p.value(level)
    if x.shape[0] == 0:
        return x.clone()
    if p.identity is not None and value == p.identity:
        return x.clone()
    log.debug("perturbation %s %s=%g on %s", p.name, p.param, value, tuple(x.shape))
    y = p.apply(x, value, generator)
    return y.clamp(0, 1)


__all__ = ["PERTURBATIONS", "Perturbation", "apply_perturbation", "get_perturbation", "list_perturbations"]
