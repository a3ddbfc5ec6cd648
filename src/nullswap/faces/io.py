"""Image input/output with Pillow: every common format to RGB float [0, 1], and back with metadata kept.

Reading honours EXIF orientation and converts grayscale, palette, RGBA (alpha kept aside), CMYK and 16-bit images to
RGB. Writing keeps the format, ICC profile and EXIF (orientation reset to 1), optionally without GPS tags.
"""

from __future__ import annotations

import io as _io
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from nullswap.checks import check_image_batch
from nullswap.errors import ImageReadError, ImageWriteError

log = logging.getLogger(__name__)

#: Refuse images above this many pixels (decompression-bomb guard); Pillow's own limit is 89.5 MP.
MAX_PIXELS = 100_000_000
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
_EXIF_ORIENTATION = 0x0112
_EXIF_GPS_IFD = 0x8825


@dataclass
class LoadedImage:
    """An image read from disk.

    Attributes:
        tensor: ``(3, H, W)`` float32 RGB in [0, 1], upright (EXIF orientation applied).
        alpha: ``(H, W)`` float32 alpha in [0, 1] when the file had transparency, else ``None``.
        format: Pillow format name (``"JPEG"``, ``"PNG"``, ...).
        icc_profile: the embedded ICC profile bytes, if any.
        exif: the EXIF block (``PIL.Image.Exif``) with orientation already applied to the pixels.
        bit_depth: 8 or 16 bits per channel in the source.
        path: where it came from.
        info: other Pillow info entries worth keeping on write (dpi, JPEG quality hints).
    """

    tensor: torch.Tensor
    alpha: torch.Tensor | None = None
    format: str | None = None
    icc_profile: bytes | None = None
    exif: Image.Exif | None = None
    bit_depth: int = 8
    path: Path | None = None
    info: dict = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return int(self.tensor.shape[1]), int(self.tensor.shape[2])


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """Whether the file name has a supported image extension."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _to_float_rgb(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Convert any Pillow mode to (H,W,3) float32 RGB, optional (H,W) alpha, source bit depth."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(img, dtype=np.float64)
        scale = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        g = np.clip(a / scale, 0, 1).astype(np.float32)
        return np.repeat(g[:, :, None], 3, axis=2), None, 16 if scale > 255 else 8
    if mode == "F":
        g = np.clip(np.asarray(img, dtype=np.float32), 0, 1)
        return np.repeat(g[:, :, None], 3, axis=2), None, 32
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        arr = np.asarray(rgba, dtype=np.float32) / 255.0
        return arr[:, :, :3].copy(), arr[:, :, 3].copy(), 8
    if mode == "CMYK":
        # Pillow's CMYK->RGB is naive; use the embedded profile when there is one.
        icc = img.info.get("icc_profile")
        if icc:
            try:
                from PIL import ImageCms

                src = ImageCms.ImageCmsProfile(_io.BytesIO(icc))
                dst = ImageCms.createProfile("sRGB")
                img = ImageCms.profileToProfile(img, src, dst, outputMode="RGB")
            except Exception as e:  # noqa: BLE001 - fall back to the plain conversion
                log.debug("CMYK ICC conversion failed (%s); using plain conversion", e)
                img = img.convert("RGB")
        else:
            img = img.convert("RGB")
        return np.asarray(img, dtype=np.float32) / 255.0, None, 8
    if mode == "RGB":
        return np.asarray(img, dtype=np.float32) / 255.0, None, 8
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0, None, 8


def read_image(path: str | os.PathLike[str]) -> LoadedImage:
    """Read an image file as upright RGB float in [0, 1].

    Raises:
        ImageReadError: for a missing, empty, non-image, truncated or oversized file (the message names the file).
    """
    p = Path(path)
    if not p.is_file():
        raise ImageReadError(p, "no such file")
    if p.stat().st_size == 0:
        raise ImageReadError(p, "the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise ImageReadError(p, f"{w}x{h} = {w * h} pixels exceeds the limit of {MAX_PIXELS}")
                im.load()  # forces a full decode: truncated files fail here
                fmt = im.format
                icc = im.info.get("icc_profile")
                exif = im.getexif()
                info = {k: im.info[k] for k in ("dpi",) if k in im.info}
                upright = ImageOps.exif_transpose(im) or im
                rgb, alpha, depth = _to_float_rgb(upright)
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageReadError(p, f"decompression bomb refused ({e})") from e
    except UnidentifiedImageError as e:
        raise ImageReadError(p, "not an image file (format not recognised)") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(p, f"corrupt or truncated image ({e})") from e
    if exif is not None and _EXIF_ORIENTATION in exif:
        exif[_EXIF_ORIENTATION] = 1
    t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous()
    a = torch.from_numpy(alpha) if alpha is not None else None
    return LoadedImage(t, a, fmt, icc, exif, depth, p, info)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """``(3,H,W)`` float [0,1] -> ``(H,W,3)`` uint8 with round-to-nearest (exact inverse of ``/255`` on 8-bit data)."""
    check_image_batch(image.unsqueeze(0), "image", check_range=False)
    return (image.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


_FORMAT_BY_EXT = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
                  ".tiff": "TIFF"}


def write_image(
    path: str | os.PathLike[str],
    image: torch.Tensor,
    *,
    like: LoadedImage | None = None,
    alpha: torch.Tensor | None = None,
    strip_gps: bool = False,
    quality: int = 95,
    overwrite: bool = False,
) -> Path:
    """Write an RGB float image, keeping the metadata of ``like`` (the source).

    Args:
        path: destination; its extension chooses the format (falls back to ``like.format``).
        image: ``(3,H,W)`` float in [0,1].
        like: the source image whose ICC profile, EXIF (orientation reset to 1) and alpha are kept.
        alpha: alpha channel to write (defaults to ``like.alpha``); dropped for formats without alpha (JPEG).
        strip_gps: remove the EXIF GPS block.
        quality: JPEG/WebP quality. Choice: 95 with 4:4:4 chroma keeps a cloak's high frequencies better than the
            library default of 75.
        overwrite: allow replacing an existing file (off: refusing protects originals).

    Raises:
        ImageWriteError: destination exists (and ``overwrite`` is off), folder not writable, or unknown format.
    """
    p = Path(path)
    if p.exists() and not overwrite:
        raise ImageWriteError(p, "file exists (refusing to overwrite)")
    fmt = _FORMAT_BY_EXT.get(p.suffix.lower()) or (like.format if like else None)
    if fmt is None:
        raise ImageWriteError(p, f"unknown image format for extension {p.suffix!r}")
    arr = to_uint8(image)
    a = alpha if alpha is not None else (like.alpha if like is not None else None)
    if a is not None and fmt in ("PNG", "WEBP", "TIFF"):
        a8 = (a.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        im = Image.fromarray(np.dstack([arr, a8]), "RGBA")
    else:
        im = Image.fromarray(arr, "RGB")
    kwargs: dict = {}
    if like is not None:
        if like.icc_profile:
            kwargs["icc_profile"] = like.icc_profile
        if like.exif is not None and len(like.exif):
            exif = Image.Exif()
            exif.load(like.exif.tobytes())
            if _EXIF_ORIENTATION in exif:
                exif[_EXIF_ORIENTATION] = 1
            if strip_gps and _EXIF_GPS_IFD in exif:
                del exif[_EXIF_GPS_IFD]
            if fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
                kwargs["exif"] = exif.tobytes()
        if "dpi" in like.info:
            kwargs["dpi"] = like.info["dpi"]
    if fmt == "JPEG":
        kwargs.update(quality=quality, subsampling=0)
    elif fmt == "WEBP":
        kwargs.update(quality=quality)
    tmp = p.with_name(f".{p.name}.part")
    try:
        im.save(tmp, format=fmt, **kwargs)
        os.replace(tmp, p)
    except PermissionError as e:
        raise ImageWriteError(p, f"permission denied ({e})") from e
    except OSError as e:
        raise ImageWriteError(p, str(e)) from e
    finally:
        if tmp.exists():
            tmp.unlink(missing_ok=True)
    return p
