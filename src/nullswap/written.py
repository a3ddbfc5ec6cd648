"""The pixels a protected photo's file gives back, so the verdict is on what is written (issue 15).

A face verified on the in-memory photo is not the face a reader of the output file sees: a JPEG output re-quantises
the changed blocks with the input's tables (for PGD the written file's mean cosine was up to +0.024 higher), a PNG
rounds to 8 bits. :func:`written_region` returns, for the region of the photo the verifiers look at, exactly the
pixels :func:`~nullswap.faces.io.read_image` gets back from the file :meth:`ProtectedImage.save` writes:

* JPEG source (the usual photo): the output is encoded here, once, with the coefficient-copying writer
  (:func:`~nullswap.faces.jpeg.encode_protected_jpeg`, as :func:`~nullswap.faces.io.write_image` does), its bytes are
  decoded as :func:`read_image` decodes them, and the bytes are kept (:class:`EncodedPhoto`) so that saving writes
  them instead of encoding a second time. The cost moves from the save to the verification, plus one decode.
* 8-bit RGB(A) into a lossless format (PNG, BMP, lossless TIFF/WebP): the 8-bit rounding, computed on the region
  (exact: the file holds ``round(255 x)`` and is read back as ``/ 255``).
* Anything else (greyscale, 16-bit, palette/GIF, lossy WebP/AVIF, a JPEG the coefficient writer refuses): the whole
  photo is written to a temporary file and read back (:func:`~nullswap.faces.io.as_written`): exact, one extra
  encode.
* No source (a tensor): the 8-bit rounding (what any 8-bit lossless file of it holds).

Cost (process CPU seconds, 1 thread, measured 2026-11-29; wall times on the loaded development VM are several times
larger): the encode is not new, it moves from the save to the verification and the
save then only writes the bytes. New is one decode of the output: 0.011 s for a 1-MP photo, 0.095 s for a 12-MP one
(4000 x 3000, one face whose window covers 2400 x 2400 px: 69,510 of 281,500 blocks re-encoded). The encode itself
costs 0.055 s at 1 MP (patched into a copy) and 1.05 s at 12 MP patched in place (0.44 s + 0.08 s for the copy when
patched into a copy: :data:`COPY_MAX_PIXELS`). Since 2026-11-29 the encode reads, patches and compares only the MCUs
under the face windows (:func:`encode_patched`): no patched copy of the photo and no decode of the source, the same
bytes. Since 2026-11-30 its BLAS products stay on the calling thread (OpenBLAS's own threads, competing with torch's
on 2 cores, made the 12-MP encode ~1.5x slower at 2 threads), each strip is compared and transformed in one pass, and
libjpeg reads the source's coefficients on a helper thread meanwhile: the same bytes. With ``until_protected`` every
re-verification encodes again; ``--keep-gps`` sets the protector's
``strip_gps`` up front, so the save writes the verdict's bytes.

The verdict is for the source's own format; saving under an extension that converts the photo to another format
(``photo.jpg`` -> ``out.png``) writes that format, whose pixels were not the ones verified.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image, ImageOps

from nullswap.errors import ImageWriteError

if TYPE_CHECKING:
    from nullswap.faces.io import LoadedImage
    from nullswap.faces.pasteback import FacePatch

log = logging.getLogger(__name__)

#: Lossless formats whose 8-bit RGB(A) output is the 8-bit rounding of the image.
LOSSLESS_8BIT = ("PNG", "BMP", "TIFF", "WEBP")

#: JPEG: photos up to this many pixels are compared against the clean float pixels, larger ones against the
#: source's 8-bit decode (``round(255 x)``, no decode needed): the bytes the earlier patched-copy / in-place paths
#: wrote. Other formats needing the whole photo: patched into a copy up to this size, else in place.
COPY_MAX_PIXELS = 4_000_000

#: Region ``(x0, y0, x1, y1)`` in photo pixels.
Region = tuple[int, int, int, int]


@dataclass
class EncodedPhoto:
    """An output file encoded in memory (JPEG), to be written as is by :func:`save_encoded`.

    Attributes:
        data: the file's bytes.
        format: its Pillow format (``"JPEG"``).
        strip_gps: whether GPS was stripped (a save asking otherwise encodes again; the pixels are the same).
        record: what :func:`~nullswap.faces.io.write_image` records for the file (blocks, sizes, notes).
        seconds: time spent encoding.
    """

    data: bytes
    format: str
    strip_gps: bool
    record: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def quantize8(x: torch.Tensor) -> torch.Tensor:
    """``round(255 x) / 255`` in float32: what an 8-bit file of ``x`` (in [0,1]) is read back as."""
    return (x.detach().float().clamp(0, 1) * 255.0).round().div_(255.0)


def _lossless_8bit_rgb(like: LoadedImage) -> bool:
    """Whether :func:`write_image` writes ``like``'s output as 8-bit RGB(A) in a lossless format."""
    fmt = "JPEG" if like.format == "MPO" else like.format
    if fmt not in LOSSLESS_8BIT or like.bit_depth != 8 or like.greyscale or like.mode not in ("RGB", "RGBA"):
        return False
    if fmt == "WEBP":
        return bool(like.info.get("lossless"))
    return True


