"""Image input/output with Pillow: every format Pillow reads to RGB float [0, 1], and back in the source's own format.

Reading honours EXIF orientation and converts grayscale, palette, RGBA (alpha kept aside), CMYK and 16-bit images to
RGB; 16-bit colour PNG/TIFF (which Pillow reduces to 8 bits) are read with OpenCV at full depth. Animated images and
multi-page TIFFs are refused with :class:`~nullswap.errors.UnsupportedImageError` ("unsupported: animated ...";
protect the frames as separate images). Photos above the decompression-bomb limit (:data:`MAX_PIXELS`, Pillow's own
89.5 MP by default) are refused unless the limit is raised (``read_image(..., max_pixels=N)``, :func:`set_max_pixels`
or ``nullswap protect --max-pixels N``). An 8-bit RGB/greyscale photo is kept as uint8 (``LoadedImage.rgb8``,
3 bytes per pixel); its float ``tensor`` (12 bytes per pixel) is built in row strips on first read, and the protect
pipeline reads only the faces' windows as float (``LoadedImage.window``, ``LoadedImage.float_canvas``).
:func:`to_uint8` works in row strips too.

Writing: the *real* format of the source decides the output (a PNG named ``.jpg`` stays PNG bytes under its name;
the extension decides only when it names a different format than the source's extension, i.e. a deliberate
conversion). JPEG sources go through :mod:`nullswap.faces.jpeg` (only the blocks that changed are re-encoded, the
rest are the source's DCT coefficients, so pixels outside the faces decode bit-identically); CMYK and other JPEGs it
does not handle are re-encoded whole (logged and noted). 16-bit PNG/TIFF stay 16-bit, greyscale stays greyscale (the
cloak's colour part is lost: noted), alpha, ICC profile and EXIF (orientation reset to 1 for re-encoded pixels) are
kept, optionally without GPS tags. A format Pillow reads but cannot write is written as PNG (``NAME.png``, noted).
"""

from __future__ import annotations

import functools
import io as _io
import logging
import os
import re
import struct
import threading
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from nullswap.checks import check_image_batch
from nullswap.errors import ImageReadError, ImageWriteError, InputError, UnsupportedImageError, UnsupportedJpegError
from nullswap.faces.atomic import atomic_write

log = logging.getLogger(__name__)

#: Refuse images above this many pixels (decompression-bomb guard): Pillow's own limit (89,478,485 pixels, 89.5 MP)
#: unless raised with :func:`set_max_pixels` or ``read_image(..., max_pixels=N)``.
MAX_PIXELS: int = int(Image.MAX_IMAGE_PIXELS or 89_478_485)
#: Rows per strip in the strip-wise float <-> uint8 conversions (bounded temporaries for large photos).
_STRIP_ROWS = 256
_BOMB_LOCK = threading.Lock()
#: Common photo extensions; :func:`image_extensions` adds every other extension the installed Pillow opens.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".avif",
                    ".mpo")
#: Pillow formats not picked up as photos: stubs that need an external handler (BUFR, GRIB, HDF5, WMF), vector or
#: video formats (EPS needs Ghostscript, MPEG), scientific data (FITS) and metadata-only files (IPTC).
_NOT_PHOTOS = frozenset({"BUFR", "GRIB", "HDF5", "WMF", "EPS", "MPEG", "FITS", "IPTC", "PDF"})
_EXIF_ORIENTATION = 0x0112
_EXIF_GPS_IFD = 0x8825
_GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


