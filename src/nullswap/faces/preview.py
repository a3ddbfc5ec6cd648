"""A small, quickly decoded copy of a photo for face *detection* (JPEG: Pillow's DCT-domain draft mode).

A detector that looks at a <= 640-px copy (SCRFD) does not need the full decode of a 12-MP JPEG: libjpeg can decode
at 1/2, 1/4 or 1/8 scale straight from the DCT coefficients (``Image.draft``), several times faster than a full
decode. The full-resolution pixels are still decoded (by :func:`nullswap.faces.io.read_image`) for the paste-back;
this copy only finds the faces. Boxes and landmarks found on it are mapped back with :func:`to_photo_pixels`.

The copy is upright (EXIF orientation applied), RGB float in [0, 1]; its size relates to the upright photo by the
per-axis factors returned with it.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nullswap.errors import InputError

log = logging.getLogger(__name__)

#: EXIF orientation -> the transpose that makes the pixels upright (as ``PIL.ImageOps.exif_transpose``).
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


@dataclass
class Preview:
    """A reduced copy of a photo for detection.

    Attributes:
        tensor: ``(3, h, w)`` float32 RGB in [0, 1], upright; a view of channels-last memory (``(h, w, 3)``).
        size: ``(H, W)`` of the upright full-resolution photo.
        scale: ``(sx, sy)``: photo pixels per preview pixel along x and y.
    """

    tensor: torch.Tensor
    size: tuple[int, int]
    scale: tuple[float, float]


def jpeg_preview(data: bytes | str | os.PathLike[str], min_side: int) -> Preview | None:
    """A draft-mode decode of a JPEG whose long side is still at least ``min_side`` pixels.

    Args:
        data: the file's bytes or its path.
        min_side: the copy's long side is at least this (libjpeg picks the largest of 1/2, 1/4, 1/8 that keeps it).

    Raises:
        InputError: ``min_side`` is not a positive int.

    Returns:
        The :class:`Preview`, or ``None`` when the file is not a baseline/progressive 8-bit JPEG that draft mode can
        shrink (other formats, CMYK, a photo already under ``2 * min_side``): use the full decode then.
    """
    if not isinstance(min_side, int) or min_side < 1:
        raise InputError(f"min_side: expected a positive int, got {min_side!r}")
    try:
        raw = data if isinstance(data, bytes) else Path(data).read_bytes()
        with Image.open(io.BytesIO(raw)) as im:
            if im.format not in ("JPEG", "MPO") or im.mode not in ("RGB", "L", "YCbCr"):
                return None
            W, H = im.size
            if max(W, H) < 2 * min_side:
                return None
            k = max(W, H) / min_side  # draft keeps each side >= the requested one
            im.draft("RGB", (max(1, int(W / k)), max(1, int(H / k))))
            if im.size == (W, H):
                return None
            orientation = int(im.getexif().get(0x0112, 1) or 1)
            small = im.convert("RGB")
            if orientation in _TRANSPOSE:
                small = small.transpose(_TRANSPOSE[orientation])
            if orientation in (5, 6, 7, 8):
                W, H = H, W
            arr = np.asarray(small, dtype=np.float32) / 255.0
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        log.debug("no draft preview (%s): full decode", e)
        return None
    h, w = arr.shape[:2]
    # a (3,h,w) view of the (h,w,3) decode: no copy here, and SCRFD resizes channels-last (OpenCV)
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
    return Preview(t, (H, W), (W / w, H / h))


def to_photo_pixels(points: torch.Tensor, scale: tuple[float, float]) -> torch.Tensor:
    """Boxes ``(N, 4)`` (x1, y1, x2, y2) or landmarks ``(N, K, 2)`` from preview to photo pixels."""
    sx, sy = scale
    if points.ndim == 2 and points.shape[-1] == 4:
        return points * torch.tensor([sx, sy, sx, sy], dtype=points.dtype)
    return points * torch.tensor([sx, sy], dtype=points.dtype)


__all__ = ["Preview", "jpeg_preview", "to_photo_pixels"]
