"""Texture (contrast) masking: a change costs less where the face's own texture hides it.

Not in the NullSwap paper (nullswap.txt, Eq. 13 has only MSE and LPIPS as quality terms). Added for issue 12, from
measurements: the shipped one pass leaves a low-frequency mottle on smooth skin of large faces, which neither the MSE
(blind to where the change is) nor ST-LPIPS (which penalises grain but lets 4-8-px blotches through at every display
scale, ``benchmarks/perceptual_blotches.py``) sees; and moving the change out of smooth skin after the fact breaks the
cloak (``benchmarks/texture_mask.py``), so the placement has to be trained in.

The model is the contrast-masking rule of vision science (Legge & Foley, 1980; the masking step of Watson's DCT
visibility model, 1993): the visibility threshold of a change rises with the local contrast of the image under it,
as ``max(1, (c / c0)^e)`` with ``e ~ 0.7``. Here the local contrast ``c`` is the standard deviation of the clean
image's BT.601 luminance in a ``window x window`` neighbourhood, and the threshold elevation is the smooth
``(1 + (c / c0)^2)^(e/2)``; the loss is the mean squared luminance change divided by the squared elevation, so a change
on flat skin (``c << c0``) counts fully and one on brows, hair or edges (``c >> c0``) counts ``(c0/c)^(2e)`` as much.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nullswap.checks import check_image_batch, check_same_shape
from nullswap.errors import InputError

#: ITU-R BT.601 luma row.
_LUMA = (0.299, 0.587, 0.114)

#: Defaults. Choice (the sources give the form, not these numbers for 128-px face crops). Measured with
#: ``python benchmarks/texture_mask.py --n 48`` (48 CelebA validation crops, ``protector-128``): the 7x7 local
#: luminance std has quantiles 10/25/50/75/90 % = 0.009 / 0.021 / 0.044 / 0.085 / 0.140 (cheeks and forehead at the
#: low end, brows, eyes, hairline and edges at the high end), so ``contrast`` 0.03 weighs the flattest quarter of the
#: pixels 0.8-1, the median pixel 0.45 and the top decile < 0.11. ``exponent`` 0.7 is Watson's masking exponent;
#: ``window`` 7 px is about the blotch size the montage shows on a 128-px crop. On model v4's one pass the term is
#: 0.40x its luminance MSE.
DEFAULT_MASKING = {"contrast": 0.03, "exponent": 0.7, "window": 7}


def luminance(x: torch.Tensor) -> torch.Tensor:
    """``(B,1,H,W)`` BT.601 luma of RGB ``(B,3,H,W)`` (also of a difference of images: the weights are linear)."""
    w = torch.tensor(_LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def local_contrast(image: torch.Tensor, window: int = 7) -> torch.Tensor:
    """``(B,1,H,W)`` standard deviation of the BT.601 luminance in a ``window x window`` neighbourhood.

    Borders average over the pixels inside the image only (``count_include_pad=False``).

    Args:
        image: RGB ``(B,3,H,W)`` in [0,1].
        window: odd neighbourhood size in pixels.

    Raises:
        InputError: a bad image batch or an even / non-positive window.
    """
    check_image_batch(image, "image")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1 or window % 2 == 0:
        raise InputError(f"window: expected an odd int >= 1, got {window!r}")
    g = luminance(image.float())
    g = g - g.mean((2, 3), keepdim=True)  # centred: less float32 cancellation in E[g^2] - E[g]^2
    k, p = window, window // 2
    m = F.avg_pool2d(g, k, 1, p, count_include_pad=False)
    v = F.avg_pool2d(g * g, k, 1, p, count_include_pad=False) - m * m
    return v.clamp_min(0).sqrt()


def masking_weights(image: torch.Tensor, contrast: float = 0.03, exponent: float = 0.7,
                    window: int = 7) -> torch.Tensor:
    """``(B,1,H,W)`` weights ``(1 + (c / contrast)^2)^(-exponent)``: 1 on flat regions, small on textured ones.

    The inverse squared threshold elevation of the contrast-masking rule (module docstring); no gradient (it depends
    on the clean image only).

    Raises:
        InputError: a bad image batch or non-positive ``contrast`` / negative ``exponent``.
    """
    if not contrast > 0:
        raise InputError(f"contrast: expected a number > 0, got {contrast!r}")
    if not exponent >= 0:
        raise InputError(f"exponent: expected a number >= 0, got {exponent!r}")
    with torch.no_grad():
        c = local_contrast(image, window)
        return (1.0 + (c / float(contrast)) ** 2) ** (-float(exponent))


def masked_luma_loss(clean: torch.Tensor, protected: torch.Tensor, contrast: float = 0.03, exponent: float = 0.7,
                     window: int = 7) -> torch.Tensor:
    """Mean over pixels and images of ``w * (Y(I'_s) - Y(I_s))^2``, ``w`` = :func:`masking_weights` of ``I_s``.

    With ``w = 1`` everywhere (``contrast`` -> infinity) this is the luminance part of the squared error.

    Args:
        clean: ``I_s``, RGB ``(B,3,H,W)`` in [0,1].
        protected: ``I'_s`` (gradients flow to it).
        contrast: see :func:`masking_weights`.
        exponent: see :func:`masking_weights`.
        window: see :func:`masking_weights`.
    """
    check_same_shape(clean, protected, ("clean", "protected"))
    w = masking_weights(clean, contrast, exponent, window)
    d = luminance(protected.float() - clean.float())
    return (w * d.pow(2)).mean()


def masking_config(cfg: dict | None) -> dict:
    """The ``loss.masking`` section with defaults filled in; unknown keys raise :class:`InputError`."""
    given = dict(cfg or {})
    unknown = sorted(set(given) - set(DEFAULT_MASKING))
    if unknown:
        raise InputError(f"masking: expected keys among {sorted(DEFAULT_MASKING)}, got unknown {unknown}")
    out = {**DEFAULT_MASKING, **given}
    if isinstance(out["window"], bool) or not isinstance(out["window"], int) or out["window"] < 1 \
            or out["window"] % 2 == 0:
        raise InputError(f"masking.window: expected an odd int >= 1, got {out['window']!r}")
    for k in ("contrast", "exponent"):
        v = out[k]
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or (k == "contrast" and v == 0):
            raise InputError(f"masking.{k}: expected a number {'> 0' if k == 'contrast' else '>= 0'}, got {v!r}")
    return out


__all__ = ["DEFAULT_MASKING", "local_contrast", "luminance", "masked_luma_loss", "masking_config", "masking_weights"]