@dataclass
class LoadedImage:
    """An image read from disk.

    Attributes:
        tensor: ``(3, H, W)`` float32 RGB in [0, 1], upright (EXIF orientation applied). For an 8-bit RGB or
            greyscale photo it is built from :attr:`rgb8` on first read (exactly ``rgb8 / 255``) and kept; the
            protect pipeline never reads it and converts only the faces' windows (:meth:`window`,
            :meth:`float_canvas`), so a photo costs 3 bytes per pixel instead of 15.
        alpha: ``(H, W)`` float32 alpha in [0, 1] when the file had transparency, else ``None``.
        format: Pillow format name (``"JPEG"``, ``"PNG"``, ...).
        icc_profile: the embedded ICC profile bytes, if any.
        exif: the EXIF block (``PIL.Image.Exif``) with orientation already applied to the pixels.
        bit_depth: 8 or 16 bits per channel in the source.
        path: where it came from.
        info: other entries worth keeping on write (``dpi``; TIFF ``compression``; WebP ``lossless``).
        mode: the source's Pillow mode (``"L"``, ``"RGB"``, ``"I;16"``, ...; ``"RGB;16"``/``"RGBA;16"``/``"LA;16"``
            for 16-bit images read with OpenCV).
        orientation: the source's EXIF orientation (the pixels in ``tensor`` are already upright).
        raw: the file's bytes, kept for JPEG sources (the coefficient-copying writer needs them).
        rgb8: ``(H, W, 3)`` uint8 upright RGB of an 8-bit RGB or greyscale photo (``None`` for other modes, whose
            ``tensor`` is decoded directly).
    """

    _tensor: torch.Tensor | None
    alpha: torch.Tensor | None = None
    format: str | None = None
    icc_profile: bytes | None = None
    exif: Image.Exif | None = None
    bit_depth: int = 8
    path: Path | None = None
    info: dict = field(default_factory=dict)
    mode: str | None = None
    orientation: int = 1
    raw: bytes | None = field(default=None, repr=False)
    rgb8: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self._tensor is None and self.rgb8 is None:
            raise InputError("LoadedImage: expected a float tensor or rgb8 pixels, got neither")
        if self.rgb8 is not None and (self.rgb8.dtype != np.uint8 or self.rgb8.ndim != 3 or self.rgb8.shape[2] != 3):
            raise InputError(f"rgb8: expected an (H,W,3) uint8 array, got {self.rgb8.dtype} {self.rgb8.shape}")

    @property
    def tensor(self) -> torch.Tensor:
        """``(3,H,W)`` float32 RGB in [0, 1] (built from :attr:`rgb8` on first read, then kept)."""
        if self._tensor is None:
            assert self.rgb8 is not None  # __post_init__
            self._tensor = _float_chw(self.rgb8)
        return self._tensor

    @tensor.setter
    def tensor(self, value: torch.Tensor) -> None:
        self._tensor = value

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        if self.rgb8 is not None:
            return int(self.rgb8.shape[0]), int(self.rgb8.shape[1])
        assert self._tensor is not None
        return int(self._tensor.shape[1]), int(self._tensor.shape[2])

    @property
    def greyscale(self) -> bool:
        """Whether the source has no colour (its output is written greyscale)."""
        return self.mode is not None and (self.mode in _GREY_MODES or self.mode == "LA;16")

    def holds(self, image: torch.Tensor) -> bool:
        """Whether ``image`` is this photo's :attr:`tensor` or a :meth:`float_canvas` of it (never builds either)."""
        return any(t is not None and t.data_ptr() == image.data_ptr() and t.shape == image.shape
                   for t in (self._tensor, self._canvas_ref()))

    def _canvas_ref(self) -> torch.Tensor | None:
        ref = self.__dict__.get("_canvas")
        return ref() if ref is not None else None

    def partial(self, image: torch.Tensor) -> bool:
        """Whether ``image`` is a :meth:`float_canvas` (the photo only inside its filled windows)."""
        c = self._canvas_ref()
        return c is not None and c.data_ptr() == image.data_ptr()

    def window(self, box: tuple[int, int, int, int]) -> torch.Tensor:
        """``(3, y1-y0, x1-x0)`` float32 of :attr:`tensor` in ``box`` = (x0, y0, x1, y1), without building it."""
        x0, y0, x1, y1 = box
        if self.rgb8 is None:
            return self.tensor[:, y0:y1, x0:x1].clone()
        return _float_chw(self.rgb8[y0:y1, x0:x1])

    def float_copy(self) -> torch.Tensor:
        """A new ``(3,H,W)`` float32 copy of the photo (:attr:`tensor` when built, else from :attr:`rgb8`; not kept)."""
        if self._tensor is not None or self.rgb8 is None:
            return self.tensor.clone()
        return _float_chw(self.rgb8)

    def float_canvas(self) -> torch.Tensor:
        """A ``(3,H,W)`` float32 tensor that costs memory only where :meth:`fill` wrote the photo into it.

        Its memory is an anonymous mapping whose pages the kernel commits on the first write (pages only read map
        the shared zero page), so the full-size tensor works with code that indexes the whole photo
        (:func:`~nullswap.faces.alignment.align_faces`, :func:`~nullswap.faces.pasteback.face_patches` keep their
        exact arithmetic) while only the faces' windows are resident. It holds the photo only inside the filled
        boxes (zeros elsewhere): the caller must read nothing outside them. The photo keeps a weak reference to it
        (:meth:`holds`, :meth:`partial`).
        """
        import mmap
        import weakref

        if self._tensor is not None:
            return self._tensor
        h, w = self.size
        buf = mmap.mmap(-1, max(1, 3 * h * w * 4))
        arr = np.frombuffer(buf, dtype=np.float32, count=3 * h * w).reshape(3, h, w)
        canvas = torch.from_numpy(arr)
        self.__dict__["_canvas"] = weakref.ref(canvas)
        return canvas

    def fill(self, canvas: torch.Tensor, box: tuple[int, int, int, int]) -> None:
        """Write the photo's pixels in ``box`` = (x0, y0, x1, y1) (clipped to the photo) into ``canvas``."""
        h, w = self.size
        x0, y0, x1, y1 = max(int(box[0]), 0), max(int(box[1]), 0), min(int(box[2]), w), min(int(box[3]), h)
        if x1 <= x0 or y1 <= y0 or self._tensor is canvas:
            return
        if self.rgb8 is None:
            canvas[:, y0:y1, x0:x1] = self.tensor[:, y0:y1, x0:x1]
        else:  # converted straight into the canvas: no region-sized temporary (a 12-MP close-up's is ~40 MB)
            _float_chw(self.rgb8[y0:y1, x0:x1], out=canvas[:, y0:y1, x0:x1])