def apply_windows(canvas: torch.Tensor, patches: Sequence[FacePatch], origin: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Write the patches' pixels (``box`` = (x0, y0, x1, y1), ``pixels`` (3, y1-y0, x1-x0)) into ``canvas`` in place.

    ``canvas`` is the photo or its region whose top-left pixel is ``origin`` = (x, y); the parts of a window outside
    it are left out. The windows are applied in order (a later one already holds the earlier ones' changes).
    """
    ox, oy = origin
    h, w = int(canvas.shape[-2]), int(canvas.shape[-1])
    for p in patches:
        x0, y0, x1, y1 = (int(v) for v in p.box)
        ax0, ay0, ax1, ay1 = max(x0, ox), max(y0, oy), min(x1, ox + w), min(y1, oy + h)
        if ax1 > ax0 and ay1 > ay0:
            canvas[:, ay0 - oy : ay1 - oy, ax0 - ox : ax1 - ox] = p.pixels[
                :, ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0
            ].to(canvas.device, canvas.dtype)
    return canvas


def _jpeg_source(like: LoadedImage) -> bool:
    return like.raw is not None and like.format in ("JPEG", "MPO")


def decode_region(data: bytes, region: Region | None = None) -> torch.Tensor:
    """``(3,h,w)`` float32 pixels of an encoded file in ``region``, exactly as :func:`read_image` reads them.

    Upright (EXIF orientation applied), RGB, ``/ 255`` (8-bit files; what :func:`encode_protected_jpeg` writes).
    """
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        ImageOps.exif_transpose(im, in_place=True)  # no copy of the whole photo when it is already upright
        part = im if region is None else im.crop(region)
        rgb = part if part.mode == "RGB" else part.convert("RGB")
        u8 = np.asarray(rgb)  # the region's bytes; the full decode is freed on leaving the block
    del part, rgb
    from nullswap.faces.io import _float_chw

    return _float_chw(u8)  # in row strips: exactly the float32 u / 255 read_image gives


def _record(res: Any, like: LoadedImage) -> dict[str, Any]:
    """What :func:`write_image` records for a file the coefficient writer wrote (``res``: its JpegWriteResult)."""
    record = {
        **res.to_dict(),
        "format": "JPEG",
        "notes": list(res.notes),
        "bit_depth": 8,
        "mode": "L" if like.greyscale else "RGB",
    }
    if like.greyscale:
        record["notes"].append("greyscale output: only the cloak's luminance is kept, its colour part is lost")
    return record


def encode_jpeg(
    image: torch.Tensor, like: LoadedImage, *, strip_gps: bool = True, decode_original: bool = False
) -> EncodedPhoto | None:
    """The bytes :func:`write_image` writes for ``image`` with a JPEG source ``like`` (``None``: it cannot).

    Args:
        image: ``(3,H,W)`` the protected photo, upright, in [0,1].
        like: the JPEG source (``raw`` bytes, and ``tensor``, its decode).
        strip_gps: drop GPS (as the save will).
        decode_original: find the changed blocks against a fresh decode of ``like.raw`` instead of ``like.tensor``
            (when ``image`` is ``like.tensor`` patched in place).
    """
    from nullswap.errors import UnsupportedJpegError
    from nullswap.faces.jpeg import encode_protected_jpeg

    if not _jpeg_source(like) or tuple(image.shape) != (3, *like.size):
        return None
    t = time.perf_counter()
    try:
        original = None if decode_original else like.tensor
        data, res = encode_protected_jpeg(like.raw, image, original, strip_gps=strip_gps)
    except UnsupportedJpegError as e:
        log.debug("coefficient JPEG writer refused the source (%s): verifying on a written copy", e)
        return None
    return EncodedPhoto(data, "JPEG", strip_gps, _record(res, like), time.perf_counter() - t)


def encode_patched(
    clean: torch.Tensor | None,
    patches: Sequence[FacePatch],
    like: LoadedImage,
    *,
    strip_gps: bool = True,
    compare: str | None = None,
) -> EncodedPhoto | None:
    """The bytes :func:`write_image` writes for ``clean`` with ``patches`` written into it (``None``: it cannot).

    Only the blocks under the patches' boxes are read and compared
    (:func:`~nullswap.faces.jpeg.encode_patched_jpeg`): no patched copy of the photo, no decode of the source.

    Args:
        clean: ``(3,H,W)`` the clean photo (``like.tensor``, or the same pixels elsewhere); not modified. ``None``
            or any tensor when ``like`` keeps its 8-bit pixels (``like.rgb8``): they are read instead, window by
            window (the same bytes).
        patches: the faces' windows.
        like: the JPEG source.
        strip_gps: drop GPS (as the save will).
        compare: ``"float"`` (against ``like.tensor``) or ``"decode"`` (against the source's 8-bit decode, what
            :func:`write_image` with ``original="decode"`` does); default: ``"float"`` up to
            :data:`COPY_MAX_PIXELS`, else ``"decode"`` (the bytes the patched-copy / in-place paths wrote).
    """
    from nullswap.errors import UnsupportedJpegError
    from nullswap.faces.jpeg import encode_patched_jpeg

    if not _jpeg_source(like) or (clean is not None and tuple(clean.shape) != (3, *like.size)):
        return None
    if clean is None and like.rgb8 is None:
        clean = like.tensor
    h, w = like.size
    if compare is None:
        compare = "float" if w * h <= COPY_MAX_PIXELS else "decode"
    # rgb8 / 255 is like.tensor: the same bytes without a float photo
    src: torch.Tensor | np.ndarray = like.rgb8 if like.rgb8 is not None else (
        like.tensor if compare == "float" or clean is None else clean)
    t = time.perf_counter()
    try:
        data, res = encode_patched_jpeg(like.raw, src, patches, compare=compare,  # type: ignore[arg-type]
                                        strip_gps=strip_gps)
    except UnsupportedJpegError as e:
        log.debug("coefficient JPEG writer refused the source (%s): verifying on a written copy", e)
        return None
    return EncodedPhoto(data, "JPEG", strip_gps, _record(res, like), time.perf_counter() - t)


def written_region(
    clean: torch.Tensor,
    patches: Sequence[FacePatch],
    like: LoadedImage | None,
    region: Region,
    *,
    strip_gps: bool = True,
) -> tuple[torch.Tensor, EncodedPhoto | None]:
    """The protected photo's pixels in ``region`` as the written file gives them back (module doc).

    Args:
        clean: ``(3,H,W)`` the clean photo (``like.tensor`` for a file, or ``like``'s
            :meth:`~nullswap.faces.io.LoadedImage.float_canvas`, which holds the photo only in the faces' region). A
            JPEG is encoded from the blocks under the patches only (:func:`encode_patched`); other formats that need
            the whole photo patch a copy (up to :data:`COPY_MAX_PIXELS`; a float canvas: always a copy from the
            source's pixels) or ``clean`` in place, restored before returning.
        patches: the faces' windows (``box``, ``pixels``: :func:`~nullswap.faces.pasteback.face_patches`'s).
        like: the source (``None``: a tensor, 8-bit rounding).
        region: ``(x0, y0, x1, y1)``.
        strip_gps: as the save will.

    Returns:
        ``(pixels (3, y1-y0, x1-x0), encoded)``: ``encoded`` holds the JPEG bytes to save, else ``None``.
    """
    x0, y0, x1, y1 = region
    if like is None or _lossless_8bit_rgb(like):
        return quantize8(apply_windows(clean[:, y0:y1, x0:x1].clone(), patches, (x0, y0))), None
    from nullswap.faces.io import as_written

    if _jpeg_source(like):
        # the bytes the earlier patched-copy path (float compare) and in-place path (decode compare) wrote
        big = int(clean.shape[-1]) * int(clean.shape[-2]) > COPY_MAX_PIXELS
        inplace = like.holds(clean)
        enc = encode_patched(clean, patches, like, strip_gps=strip_gps,
                             compare="decode" if big and inplace else "float")
        if enc is not None:
            return decode_region(enc.data, region).to(clean.device), enc
    if like.partial(clean):  # the canvas holds only the faces' region: the whole photo from the source's pixels
        full = as_written(apply_windows(like.float_copy(), patches), like)
    elif int(clean.shape[-1]) * int(clean.shape[-2]) <= COPY_MAX_PIXELS:
        full = as_written(apply_windows(clean.clone(), patches), like)
    else:
        saved = [clean[:, p.box[1] : p.box[3], p.box[0] : p.box[2]].clone() for p in patches]
        try:
            apply_windows(clean, patches)
            full = as_written(clean, like)
        finally:
            for p, c in zip(patches, saved, strict=True):
                clean[:, p.box[1] : p.box[3], p.box[0] : p.box[2]] = c
    return full[:, y0:y1, x0:x1].contiguous(), None


def written_pixels(
    image: torch.Tensor, like: LoadedImage | None, *, strip_gps: bool = True
) -> tuple[torch.Tensor, EncodedPhoto | None]:
    """The whole protected photo ``image`` as its written file gives it back (see :func:`written_region`)."""
    if like is None or _lossless_8bit_rgb(like):
        return quantize8(image), None
    enc = encode_jpeg(image, like, strip_gps=strip_gps) if _jpeg_source(like) else None
    if enc is not None:
        return decode_region(enc.data).to(image.device), enc
    from nullswap.faces.io import as_written

    return as_written(image, like), None


def save_encoded(
    path: str | os.PathLike[str], enc: EncodedPhoto, *, overwrite: bool = False, record: dict[str, Any] | None = None
) -> Path:
    """Write an :class:`EncodedPhoto` through a ``.part`` file (as :func:`write_image` writes).

    Raises:
        ImageWriteError: the destination exists (without ``overwrite``) or cannot be written.
    """
    from nullswap.faces.atomic import write_bytes_atomic

    p = Path(path)
    if p.exists() and not overwrite:
        raise ImageWriteError(p, "file exists (refusing to overwrite)")
    write_bytes_atomic(p, enc.data)
    if record is not None:
        record.update(enc.record, path=str(p), notes=list(enc.record.get("notes", [])))
    rec = enc.record
    log.info(
        "%s: %s of %s blocks re-encoded, %s -> %s bytes (encoded for the verdict, written as is)",
        p.name,
        rec.get("blocks_reencoded"),
        rec.get("blocks"),
        rec.get("input_bytes"),
        rec.get("output_bytes"),
    )
    return p


__all__ = [
    "COPY_MAX_PIXELS",
    "LOSSLESS_8BIT",
    "EncodedPhoto",
    "decode_region",
    "encode_jpeg",
    "encode_patched",
    "quantize8",
    "save_encoded",
    "written_pixels",
    "written_region",
]