@functools.lru_cache(maxsize=1)
def _pillow_extensions() -> dict[str, str]:
    """Extension -> Pillow format for every format the installed Pillow registers (plugins loaded once)."""
    Image.init()
    return {ext.lower(): fmt for ext, fmt in Image.registered_extensions().items()}


def image_extensions() -> tuple[str, ...]:
    """Extensions picked up as photos: :data:`IMAGE_EXTENSIONS` plus every format the installed Pillow opens.

    Formats in ``_NOT_PHOTOS`` (stubs, vector, video, scientific data) are left out.
    """
    extra = sorted(e for e, f in _pillow_extensions().items() if f in Image.OPEN and f not in _NOT_PHOTOS)
    return tuple(dict.fromkeys([*IMAGE_EXTENSIONS, *extra]))


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """Whether the file name has an extension of a format the installed Pillow reads (see :func:`image_extensions`)."""
    suffix = Path(path).suffix.lower()
    return suffix in IMAGE_EXTENSIONS or suffix in image_extensions()


def format_of_extension(path: str | os.PathLike[str]) -> str | None:
    """The Pillow format an extension names (``".jpg"`` -> ``"JPEG"``), ``None`` when unknown."""
    suffix = Path(path).suffix.lower()
    if suffix == ".mpo":
        return "JPEG"
    return _pillow_extensions().get(suffix)


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


def set_max_pixels(limit: int) -> None:
    """Raise (or lower) the decompression-bomb limit of :func:`read_image` for this process.

    Pillow's own guard (``PIL.Image.MAX_IMAGE_PIXELS``, which also protects the draft-mode detection copy) is set to
    the same limit.

    Args:
        limit: the largest photo accepted, in pixels (width x height).

    Raises:
        InputError: ``limit`` is not a positive int.
    """
    global MAX_PIXELS
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InputError(f"max_pixels: expected an int >= 1 (pixels), got {limit!r}")
    MAX_PIXELS = limit
    with _BOMB_LOCK:
        Image.MAX_IMAGE_PIXELS = limit


def _allow_in_pillow(limit: int) -> None:
    """Make sure Pillow's own guard does not refuse a photo of up to ``limit`` pixels (it only ever goes up here)."""
    with _BOMB_LOCK:
        current = Image.MAX_IMAGE_PIXELS
        if current is not None and current < limit:
            Image.MAX_IMAGE_PIXELS = limit


def _bomb_message(pixels: int | None, size: tuple[int, int] | None, limit: int) -> str:
    what = f"{size[0]}x{size[1]} = {pixels:,} pixels" if size and pixels else (
        f"{pixels:,} pixels" if pixels else "the image")
    return (f"{what} exceeds the decompression-bomb limit of {limit:,} pixels; expected at most {limit:,} (allow "
            f"larger photos with --max-pixels N)")


def _float_chw(arr: np.ndarray, out: torch.Tensor | None = None) -> torch.Tensor:
    """``(H,W,3)`` uint8 -> ``(3,H,W)`` float32 in [0,1] without full-size temporaries (exactly ``x / 255``).

    ``out``: a ``(3,H,W)`` float32 tensor (a view is fine) written in place and returned (default: a new one).
    """
    h, w = arr.shape[:2]
    if out is None:
        out = torch.empty((3, h, w), dtype=torch.float32)
    elif tuple(out.shape) != (3, h, w) or out.dtype != torch.float32:
        raise InputError(f"out: expected a (3, {h}, {w}) float32 tensor, got {tuple(out.shape)} {out.dtype}")
    with warnings.catch_warnings():  # a read-only decode (mmap, frombuffer) is only read here
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
        src = torch.from_numpy(arr)
    for y in range(0, h, _STRIP_ROWS):  # in row strips, on torch's threads (2x numpy's one thread on 2 cores)
        o = out[:, y:y + _STRIP_ROWS]
        o.copy_(src[y:y + _STRIP_ROWS].permute(2, 0, 1))  # uint8 -> float32 straight from the HWC view: no temporary
        o.div_(255.0)  # IEEE float32 u / 255 (tests/faces/test_io.py checks all 256 values against numpy)
    return out


def _is_16bit_colour(data: bytes, im: Image.Image) -> bool:
    """Whether the file is a 16-bit colour (or 16-bit grey + alpha) PNG/TIFF, which Pillow reduces to 8 bits."""
    if im.format == "PNG" and data[12:16] == b"IHDR":
        return data[24] == 16 and data[25] in (2, 4, 6)  # bit depth 16; truecolour, grey+alpha, truecolour+alpha
    if im.format == "TIFF":
        bits = getattr(im, "tag_v2", {}).get(258)
        bits = bits if isinstance(bits, tuple) else (bits,)
        return len(bits) >= 2 and all(b == 16 for b in bits)
    return False


def _read_16bit(data: bytes, orientation: int) -> tuple[np.ndarray, np.ndarray | None, str]:
    """16-bit colour PNG/TIFF with OpenCV: upright ``(H,W,3)`` float RGB, alpha, and the mode name."""
    import cv2

    from nullswap.faces.jpeg import to_stored_orientation

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3:
        raise ValueError("OpenCV could not decode the 16-bit image")
    # upright: the inverse of the stored-layout transform (6 and 8 are each other's inverse, the rest involutions)
    arr = to_stored_orientation(arr, {6: 8, 8: 6}.get(orientation, orientation))
    f = arr.astype(np.float32) / 65535.0
    rgb = np.ascontiguousarray(f[:, :, 2::-1])
    alpha = np.ascontiguousarray(f[:, :, 3]) if arr.shape[2] == 4 else None
    grey = bool(np.array_equal(arr[:, :, 0], arr[:, :, 1]) and np.array_equal(arr[:, :, 1], arr[:, :, 2]))
    mode = ("LA;16" if grey and alpha is not None else "RGBA;16") if alpha is not None else "RGB;16"
    return rgb, alpha, mode


def _webp_lossless(data: bytes) -> bool:
    """Whether a WebP file's image is VP8L (lossless)."""
    return data[12:16] == b"VP8L" or (data[12:16] == b"VP8X" and b"VP8L" in data[30:4096] and b"VP8 " not in
                                      data[30:4096])


def read_image(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> LoadedImage:
    """Read an image file as upright RGB float in [0, 1].

    Any still image the installed Pillow reads is accepted (the format is sniffed from the bytes, not the name).

    Args:
        path: the file.
        max_pixels: refuse photos above this many pixels (decompression-bomb guard); default :data:`MAX_PIXELS`
            (Pillow's 89.5 MP unless raised with :func:`set_max_pixels`). A larger value also raises Pillow's own
            guard to it, process-wide.

    Raises:
        UnsupportedImageError: an animated image or a multi-page TIFF (``unsupported: animated ...``).
        ImageReadError: for a missing, empty, non-image, truncated or oversized file; the message names the file
            (an oversized one: the limit and ``--max-pixels``).
        InputError: ``max_pixels`` is not a positive int.
    """
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InputError(f"max_pixels: expected an int >= 1 (pixels), got {limit!r}")
    _allow_in_pillow(limit)
    p = Path(path)
    if not p.is_file():
        raise ImageReadError(p, "no such file")
    if p.stat().st_size == 0:
        raise ImageReadError(p, "the file is empty")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ImageReadError(p, f"cannot read the file ({e.strerror or e})") from e
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides, below
            with Image.open(_io.BytesIO(data)) as im:
                w, h = im.size
                if w * h > limit:
                    raise ImageReadError(p, _bomb_message(w * h, (w, h), limit))
                fmt = im.format
                frames = int(getattr(im, "n_frames", 1) or 1)
                if frames > 1 and fmt != "MPO":  # MPO: a camera JPEG with extra images; the primary one is the photo
                    what = (f"multi-page {fmt} ({frames} pages)" if fmt == "TIFF"
                            else f"animated {fmt} ({frames} frames)")
                    raise UnsupportedImageError(p, f"unsupported: {what}; expected a still image (protect the frames "
                                                   "as separate images)")
                im.load()  # forces a full decode: truncated files fail here
                icc = im.info.get("icc_profile")
                exif = im.getexif()
                orientation = int(exif.get(_EXIF_ORIENTATION, 1) or 1)
                info = {k: im.info[k] for k in ("dpi", "compression") if k in im.info}
                if fmt == "WEBP":
                    info["lossless"] = _webp_lossless(data)
                mode = im.mode
                if _is_16bit_colour(data, im):
                    rgb, alpha, mode = _read_16bit(data, orientation)
                    depth = 16
                else:
                    upright = ImageOps.exif_transpose(im) or im
                    if upright.mode in ("RGB", "L"):  # the common 8-bit photo: uint8 -> float in strips
                        u8 = np.asarray(upright if upright.mode == "RGB" else upright.convert("RGB"))
                        if upright is not im:
                            upright.close()
                        rgb, alpha, depth = u8, None, 8
                    else:
                        rgb, alpha, depth = _to_float_rgb(upright)
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        m = re.search(r"\((\d+) pixels\)", str(e))
        raise ImageReadError(p, _bomb_message(int(m.group(1)) if m else None, None, limit)) from e
    except UnidentifiedImageError as e:
        raise ImageReadError(p, "not an image file (format not recognised)") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(p, f"corrupt or truncated image ({e})") from e
    if exif is not None and _EXIF_ORIENTATION in exif:
        exif[_EXIF_ORIENTATION] = 1
    t: torch.Tensor | None = None
    u8: np.ndarray | None = None
    if rgb.dtype == np.uint8:  # kept as uint8: LoadedImage.tensor converts it on first read
        u8 = np.ascontiguousarray(rgb)  # read-only is fine: never written
    else:
        t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous()
    a = torch.from_numpy(alpha) if alpha is not None else None
    raw = data if fmt in ("JPEG", "MPO") else None
    return LoadedImage(t, a, fmt, icc, exif, depth, p, info, mode, orientation, raw, u8)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """``(3,H,W)`` float [0,1] -> ``(H,W,3)`` uint8 with round-to-nearest (exact inverse of ``/255`` on 8-bit data).

    Converted in row strips: the only full-size allocation is the uint8 result.
    """
    check_image_batch(image.unsqueeze(0), "image", check_range=False)
    src = image.detach()
    h, w = int(src.shape[1]), int(src.shape[2])
    out = torch.empty((h, w, 3), dtype=torch.uint8)
    for y in range(0, h, _STRIP_ROWS):
        strip = src[:, y:y + _STRIP_ROWS].float().cpu().clamp(0, 1).mul_(255.0).round_()
        out[y:y + _STRIP_ROWS] = strip.permute(1, 2, 0).to(torch.uint8)
    return out.numpy()


def jpeg_roundtrip(image: torch.Tensor, quality: int = 75) -> torch.Tensor:
    """Image(s) through a real JPEG encode and decode: Pillow's libjpeg, its default 4:2:0 chroma subsampling.

    The one JPEG round trip of the project: the protect report's re-compression of a whole photo (``q75``, as most
    sharing sites re-encode) and the robustness protocol's ``jpeg`` perturbation
    (:mod:`nullswap.evaluation.perturbations`). Pixels go through :func:`to_uint8` (clamped to [0,1], rounded to
    the nearest 8-bit value, in row strips). Kept on Pillow: torchvision's batched ``encode_jpeg``/``decode_jpeg``
    give the same pixels but torchvision 0.29 deprecates its image codecs.

    Args:
        image: ``(3,H,W)`` or ``(N,3,H,W)`` floating point, values in [0,1].
        quality: JPEG quality, 1 to 100.

    Returns:
        The decoded pixels in [0,1], the input's shape, device and dtype.

    Raises:
        InputError: a quality outside 1-100 or an image that is not ``(3,H,W)`` / ``(N,3,H,W)`` floating point.
    """
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise InputError(f"jpeg_roundtrip: expected an integer quality in [1, 100], got {quality!r}")
    if not isinstance(image, torch.Tensor) or image.ndim not in (3, 4):
        got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise InputError(f"jpeg_roundtrip: expected an image (3,H,W) or a batch (N,3,H,W), got {got}")
    batch = image if image.ndim == 4 else image.unsqueeze(0)
    out = np.empty((batch.shape[0], batch.shape[2], batch.shape[3], 3), dtype=np.uint8)
    for i, img in enumerate(batch):
        buf = _io.BytesIO()
        Image.fromarray(to_uint8(img)).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        with Image.open(buf) as im:
            out[i] = np.asarray(im.convert("RGB"))
    y = torch.from_numpy(out).permute(0, 3, 1, 2).to(device=image.device, dtype=image.dtype) / 255.0
    return y if image.ndim == 4 else y[0]


#: Lossless TIFF compressions Pillow writes; other sources (JPEG-in-TIFF, ...) are written with Adobe deflate.
_TIFF_LOSSLESS = ("raw", "tiff_lzw", "tiff_adobe_deflate", "tiff_deflate", "packbits")
#: Formats whose alpha channel is written.
_ALPHA_FORMATS = ("PNG", "WEBP", "TIFF", "AVIF")


def output_format(path: str | os.PathLike[str], like: LoadedImage | None = None) -> str | None:
    """The format :func:`write_image` writes to ``path``.

    The source's real format (``like.format``, sniffed from its bytes) wins unless ``path``'s extension names a
    different format than the source's own extension (a deliberate conversion, e.g. ``photo.jpg`` -> ``out.png``);
    without a source, or for an unknown extension, the other one decides. ``None``: neither is known.
    """
    ext_fmt = format_of_extension(path)
    if like is not None and like.format:
        src_fmt = "JPEG" if like.format == "MPO" else like.format
        if ext_fmt is None or like.path is None or ext_fmt == format_of_extension(like.path):
            return src_fmt
    return ext_fmt or (like.format if like is not None else None)


def _icc_space(icc: bytes | None) -> str | None:
    """An ICC profile's data colour space (``"RGB"``, ``"GRAY"``, ``"CMYK"``, ...)."""
    return icc[16:20].decode("latin-1").strip() if icc and len(icc) >= 20 else None


def _exif_bytes(like: LoadedImage, strip_gps: bool) -> bytes | None:
    """The source's EXIF for re-encoded pixels: orientation reset to 1, GPS removed when asked."""
    if like.exif is None or not len(like.exif):
        return None
    exif = Image.Exif()
    exif.load(like.exif.tobytes())
    if _EXIF_ORIENTATION in exif:
        exif[_EXIF_ORIENTATION] = 1
    if strip_gps and _EXIF_GPS_IFD in exif:
        del exif[_EXIF_GPS_IFD]
    return exif.tobytes()


def _luma(image: torch.Tensor) -> np.ndarray:
    """``(3,H,W)`` float -> ``(H,W)`` float64 ITU-R 601 luma in [0,1] (what Pillow's ``convert("L")`` computes)."""
    rgb = image.detach().cpu().double().clamp(0, 1).numpy()
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_metadata_chunks(icc: bytes | None, exif: bytes | None, dpi: Any) -> list[bytes]:
    chunks = []
    if icc:
        chunks.append(_png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc)))
    if exif:
        chunks.append(_png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    if dpi:
        ppm = [round(float(d) / 0.0254) for d in dpi]
        chunks.append(_png_chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
    return chunks


def _encode_png16(arr: np.ndarray, chunks: list[bytes]) -> bytes:
    """A 16-bit PNG (grey, grey+alpha, RGB or RGBA from an ``(H,W,C)`` uint16 array) with extra chunks after IHDR."""
    h, w, c = arr.shape
    if c in (3, 4):
        import cv2

        ok, buf = cv2.imencode(".png", arr[:, :, [2, 1, 0, 3][:c]])
        if not ok:
            raise OSError("OpenCV could not encode the 16-bit PNG")
        png = buf.tobytes()
    else:  # grey+alpha: OpenCV cannot; filter "Up" on every row, zlib level 6
        rows = arr.astype(">u2").view(np.uint8).reshape(h, w * c * 2)
        up = rows.copy()
        up[1:] = rows[1:] - rows[:-1]  # uint8 arithmetic wraps modulo 256, as PNG filters do
        raw = np.concatenate([np.full((h, 1), 2, np.uint8), up], axis=1).tobytes()
        ihdr = struct.pack(">IIBBBBB", w, h, 16, 4 if c == 2 else 0, 0, 0, 0)
        png = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw, 6))
               + _png_chunk(b"IEND", b""))
    at = 8 + 8 + 13 + 4  # signature + IHDR chunk
    return png[:at] + b"".join(chunks) + png[at:]


def _save_16bit_colour(tmp: Path, fmt: str, arr: np.ndarray, like: LoadedImage, icc: bytes | None,
                       exif: bytes | None, notes: list[str]) -> str:
    """16-bit RGB(A)/grey+alpha: PNG with OpenCV (+ metadata chunks), TIFF with tifffile. Returns the writer."""
    if fmt == "PNG":
        tmp.write_bytes(_encode_png16(arr, _png_metadata_chunks(icc, exif, like.info.get("dpi"))))
        return "png16"
    import tifffile

    comp = like.info.get("compression")
    if comp not in (None, "raw"):
        comp = "zlib"
        if like.info.get("compression") not in ("tiff_adobe_deflate", "tiff_deflate"):
            notes.append(f"16-bit TIFF compression {like.info.get('compression')} written as deflate (lossless)")
    else:
        comp = None
    if exif:
        notes.append("EXIF not written (16-bit colour TIFF)")
    photometric = "minisblack" if arr.shape[2] == 2 else "rgb"
    extras = ["unassalpha"] if arr.shape[2] in (2, 4) else None
    tifffile.imwrite(tmp, arr, photometric=photometric, compression=comp, iccprofile=icc, extrasamples=extras)
    return "tifffile"


def write_image(
    path: str | os.PathLike[str],
    image: torch.Tensor,
    *,
    like: LoadedImage | None = None,
    alpha: torch.Tensor | None = None,
    strip_gps: bool = False,
    quality: int = 95,
    overwrite: bool = False,
    mask: torch.Tensor | None = None,
    record: dict[str, Any] | None = None,
    original: str = "like",
) -> Path:
    """Write an RGB float image in the source's own format, keeping the metadata of ``like`` (the source).

    Args:
        path: destination. The format is the source's real one (:func:`output_format`); a format Pillow cannot
            write becomes PNG under ``NAME.png`` (the returned path).
        image: ``(3,H,W)`` float in [0,1].
        like: the source image whose format, bit depth, colour (greyscale stays greyscale), ICC profile, EXIF and
            alpha are kept. A JPEG source is written by :func:`nullswap.faces.jpeg.write_protected_jpeg`: only the
            blocks where ``image`` differs from ``like.tensor`` are re-encoded, the others copied.
        alpha: alpha channel to write (defaults to ``like.alpha``); dropped for formats without alpha (JPEG).
        strip_gps: remove the EXIF GPS block.
        quality: quality of a lossy re-encode (JPEG that cannot keep its coefficients, lossy WebP, AVIF). Choice: 95
            with 4:4:4 chroma keeps a cloak's high frequencies better than the library default of 75.
        overwrite: allow replacing an existing file (off: refusing protects originals).
        mask: optional ``(H,W)`` face mask: for a JPEG source its blocks are re-encoded too.
        record: a dict filled with what was written: ``format``, ``path``, ``writer``, ``bit_depth``, ``mode``,
            ``notes`` (what the output does not carry over), and for JPEG the block and byte counts.
        original: for a JPEG source, the clean pixels the changed blocks are found against: ``"like"``
            (``like.tensor``) or ``"decode"`` (the source's bytes decoded again, uint8: for a caller whose
            ``like.tensor`` holds the protected pixels for the write, see ``ProtectedImage.save``).

    Raises:
        ImageWriteError: destination exists (and ``overwrite`` is off), folder not writable, or unknown format.
    """
    from nullswap.faces.jpeg import write_protected_jpeg

    if original not in ("like", "decode"):
        raise InputError(f"original: expected 'like' or 'decode', got {original!r}")
    p = Path(path)
    fmt = output_format(p, like)
    if fmt is None:
        raise ImageWriteError(p, f"unknown image format for extension {p.suffix!r}")
    check_image_batch(image.unsqueeze(0), "image", check_range=False)
    notes: list[str] = []
    rec: dict[str, Any] = record if record is not None else {}
    if fmt not in Image.SAVE:
        _pillow_extensions()
    if fmt not in Image.SAVE:
        notes.append(f"{fmt} cannot be written (Pillow reads it only): written as PNG")
        fmt = "PNG"
        p = p.with_suffix(".png")
    if p.exists() and not overwrite:
        raise ImageWriteError(p, "file exists (refusing to overwrite)")
    rec.update(format=fmt, path=str(p), notes=notes)

    if fmt == "JPEG" and like is not None and like.raw is not None:
        if tuple(image.shape) != tuple(like.tensor.shape):
            notes.append("image size differs from the source's: JPEG re-encoded whole")
        else:
            try:
                res = write_protected_jpeg(like.raw, image, p, original=like.tensor if original == "like" else None,
                                           mask=mask, strip_gps=strip_gps, overwrite=overwrite)
            except UnsupportedJpegError as e:
                log.warning("%s: JPEG re-encoded whole at quality %d (pixels outside the faces change): %s", p.name,
                            quality, e)
                notes.append(f"JPEG re-encoded whole at quality {quality}, 4:4:4 (pixels outside the faces change): "
                             f"{e}")
            else:
                notes += res.notes
                rec.update(res.to_dict(), format=fmt, path=str(p), notes=notes, bit_depth=8,
                           mode="L" if like.greyscale else "RGB")
                if like.greyscale:
                    notes.append("greyscale output: only the cloak's luminance is kept, its colour part is lost")
                for n in notes:
                    log.info("%s: %s", p.name, n)
                return p

    grey = like is not None and like.greyscale
    depth16 = like is not None and like.bit_depth == 16 and fmt in ("PNG", "TIFF")
    a = alpha if alpha is not None else (like.alpha if like is not None else None)
    if a is not None and fmt not in _ALPHA_FORMATS:
        notes.append(f"alpha channel dropped ({fmt} has none)")
        a = None
    icc = like.icc_profile if like is not None else None
    if icc and _icc_space(icc) != ("GRAY" if grey else "RGB"):
        notes.append(f"ICC profile dropped: a {_icc_space(icc)} profile does not describe the "
                     f"{'greyscale' if grey else 'RGB'} output")
        icc = None
    exif = _exif_bytes(like, strip_gps) if like is not None else None
    if grey:
        notes.append("greyscale output: only the cloak's luminance is kept, its colour part is lost")
    elif like is not None and like.mode == "P" and fmt != "GIF":
        notes.append("palette image written as true colour (a palette would quantise the cloak away)")

    with atomic_write(p) as tmp:
        if depth16 and like is not None and like.mode in ("RGB;16", "RGBA;16", "LA;16"):
            chans = [_luma(image)] if grey else list(image.detach().cpu().double().clamp(0, 1).numpy())
            if a is not None:
                chans.append(a.detach().cpu().double().clamp(0, 1).numpy())
            arr16 = np.rint(np.stack(chans, axis=2) * 65535.0).astype(np.uint16)
            writer = _save_16bit_colour(tmp, fmt, arr16, like, icc, exif, notes)
            mode = like.mode if a is not None or not grey else "I;16"
            rec.update(writer=writer, bit_depth=16, mode=mode)
            return p
        if grey and depth16:
            im = Image.fromarray(np.rint(_luma(image) * 65535.0).astype(np.uint16))
            if a is not None:
                notes.append("alpha channel dropped (16-bit greyscale)")
                a = None
        elif grey:
            g8 = np.rint(_luma(image) * 255.0).astype(np.uint8)
            im = Image.fromarray(g8, "L")
            if a is not None:
                im = Image.merge("LA", [im, Image.fromarray(_alpha8(a), "L")])
        else:
            arr = to_uint8(image)
            im = Image.fromarray(np.dstack([arr, _alpha8(a)]), "RGBA") if a is not None else Image.fromarray(arr, "RGB")
        kwargs: dict[str, Any] = {}
        if icc:
            kwargs["icc_profile"] = icc
        if exif and fmt in ("JPEG", "PNG", "WEBP", "TIFF", "AVIF"):
            kwargs["exif"] = exif
        if like is not None and "dpi" in like.info:
            kwargs["dpi"] = like.info["dpi"]
        if fmt == "JPEG":
            kwargs.update(quality=quality, subsampling=0)
        elif fmt == "WEBP":
            if like is not None and like.info.get("lossless"):
                kwargs.update(lossless=True)
            else:
                kwargs.update(quality=quality)
                if like is not None:
                    notes.append(f"lossy WebP re-encoded at quality {quality} (pixels outside the faces change)")
        elif fmt == "AVIF":
            kwargs.update(quality=quality)
            if like is not None:
                notes.append(f"AVIF re-encoded at quality {quality} (pixels outside the faces change)")
        elif fmt == "TIFF" and like is not None:
            comp = like.info.get("compression")
            if comp in _TIFF_LOSSLESS:
                kwargs["compression"] = comp
            elif comp:
                kwargs["compression"] = "tiff_adobe_deflate"
                notes.append(f"TIFF compression {comp} written as deflate (lossless)")
        elif fmt == "GIF":
            im = im.convert("RGB").quantize(256) if im.mode not in ("L",) else im
            notes.append("GIF holds 256 colours: the cloak is quantised to the palette (protect a PNG instead)")
        try:
            im.save(tmp, format=fmt, **kwargs)
        except (OSError, ValueError, KeyError, TypeError) as e:  # a mode or option the format does not take
            if isinstance(e, PermissionError):
                raise
            log.info("%s: writing %s %s failed (%s); retrying as plain RGB", p.name, fmt, im.mode, e)
            notes.append(f"{fmt} cannot hold mode {im.mode} with this metadata: written as plain RGB")
            im = im.convert("RGB")
            im.save(tmp, format=fmt)
    rec.update(writer="pillow", bit_depth=16 if grey and depth16 else 8, mode=im.mode)
    for n in notes:
        log.info("%s: %s", p.name, n)
    return p


def _alpha8(a: torch.Tensor) -> np.ndarray:
    return (a.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def as_written(image: torch.Tensor, like: LoadedImage | None, *, suffix: str | None = None) -> torch.Tensor:
    """The upright ``(3,H,W)`` pixels a reader gets back from what :func:`write_image` writes for ``image``.

    Quantised to the output's bit depth, greyscale for a greyscale source, and for a JPEG source the changed blocks
    quantised with the input's tables (lossy WebP/AVIF re-encoded). Verifying these pixels, rather than the
    in-memory ones, tells whether the cloak survives the file format. Costs one encode and one decode.

    Args:
        image: ``(3,H,W)`` float in [0,1].
        like: the source (``None``: written as PNG, i.e. 8-bit quantisation only).
        suffix: output extension (default: the source's own).
    """
    import tempfile

    ext = suffix or (like.path.suffix if like is not None and like.path is not None else ".png")
    with tempfile.TemporaryDirectory(prefix="nullswap-as-written-") as d:
        out = write_image(Path(d) / f"out{ext}", image, like=like)
        return read_image(out).tensor.to(image.device)
