"""JPEG in, JPEG out: copy the DCT coefficients of every block no face touches, re-encode only the face blocks.

A protected photo differs from its source only inside the faces' feathered masks. Decoding the source and encoding
the whole photo again (what a plain ``Image.save`` does) changes every pixel and, at quality 95 with 4:4:4 chroma,
grows the file 2-3x. This writer instead:

1. reads the source's quantised DCT coefficients, quantisation tables and chroma sampling with libjpeg (PyPI
   ``jpeglib``, its bundled libjpeg-turbo 2.1);
2. for every 8x8 block (per component: a luma block covers 8x8 pixels, a 4:2:0 chroma block 16x16) whose footprint
   holds a changed pixel (or a pixel of the optional face mask), adds the quantised DCT of the change:
   ``new = old + round(DCT(change) / Q)`` with the source's table ``Q``, the change converted to YCbCr (JFIF) and
   box-downsampled like libjpeg does. Adding the *change* (rather than quantising the protected pixels again) means
   a touched block carries no second generation loss;
3. copies every other block's coefficients unchanged and writes the file with the source's tables, sampling factors
   and metadata segments, and the source's kind of Huffman coding: a baseline source coded with the standard tables
   of the JPEG standard (Annex K; what cameras and ``Image.save(optimize=False)`` write) is written with them again,
   any other source with tables optimised for the new coefficients (libjpeg ``optimize_coding``). Choice (issue 14):
   optimising costs a second pass over the coefficients (``jpeglib.write_dct`` on ``benchmarks/protect.py``'s photos,
   median of 5 interleaved calls, 1 thread, quiet 2-core VM, 2026-12-07: 12 MP 118 -> 96 ms, 1 MP 11.0 -> 7.9 ms)
   and makes a standard-coded photo ~3.6 % smaller than its source; keeping the source's coding keeps its size and
   skips that pass.

What a decoder then shows: outside the re-encoded blocks every pixel decodes bit-identically to the source, except a
1-pixel rim around re-encoded blocks in the directions where chroma is subsampled (libjpeg's "fancy" upsampling
interpolates chroma across the block edge). :func:`unchanged_region` computes exactly that region.

Metadata: every segment before the image data is kept (EXIF, ICC, XMP, IPTC, comments, Adobe), except the source's
JFIF header (libjpeg writes it again from the copied density), JFXX thumbnails and the MPF index of extra images
(camera MPO files: only the primary image is written; the extras would show the unprotected faces). EXIF keeps its
orientation (the pixels keep their stored orientation); it is rewritten through Pillow, like
:func:`nullswap.faces.io.write_image` does, only when the GPS block must go or it holds a thumbnail (a thumbnail of
the clean photo). With ``strip_gps`` an XMP packet that holds GPS fields is dropped too.

Not handled here (the caller re-encodes the whole photo instead): CMYK/YCCK/RGB-coded JPEGs, sampling factors that do
not divide the largest one, 12-bit JPEGs. A progressive source is read fine but written as baseline (jpeglib writes
sequential JPEGs only): pixels stay bit-identical, the file is typically a few percent larger (see the README).
"""

from __future__ import annotations

import functools
import io as _io
import logging
import math
import os
import struct
import tempfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal, Protocol

import numpy as np
import torch
from PIL import Image

from nullswap.errors import ImageWriteError, InputError, UnsupportedJpegError
from nullswap.faces.atomic import write_bytes_atomic

log = logging.getLogger(__name__)

#: libjpeg build of jpeglib used to read and write coefficients (libjpeg-turbo 2.1: arithmetic coding, progressive).
JPEGLIB_VERSION = "turbo210"
#: JFIF RGB -> YCbCr matrix (offsets dropped: the writer converts *changes*).
_RGB_TO_YCC = np.array([[0.299, 0.587, 0.114],
                        [-0.168735892, -0.331264108, 0.5],
                        [0.5, -0.418687589, -0.081312411]], dtype=np.float64)
_LUMA = _RGB_TO_YCC[0]
#: Luma pixels per strip when re-encoding (bounds the memory to a strip of the photo's width).
_STRIP_ROWS = 256
_EXIF_ORIENTATION = 0x0112
_EXIF_GPS_IFD = 0x8825
_XMP_PREFIX = b"http://ns.adobe.com/xap/1.0/\x00"
_XMP_EXT_PREFIX = b"http://ns.adobe.com/xmp/extension/\x00"
#: Start-of-frame markers (baseline, extended, progressive, lossless; Huffman and arithmetic).
_SOF_MARKERS = (0xC0, 0xC1, 0xC2, 0xC3, 0xC9, 0xCA, 0xCB)


def _dct_matrix() -> np.ndarray:
    """The orthonormal 8-point DCT-II matrix: ``C @ block @ C.T`` is JPEG's forward DCT (ITU T.81 A.3.3)."""
    k = np.arange(8)
    c = np.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * 0.5
    c[0] = math.sqrt(1 / 8)
    return c


_DCT = _dct_matrix()


@dataclass
class JpegWriteResult:
    """What :func:`write_protected_jpeg` did.

    Attributes:
        path: the written file.
        blocks: 8x8 blocks in the photo (all components).
        blocks_reencoded: blocks whose coefficients were recomputed (the rest are the source's, copied).
        blocks_changed: of those, blocks whose coefficients actually differ from the source's.
        input_bytes: size of the source file; output_bytes: size of the written file.
        sampling: chroma subsampling of source and output (``"4:2:0"``, ``"4:4:4"``, ``"grey"``, ...).
        quant_tables: quantisation tables copied from the source.
        notes: what the output does not carry over from the source (progressive -> baseline, dropped segments).
    """

    path: Path | None
    blocks: int
    blocks_reencoded: int
    blocks_changed: int
    input_bytes: int
    output_bytes: int
    sampling: str
    quant_tables: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (for the per-photo report)."""
        return {"writer": "jpeg-coefficients", "blocks": self.blocks, "blocks_reencoded": self.blocks_reencoded,
                "blocks_changed": self.blocks_changed, "input_bytes": self.input_bytes,
                "output_bytes": self.output_bytes,
                "size_ratio": round(self.output_bytes / max(self.input_bytes, 1), 4), "sampling": self.sampling,
                "quant_tables": "copied from the input", "notes": list(self.notes)}


# ----------------------------------------------------------------------------------------------- segments
def _scan_segments(data: bytes) -> tuple[list[tuple[int, int, bytes]], int]:
    """``([(marker, offset of its FF byte, payload), ...], offset of the first SOS)``; see :func:`jpeg_segments`."""
    if data[:2] != b"\xff\xd8":
        raise UnsupportedJpegError("expected a JPEG stream (FF D8), got other bytes")
    segs: list[tuple[int, int, bytes]] = []
    i = 2
    n = len(data)
    while i < n:
        if data[i] != 0xFF:
            raise UnsupportedJpegError(f"expected a marker at byte {i}, got 0x{data[i]:02x}")
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            break
        m = data[i]
        start = i - 1
        i += 1
        if m == 0xDA:
            return segs, start
        if m == 0x01 or 0xD0 <= m <= 0xD7:
            continue
        if i + 2 > n:
            break
        length = int.from_bytes(data[i:i + 2], "big")
        if length < 2 or i + length > n:
            break
        segs.append((m, start, data[i + 2:i + length]))
        i += length
    raise UnsupportedJpegError("expected a start-of-scan segment, got the end of the file")


def jpeg_segments(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """The marker segments between SOI and the first SOS.

    Returns:
        ``([(marker, payload), ...], offset of the SOS marker)``; ``marker`` is the second marker byte
        (``0xE1`` for APP1), ``payload`` the bytes after the 2-byte length.

    Raises:
        UnsupportedJpegError: not a JPEG stream, or a segment runs past the end.
    """
    segs, sos = _scan_segments(data)
    return [(m, payload) for m, _, payload in segs], sos


def _huffman_tables(segs: Iterable[tuple[int, bytes]]) -> set[tuple[int, bytes]]:
    """The Huffman tables of DHT segments as ``{(class, counts + symbols), ...}`` (table ids dropped)."""
    tables: set[tuple[int, bytes]] = set()
    for marker, payload in segs:
        if marker != 0xC4:
            continue
        i = 0
        while i + 17 <= len(payload):
            n = sum(payload[i + 1:i + 17])
            tables.add((payload[i] >> 4, bytes(payload[i + 1:i + 17 + n])))
            i += 17 + n
    return tables


@functools.lru_cache(maxsize=1)
def _standard_huffman_tables() -> frozenset[tuple[int, bytes]]:
    """The four tables of the JPEG standard's Annex K (K.3), as libjpeg writes them without ``optimize_coding``."""
    buf = _io.BytesIO()
    Image.new("RGB", (16, 16), (120, 60, 200)).save(buf, "JPEG", quality=90, optimize=False, subsampling=2)
    return frozenset(_huffman_tables(jpeg_segments(buf.getvalue())[0]))


def standard_huffman(data: bytes) -> bool:
    """Whether a JPEG is baseline and Huffman-coded with only the standard (Annex K) tables.

    Such a source is written back with the standard tables (no ``optimize_coding`` pass); see the module docstring.
    """
    segs, _ = jpeg_segments(data)
    if not any(m == 0xC0 for m, _ in segs):  # SOF0 only: progressive / extended / arithmetic sources optimise
        return False
    tables = _huffman_tables(segs)
    return bool(tables) and tables <= _standard_huffman_tables()


def _segment(marker: int, payload: bytes) -> bytes:
    if len(payload) + 2 > 0xFFFF:
        raise ValueError(f"segment of {len(payload)} bytes exceeds the JPEG limit of 65533")
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _exif_has_thumbnail(tiff: bytes) -> bool:
    """Whether a TIFF/EXIF block links a second IFD (IFD1, the thumbnail)."""
    try:
        bo = "<" if tiff[:2] == b"II" else ">"
        off = struct.unpack(bo + "I", tiff[4:8])[0]
        count = struct.unpack(bo + "H", tiff[off:off + 2])[0]
        nxt = struct.unpack(bo + "I", tiff[off + 2 + 12 * count: off + 6 + 12 * count])[0]
    except (struct.error, IndexError):
        return False
    return nxt != 0


def _rewrite_exif(payload: bytes, strip_gps: bool, notes: list[str]) -> bytes | None:
    """The APP1 EXIF payload to write: verbatim, or rewritten without GPS / thumbnail (None: drop it)."""
    tiff = payload[6:]
    exif = Image.Exif()
    try:
        exif.load(tiff)
    except Exception as e:  # noqa: BLE001 - an unreadable EXIF block is dropped, not fatal
        notes.append(f"EXIF dropped: unreadable ({type(e).__name__})")
        return None
    has_gps = _EXIF_GPS_IFD in exif
    thumb = _exif_has_thumbnail(tiff)
    if not (strip_gps and has_gps) and not thumb:
        return payload
    if strip_gps and has_gps:
        del exif[_EXIF_GPS_IFD]
    if thumb:
        notes.append("EXIF thumbnail dropped (it shows the unprotected photo)")
    out = b"Exif\x00\x00" + exif.tobytes()
    if len(out) + 2 > 0xFFFF:
        notes.append("EXIF dropped: too large after rewriting")
        return None
    return out


def kept_segments(data: bytes, *, strip_gps: bool) -> tuple[list[bytes], list[str]]:
    """The source's metadata segments to copy into the output, and notes on what is left out.

    See the module docstring for the rules.
    """
    segs, _ = jpeg_segments(data)
    keep: list[bytes] = []
    notes: list[str] = []
    for m, payload in segs:
        if m == 0xE0:  # JFIF (rewritten by libjpeg from the copied density) or JFXX thumbnail
            if payload.startswith(b"JFXX"):
                notes.append("JFXX thumbnail dropped (it shows the unprotected photo)")
            elif not payload.startswith(b"JFIF"):
                keep.append(_segment(m, payload))
            continue
        if m == 0xE1 and payload.startswith(b"Exif\x00"):
            new = _rewrite_exif(payload, strip_gps, notes)
            if new is not None:
                keep.append(_segment(m, new))
            continue
        if m == 0xE1 and (payload.startswith(_XMP_PREFIX) or payload.startswith(_XMP_EXT_PREFIX)):
            if strip_gps and b"GPS" in payload:
                notes.append("XMP dropped: it holds GPS fields")
                continue
            keep.append(_segment(m, payload))
            continue
        if m == 0xE2 and payload.startswith(b"MPF\x00"):
            notes.append("MPF index dropped: only the primary image is written")
            continue
        if 0xE1 <= m <= 0xEF or m == 0xFE:
            keep.append(_segment(m, payload))
    return keep, notes


def _component_ids(data: bytes) -> list[int]:
    """Component ids in the frame header (SOF) of a JPEG stream."""
    segs, _ = jpeg_segments(data)
    for m, payload in segs:
        if m in _SOF_MARKERS:
            return [payload[6 + 3 * i] for i in range(payload[5])]
    raise UnsupportedJpegError("expected a frame header (SOF), got none")


def _restore_component_ids(encoded: bytes, ids: list[int]) -> bytes:
    """Give the written frame and scan headers the source's component ids (libjpeg numbers them 0, 1, 2 here)."""
    new_ids = _component_ids(encoded)
    if new_ids == ids or len(new_ids) != len(ids):
        return encoded
    remap = dict(zip(new_ids, ids, strict=True))
    out = bytearray(encoded)
    segs, sos = _scan_segments(encoded)
    for m, start, payload in segs:
        if m in _SOF_MARKERS:
            for k in range(payload[5]):
                out[start + 4 + 6 + 3 * k] = remap[payload[6 + 3 * k]]
    at = sos
    while at >= 0:  # every scan header (markers never occur inside entropy-coded data)
        for k in range(encoded[at + 4]):
            out[at + 5 + 2 * k] = remap.get(encoded[at + 5 + 2 * k], encoded[at + 5 + 2 * k])
        at = encoded.find(b"\xff\xda", at + 4)
    return bytes(out)


def _insert_segments(encoded: bytes, segments: list[bytes]) -> bytes:
    """Insert metadata segments after SOI and the JFIF header libjpeg wrote."""
    at = 2
    if encoded[2:4] == b"\xff\xe0":
        at = 4 + int.from_bytes(encoded[4:6], "big")
    return encoded[:at] + b"".join(segments) + encoded[at:]


# ----------------------------------------------------------------------------------------------- orientation
def to_stored_orientation(arr: np.ndarray, orientation: int, *, copy: bool = True) -> np.ndarray:
    """Undo :func:`PIL.ImageOps.exif_transpose` on an ``(H, W, ...)`` array: upright -> the file's stored layout.

    Args:
        arr: upright array.
        orientation: the source's EXIF orientation (1-8; anything else is left as is).
        copy: return a contiguous copy (``False``: a strided view, no memory for large photos).
    """
    if orientation in (None, 0, 1):
        return arr
    ops: dict[int, Callable[[np.ndarray], np.ndarray]] = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, 1, axes=(0, 1)),
        7: lambda a: np.rot90(a, 2, axes=(0, 1)).swapaxes(0, 1),
        8: lambda a: np.rot90(a, -1, axes=(0, 1)),
    }
    if orientation not in ops:
        return arr
    out = ops[orientation](arr)
    return np.ascontiguousarray(out) if copy else out


def _orientation(segs: list[tuple[int, bytes]]) -> int:
    for m, payload in segs:
        if m == 0xE1 and payload.startswith(b"Exif\x00"):
            exif = Image.Exif()
            try:
                exif.load(payload[6:])
            except Exception:  # noqa: BLE001 - unreadable EXIF: Pillow shows the photo as stored
                return 1
            return int(exif.get(_EXIF_ORIENTATION, 1) or 1)
    return 1


# ----------------------------------------------------------------------------------------------- coefficients
def _sampling_name(samp: np.ndarray) -> str:
    if samp.shape[0] == 1:
        return "grey"
    (vy, hy), (vc, hc) = samp[0], samp[1]
    names = {(1, 1): "4:4:4", (1, 2): "4:2:2", (2, 2): "4:2:0", (2, 1): "4:4:0", (1, 4): "4:1:1"}
    if (vc, hc) == (1, 1) and (int(vy), int(hy)) in names:
        return names[(int(vy), int(hy))]
    return "x".join(f"{int(h)}x{int(v)}" for v, h in samp)


def _read_dct(data: bytes) -> Any:
    """Read the coefficients of ``data`` with jpeglib (loaded), or raise :class:`UnsupportedJpegError`."""
    try:
        import jpeglib
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise UnsupportedJpegError(f"expected the jpeglib package, got an import error ({e})") from e
    with tempfile.TemporaryDirectory(prefix="nullswap-jpeg-") as d:
        src = Path(d) / "source.jpg"
        src.write_bytes(data)
        try:
            with jpeglib.version(JPEGLIB_VERSION):
                jpg = jpeglib.read_dct(str(src))
                jpg.load()
        except (OSError, ValueError, RuntimeError) as e:
            raise UnsupportedJpegError(f"libjpeg could not read the coefficients ({e})") from e
    return jpg


def _check_supported(jpg: Any) -> None:
    import jpeglib

    space = jpg.jpeg_color_space
    n = jpg.num_components
    if not ((n == 3 and space == jpeglib.JCS_YCbCr) or (n == 1 and space == jpeglib.JCS_GRAYSCALE)):
        raise UnsupportedJpegError(f"expected a YCbCr or greyscale JPEG, got colour space {space} with {n} components")
    samp = np.asarray(jpg.samp_factor, dtype=int)
    vmax, hmax = samp[:, 0].max(), samp[:, 1].max()
    if np.any(vmax % samp[:, 0]) or np.any(hmax % samp[:, 1]):
        raise UnsupportedJpegError(f"expected sampling factors that divide the largest, got {samp.tolist()}")


def unchanged_region(changed: np.ndarray, samp_factor: np.ndarray) -> np.ndarray:
    """Pixels (stored orientation) that decode bit-identically when the blocks covering ``changed`` are re-encoded.

    Args:
        changed: ``(H, W)`` bool, pixels whose blocks the writer re-encodes.
        samp_factor: jpeglib's ``samp_factor`` of the source (``(components, 2)``: vertical, horizontal).

    Returns:
        ``(H, W)`` bool: outside every re-encoded block's footprint, minus a 1-pixel rim in each subsampled direction
        (chroma upsampling interpolates across block edges).
    """
    samp = np.asarray(samp_factor, dtype=int)
    vmax, hmax = int(samp[:, 0].max()), int(samp[:, 1].max())
    h, w = changed.shape
    touched = np.zeros((h, w), dtype=bool)
    for v, hf in samp:
        fy, fx = 8 * (vmax // int(v)), 8 * (hmax // int(hf))
        ny, nx = -(-h // fy), -(-w // fx)
        pad = np.zeros((ny * fy, nx * fx), dtype=bool)
        pad[:h, :w] = changed
        blk = pad.reshape(ny, fy, nx, fx).any(axis=(1, 3))
        full = np.repeat(np.repeat(blk, fy, 0), fx, 1)[:h, :w]
        ry, rx = int(vmax // int(v) > 1), int(hmax // int(hf) > 1)
        if ry or rx:
            grown = full.copy()
            if ry:
                grown[1:] |= full[:-1]
                grown[:-1] |= full[1:]
            if rx:
                g2 = grown.copy()
                g2[:, 1:] |= grown[:, :-1]
                g2[:, :-1] |= grown[:, 1:]
                grown = g2
            full = grown
        touched |= full
    return ~touched


def _rgb255_into(arr: np.ndarray, out: np.ndarray, *, subtract: bool = False) -> None:
    """``out = `` (or ``out -= ``) an ``(h, w, 3)`` image (uint8, or float in [0,1] clipped) as float64 0-255.

    Written into ``out`` (float64, ``arr``'s shape): the values of ``clip(arr.astype(float64), 0, 1) * 255`` with
    fewer temporaries (one when subtracting a float image).
    """
    if arr.dtype == np.uint8:
        if subtract:
            np.subtract(out, arr, out=out)
        else:
            out[...] = arr
        return
    if subtract:
        tmp = np.clip(arr, 0.0, 1.0, dtype=np.float64)  # clip is exact: the order of clip and cast does not matter
        tmp *= 255.0
        out -= tmp
    else:
        np.clip(arr, 0.0, 1.0, out=out, dtype=np.float64)
        out *= 255.0


def _any3(mask: np.ndarray) -> np.ndarray:
    """``mask.any(axis=2)`` of an ``(h, w, 3)`` bool array (three element-wise ORs: no slow reduction)."""
    out = np.logical_or(mask[..., 0], mask[..., 1])
    out |= mask[..., 2]
    return out


def _block_any(mask: np.ndarray, by: int, bx: int) -> np.ndarray:
    """``(H, W)`` bool -> ``(H/by, W/bx)``: whether each ``by x bx`` block holds a True (``H, W`` multiples)."""
    h, w = mask.shape
    rows = mask.reshape(h // by, by, w)
    acc = rows[:, 0].copy()
    for k in range(1, by):
        acc |= rows[:, k]
    if bx % 8 == 0:  # 8 bools a uint64 word: any of a block row is any word non-zero
        words = acc.view(np.uint64).reshape(h // by, w // bx, bx // 8)
        return (words != 0).any(axis=2) if bx > 8 else words[..., 0] != 0
    return acc.reshape(h // by, w // bx, bx).any(axis=2)


def _box_mean(plane: np.ndarray, fy: int, fx: int) -> np.ndarray:
    """Mean of every ``fy x fx`` box of a float64 plane: ``plane.reshape(h, fy, w, fx).mean(axis=(1, 3))``'s values.

    No work for 1x1 (a mean of one value is the value); 2x2 as the pairwise sum numpy's reduction does.
    """
    if fy == 1 and fx == 1:
        return plane
    h, w = plane.shape[0] // fy, plane.shape[1] // fx
    if fy == 2 and fx == 2:
        p = plane.reshape(h, 2, w, 2)
        out = np.add(p[:, 0, :, 0], p[:, 0, :, 1])
        out += np.add(p[:, 1, :, 0], p[:, 1, :, 1])
        out /= 4.0
        return out
    return plane.reshape(h, fy, w, fx).mean(axis=(1, 3))


#: OpenBLAS computes a product with ``m * n * k`` at most this on the calling thread (``SMP_THRESHOLD_MIN`` 65536 x
#: ``GEMM_MULTITHREAD_THRESHOLD`` 4). Larger ones it splits over its threads, which on a 2-core machine whose other
#: core runs torch's OpenMP threads made the encoder's products 2-10x slower than one thread (issue 14).
_BLAS_ONE_THREAD_MNK = 262_144


def _matmul_1t(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.matmul(a, b)`` in slices small enough for BLAS to run each on the calling thread; the same values.

    ``a`` ``(m, k)`` and ``b`` ``(..., k, n)``: slices of ``b``'s columns when ``a`` is the small factor (``m <= k``),
    else of ``a``'s rows. Every element is the same dot product either way (the kernel's order over ``k`` does not
    depend on the slicing: checked bit for bit by the writer's byte-identity tests).
    """
    m, k = a.shape
    n = b.shape[-1]
    if b.ndim == 2 and m > k:  # tall a (rows of 8-pixel runs) @ a small b: slices of a's rows
        step = max(1, _BLAS_ONE_THREAD_MNK // (k * n))
        if m <= step:
            return a @ b
        out = np.empty((m, n), dtype=np.result_type(a, b))
        for i in range(0, m, step):
            np.matmul(a[i:i + step], b, out=out[i:i + step])
        return out
    step = max(1, _BLAS_ONE_THREAD_MNK // (m * k))
    if n <= step:
        return np.matmul(a, b)
    out = np.empty((*b.shape[:-2], m, n), dtype=np.result_type(a, b))
    for j in range(0, n, step):
        np.matmul(a, b[..., j:j + step], out=out[..., j:j + step])
    return out


def _block_dct(comp: np.ndarray) -> np.ndarray:
    """The 2-D DCT of every 8x8 block of an ``(8 m, 8 n)`` float64 plane: ``(m, 8, n, 8)``, ``[by, i, bx, l]``.

    ``C @ block @ C.T`` as two BLAS products over the whole plane (rows of blocks, then 8-pixel runs): 8x fewer
    multiplications than the 64-term sum per coefficient; the values differ from it only in the summation order
    (a quantised coefficient can change only within float rounding of a .5 tie).
    """
    sh, sw = comp.shape
    rows = _matmul_1t(_DCT, comp.reshape(sh // 8, 8, sw))  # (m, 8, sw): C @ the 8 rows of each block row
    return _matmul_1t(rows.reshape(-1, 8), _DCT.T).reshape(sh // 8, 8, sw // 8, 8)


def _strip_coefs(protected: np.ndarray, original: np.ndarray, ch: np.ndarray, samp: np.ndarray, n_comp: int,
                 y0: int, x_lo: int) -> list[tuple[int, int, int, np.ndarray, np.ndarray, np.ndarray]]:
    """The DCT of ``protected - original`` in the blocks of one MCU strip that hold a changed pixel.

    Args:
        protected: ``(hh, ww, 3)`` the strip's pixels (stored orientation), ``ww``/``hh`` short of ``ch``'s size
            only past the photo's edge (the last column / row is repeated).
        original: the same for the source's decode.
        ch: ``(strip rows, strip width)`` bool, the changed pixels on the MCU grid.
        samp: sampling factors (``(components, 2)``: vertical, horizontal).
        n_comp: components (3 or 1).
        y0: the strip's top pixel row in the stored photo (on the MCU grid).
        x_lo: its left pixel column (on the MCU grid).

    Returns:
        ``[(component, by0, bx0, iy, ix, coef)]``: blocks ``(by0 + iy, bx0 + ix)`` of the component and their DCT
        ``(k, 8, 8)`` (not yet divided by the quantisation table; blocks past the coefficient planes included).
    """
    vmax, hmax = int(samp[:, 0].max()), int(samp[:, 1].max())
    sh, sw_full = ch.shape
    hh, ww = protected.shape[:2]
    d = np.empty((sh, sw_full, 3), dtype=np.float64)
    dv = d[:hh, :ww]
    _rgb255_into(protected, dv)
    _rgb255_into(original, dv, subtract=True)
    if ww < sw_full:  # past the photo's edge: repeat the last column / row (np.pad's "edge")
        d[:hh, ww:] = d[:hh, ww - 1:ww]
    if hh < sh:
        d[hh:] = d[hh - 1:hh]
    # (3, h*w) planes, the same values as ``d @ _RGB_TO_YCC.T``
    flat = d.reshape(-1, 3).T
    ycc = (_matmul_1t(_RGB_TO_YCC, flat) if n_comp == 3 else (_LUMA @ flat)[None]).reshape(-1, sh, sw_full)
    touched_by_factor: dict[tuple[int, int], np.ndarray] = {}
    out: list[tuple[int, int, int, np.ndarray, np.ndarray, np.ndarray]] = []
    for c in range(n_comp):
        fy, fx = vmax // int(samp[c, 0]), hmax // int(samp[c, 1])
        comp = _box_mean(ycc[c], fy, fx)
        if (fy, fx) not in touched_by_factor:
            touched_by_factor[fy, fx] = _block_any(ch, 8 * fy, 8 * fx)
        iy, ix = np.nonzero(touched_by_factor[fy, fx])
        if iy.size == 0:
            continue
        out.append((c, y0 // (8 * fy), x_lo // (8 * fx), iy, ix, _block_dct(comp).transpose(0, 2, 1, 3)[iy, ix]))
    return out


def _add_coefs(plane: np.ndarray, q: np.ndarray, by0: int, bx0: int, iy: np.ndarray, ix: np.ndarray,
               coef: np.ndarray) -> tuple[int, int]:
    """``plane[by0 + iy, bx0 + ix] += round(coef / q)`` (clipped for baseline coding) for the blocks in the plane.

    Returns:
        (blocks re-encoded, blocks whose coefficients changed).
    """
    keep = (iy < plane.shape[0] - by0) & (ix < plane.shape[1] - bx0)
    if not keep.all():
        iy, ix, coef = iy[keep], ix[keep], coef[keep]
    if iy.size == 0:
        return 0, 0
    coef /= q
    old = plane[by0 + iy, bx0 + ix].astype(np.int32)
    new = np.rint(coef).astype(np.int32)
    new += old
    # keep the stream valid for 8-bit baseline entropy coding (DC within the level-shifted range, AC 10 bits)
    dc = new[:, 0, 0].copy()
    np.clip(new, -1023, 1023, out=new)
    new[:, 0, 0] = np.clip(dc, math.ceil(-1024 / q[0, 0]), math.floor(1016 / q[0, 0]))
    plane[by0 + iy, bx0 + ix] = new
    return int(iy.size), int(np.count_nonzero((new != old).reshape(-1, 64).any(axis=1)))


def _reencode(jpg: Any, protected: np.ndarray, original: np.ndarray, changed: np.ndarray,
              origin: tuple[int, int] = (0, 0)) -> tuple[int, int]:
    """Add the quantised DCT of ``protected - original`` to every block whose footprint holds a ``changed`` pixel.

    Works strip by strip, so the memory stays a strip of the region's width. Modifies ``jpg``'s coefficients in
    place (only the touched blocks are read and written).

    Args:
        jpg: loaded jpeglib DCTJPEG.
        protected: ``(h, w, 3)`` image (uint8 or float in [0,1]), stored orientation (a view is fine): the region of
            the photo whose top-left pixel is ``origin``.
        original: the same for the source's decode.
        changed: ``(h, w)`` bool, the same region. The region starts on the MCU grid and ends on it or at the
            photo's edge (:func:`_mcu_region`); the whole photo is such a region.
        origin: ``(y, x)`` of the region's top-left pixel in the stored photo.

    Returns:
        (blocks re-encoded, blocks whose coefficients changed).
    """
    oy, ox = origin
    h, w = int(jpg.height), int(jpg.width)
    samp = np.asarray(jpg.samp_factor, dtype=int)
    vmax, hmax = int(samp[:, 0].max()), int(samp[:, 1].max())
    mcu_h, mcu_w = 8 * vmax, 8 * hmax
    if oy % mcu_h or ox % mcu_w:
        raise InputError(f"origin: expected a corner on the {mcu_h}x{mcu_w} MCU grid, got {origin}")
    rows = np.flatnonzero(changed.any(axis=1))
    if rows.size == 0:
        return 0, 0
    cols = np.flatnonzero(changed[rows[0]:rows[-1] + 1].any(axis=0))
    y_lo, y_hi = ((oy + rows[0]) // mcu_h) * mcu_h, -(-(oy + rows[-1] + 1) // mcu_h) * mcu_h
    x_lo, x_hi = ((ox + cols[0]) // mcu_w) * mcu_w, -(-(ox + cols[-1] + 1) // mcu_w) * mcu_w
    if min(y_hi, h) > oy + changed.shape[0] or min(x_hi, w) > ox + changed.shape[1]:
        raise InputError("changed: expected a region ending on the MCU grid or at the photo's edge")
    n_comp = 3 if jpg.num_components == 3 else 1
    strip = max(mcu_h, (_STRIP_ROWS // mcu_h) * mcu_h)
    sw_full = int(x_hi - x_lo)

    def strips():  # each strip's blocks, computed as they are applied
        for y0 in range(int(y_lo), int(y_hi), strip):
            y1 = min(y0 + strip, int(y_hi))
            ch = np.zeros((y1 - y0, sw_full), dtype=bool)
            ys = slice(y0 - oy, min(y1, h) - oy)
            xs = slice(int(x_lo) - ox, min(int(x_hi), w) - ox)
            hh, ww = ys.stop - ys.start, xs.stop - xs.start
            ch[:hh, :ww] = changed[ys, xs]
            if not ch.any():
                continue
            yield from _strip_coefs(protected[ys, xs], original[ys, xs], ch, samp, n_comp, y0, int(x_lo))

    return _apply_coefs(jpg, strips())


def _hwc(image: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    """``(3,H,W)`` float tensor/array in [0,1] -> an ``(H,W,3)`` view (no copy for a CPU float32 tensor)."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        image = (image if image.dtype == torch.float32 else image.float()).numpy()
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[0] != 3:
        raise InputError(f"{name}: expected a (3,H,W) RGB image, got shape {tuple(arr.shape)}")
    return arr.transpose(1, 2, 0)


#: A face window as :func:`encode_patched_jpeg` takes it (``FacePatch``'s fields): ``box`` = (x0, y0, x1, y1) in
#: upright photo pixels, ``pixels`` ``(3, y1-y0, x1-x0)`` float in [0,1].
class Window(Protocol):
    """A rectangle of new pixels (:class:`nullswap.faces.pasteback.FacePatch` is one)."""

    @property
    def box(self) -> tuple[int, int, int, int]: ...  # noqa: D102

    @property
    def pixels(self) -> torch.Tensor: ...  # noqa: D102


def _swaps_axes(orientation: int) -> bool:
    return orientation in (5, 6, 7, 8)


def _to_stored_point(y: int, x: int, orientation: int, hw: tuple[int, int]) -> tuple[int, int]:
    """Upright pixel ``(y, x)`` of a photo whose upright size is ``hw`` -> its ``(y, x)`` in the stored layout."""
    h, w = hw
    return {2: (y, w - 1 - x), 3: (h - 1 - y, w - 1 - x), 4: (h - 1 - y, x), 5: (x, y), 6: (w - 1 - x, y),
            7: (w - 1 - x, h - 1 - y), 8: (x, h - 1 - y)}.get(orientation, (y, x))


def _to_upright_point(y: int, x: int, orientation: int, hw: tuple[int, int]) -> tuple[int, int]:
    """Stored pixel ``(y, x)`` -> upright ``(y, x)``; ``hw`` is the *upright* size (inverse of the above)."""
    h, w = hw
    return {2: (y, w - 1 - x), 3: (h - 1 - y, w - 1 - x), 4: (h - 1 - y, x), 5: (x, y), 6: (x, w - 1 - y),
            7: (h - 1 - x, w - 1 - y), 8: (h - 1 - x, y)}.get(orientation, (y, x))


def _map_rect(rect: tuple[int, int, int, int],
              point: Callable[[int, int], tuple[int, int]]) -> tuple[int, int, int, int]:
    """``(y0, x0, y1, x1)`` (end exclusive) through a flip/rotation of pixel coordinates."""
    y0, x0, y1, x1 = rect
    (a, b), (c, d) = point(y0, x0), point(y1 - 1, x1 - 1)
    return min(a, c), min(b, d), max(a, c) + 1, max(b, d) + 1


def _mcu_region(jpg: Any, rect: tuple[int, int, int, int], orientation: int,
                upright_hw: tuple[int, int]) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """The upright ``rect`` (y0, x0, y1, x1) grown to whole MCUs of the stored photo.

    Returns:
        ``(upright rect, stored rect)`` of the same pixels; the stored one starts on the MCU grid and ends on it or
        at the photo's edge (what :func:`_reencode` reads for the blocks that hold a pixel of ``rect``).
    """
    samp = np.asarray(jpg.samp_factor, dtype=int)
    mh, mw = 8 * int(samp[:, 0].max()), 8 * int(samp[:, 1].max())
    sy0, sx0, sy1, sx1 = _map_rect(rect, lambda y, x: _to_stored_point(y, x, orientation, upright_hw))
    stored = ((sy0 // mh) * mh, (sx0 // mw) * mw, min(-(-sy1 // mh) * mh, int(jpg.height)),
              min(-(-sx1 // mw) * mw, int(jpg.width)))
    return _map_rect(stored, lambda y, x: _to_upright_point(y, x, orientation, upright_hw)), stored


def _changed(prot: np.ndarray, orig: np.ndarray) -> np.ndarray:
    """``(h, w)`` bool: pixels where ``prot`` (float) differs from ``orig`` (float: exactly; uint8: its decode)."""
    if orig.dtype != np.uint8:
        return _any3(prot != orig)
    changed = np.empty(prot.shape[:2], dtype=bool)
    buf = np.empty((min(_STRIP_ROWS, prot.shape[0]), *prot.shape[1:]), dtype=np.float64)
    for y in range(0, prot.shape[0], _STRIP_ROWS):  # strip-wise: no float copy of the whole region
        diff = buf[:min(_STRIP_ROWS, prot.shape[0] - y)]
        _rgb255_into(prot[y:y + _STRIP_ROWS], diff)
        diff -= orig[y:y + _STRIP_ROWS]
        np.abs(diff, out=diff)
        changed[y:y + _STRIP_ROWS] = _any3(diff > 1e-3)  # float32 x/255 -> x: ~1e-5 off
    return changed


def _open_source(source: bytes) -> tuple[list[tuple[int, bytes]], int, int, Any]:
    """``(segments, first SOS offset, EXIF orientation, loaded coefficients)`` of a JPEG this writer handles.

    Raises:
        UnsupportedJpegError: a JPEG this writer does not handle.
    """
    segs, sos = jpeg_segments(source)
    _check_dct_frame(segs)
    orientation = _orientation(segs)
    return segs, sos, orientation, _read_supported(source)


def _check_dct_frame(segs: list[tuple[int, bytes]]) -> None:
    """Raise :class:`UnsupportedJpegError` unless the frame header is an 8-bit DCT one."""
    sof = next(((m, payload) for m, payload in segs if m in _SOF_MARKERS), None)
    if sof is None or sof[0] == 0xC3 or sof[1][0] != 8:
        raise UnsupportedJpegError("expected an 8-bit DCT JPEG, got " + (
            "no frame header" if sof is None else "a lossless JPEG" if sof[0] == 0xC3 else f"{sof[1][0]}-bit samples"))


def _read_supported(source: bytes) -> Any:
    """:func:`_read_dct` then :func:`_check_supported`: the loaded coefficients of a JPEG this writer handles."""
    jpg = _read_dct(source)
    _check_supported(jpg)
    return jpg


def _frame_geometry(segs: list[tuple[int, bytes]]) -> SimpleNamespace | None:
    """``height``, ``width`` and ``samp_factor`` (``(components, 2)``: vertical, horizontal) from the frame header.

    What :func:`_mcu_region` reads of a loaded jpeglib object, known before the coefficients are read (``None``: no
    usable frame header; the caller then waits for the coefficients).
    """
    sof = next((payload for m, payload in segs if m in _SOF_MARKERS), None)
    if sof is None or len(sof) < 6 or len(sof) < 6 + 3 * sof[5] or sof[5] == 0:
        return None
    samp = np.array([[sof[7 + 3 * k] & 0x0F, sof[7 + 3 * k] >> 4] for k in range(sof[5])], dtype=int)
    if np.any(samp == 0):
        return None
    return SimpleNamespace(height=int.from_bytes(sof[1:3], "big"), width=int.from_bytes(sof[3:5], "big"),
                           samp_factor=samp)


def _same_geometry(frame: SimpleNamespace, jpg: Any) -> bool:
    """Whether the frame header's geometry is the loaded coefficients' (what :func:`_mcu_region` used)."""
    samp = np.asarray(jpg.samp_factor, dtype=int)
    return (frame.height, frame.width) == (int(jpg.height), int(jpg.width)) and samp.shape == frame.samp_factor.shape \
        and bool(np.array_equal(samp, frame.samp_factor))


def _check_upright_size(jpg: Any, hw: tuple[int, int], orientation: int, name: str) -> None:
    stored = (hw[1], hw[0]) if _swaps_axes(orientation) else hw
    if stored != (int(jpg.height), int(jpg.width)):
        raise InputError(f"{name}: expected the JPEG's stored size {(jpg.height, jpg.width)} after undoing EXIF "
                         f"orientation {orientation}, got {stored}")


def _reencode_region(jpg: Any, prot: np.ndarray, orig: np.ndarray, mask: np.ndarray | None, orientation: int,
                     stored: tuple[int, int, int, int]) -> tuple[int, int]:
    """:func:`_reencode` on an upright region (``prot``/``orig`` ``(h, w, 3)``) whose stored rect is ``stored``."""
    changed = _changed(prot, orig)
    if mask is not None:
        changed |= mask > 0
    return _reencode(jpg, to_stored_orientation(prot, orientation, copy=False),
                     to_stored_orientation(orig, orientation, copy=False),
                     to_stored_orientation(changed, orientation), origin=(stored[0], stored[1]))


def _finish(source: bytes, segs: list[tuple[int, bytes]], sos: int, jpg: Any, n_re: int, n_changed: int,
            strip_gps: bool) -> tuple[bytes, JpegWriteResult]:
    """Write ``jpg``'s coefficients with the source's kept segments: the output's bytes and the result."""
    del segs  # the kept segments are read again from the source (kept_segments)
    samp = np.asarray(jpg.samp_factor, dtype=int)
    notes: list[str] = []
    if jpg.progressive_mode:
        notes.append("progressive input written as baseline (sequential) JPEG; pixels identical")
    keep, seg_notes = kept_segments(source, strip_gps=strip_gps)
    notes += seg_notes
    eoi = source.find(b"\xff\xd9", sos)  # entropy-coded data never holds FF D9: the primary image's end
    if eoi >= 0 and len(source.rstrip(b"\x00")) > eoi + 2:
        notes.append(f"{len(source) - eoi - 2} bytes after the image (extra images, trailers) dropped")
    import jpeglib

    jpg.markers = []
    with tempfile.TemporaryDirectory(prefix="nullswap-jpeg-") as d:
        dst = Path(d) / "out.jpg"
        try:
            with jpeglib.version(JPEGLIB_VERSION):
                jpg.write_dct(str(dst), flags=[] if standard_huffman(source) else ["+OPTIMIZE_CODING"])
        except (OSError, ValueError, RuntimeError) as e:
            raise UnsupportedJpegError(f"libjpeg could not write the coefficients ({e})") from e
        encoded = dst.read_bytes()
    out = _insert_segments(_restore_component_ids(encoded, _component_ids(source)), keep)
    blocks = int(sum(np.prod(c.shape[:2]) for c in ([jpg.Y, jpg.Cb, jpg.Cr] if jpg.num_components == 3 else [jpg.Y])))
    result = JpegWriteResult(None, blocks, n_re, n_changed, len(source), len(out), _sampling_name(samp),
                             int(np.asarray(jpg.qt).shape[0]), notes)
    return out, result


def _windows_rect(boxes: Sequence[tuple[int, int, int, int]], hw: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The upright ``(y0, x0, y1, x1)`` around ``boxes`` ((x0, y0, x1, y1)) inside a photo of size ``hw``."""
    h, w = hw
    clipped = [(max(int(y0), 0), max(int(x0), 0), min(int(y1), h), min(int(x1), w)) for x0, y0, x1, y1 in boxes]
    clipped = [r for r in clipped if r[2] > r[0] and r[3] > r[1]]
    if not clipped:
        return None
    return (min(r[0] for r in clipped), min(r[1] for r in clipped), max(r[2] for r in clipped),
            max(r[3] for r in clipped))


def encode_protected_jpeg(
    source: bytes,
    protected: torch.Tensor | np.ndarray,
    original: torch.Tensor | np.ndarray | None = None,
    *,
    mask: torch.Tensor | np.ndarray | None = None,
    windows: Sequence[tuple[int, int, int, int]] | None = None,
    strip_gps: bool = True,
) -> tuple[bytes, JpegWriteResult]:
    """Encode ``protected`` as a JPEG that shares every untouched block with ``source`` (see the module docstring).

    Args:
        source: the source JPEG file's bytes.
        protected: ``(3,H,W)`` RGB in [0,1], upright (EXIF orientation applied, as :func:`read_image` returns it).
        original: the source's upright decode, ``(3,H,W)`` in [0,1] (``LoadedImage.tensor``); decoded from
            ``source`` with Pillow when omitted.
        mask: optional ``(H,W)`` face mask (upright, e.g. ``paste_back(..., return_mask=True)``'s): its blocks are
            re-encoded too. Without it, the blocks that hold a pixel where ``protected`` differs from ``original``.
        windows: optional upright boxes ``(x0, y0, x1, y1)`` outside which ``protected`` equals ``original`` (and
            ``mask`` is 0), e.g. the faces' patch boxes: only the blocks around them are compared (the output is
            the same as without, at a cost that follows the faces, not the photo).
        strip_gps: drop the EXIF GPS block (and an XMP packet with GPS fields).

    Returns:
        ``(bytes, result)``; ``result.path`` is ``None``.

    Raises:
        UnsupportedJpegError: a JPEG this writer does not handle (the caller re-encodes the whole photo).
        InputError: ``protected`` / ``original`` / ``mask`` shapes disagree with the source.
    """
    segs, sos, orientation, jpg = _open_source(source)
    prot = _hwc(protected, "protected")
    if original is None:
        from PIL import ImageOps

        with Image.open(_io.BytesIO(source)) as im:
            orig = np.asarray((ImageOps.exif_transpose(im) or im).convert("RGB"))
    else:
        orig = _hwc(original, "original")
    if prot.shape != orig.shape:
        raise InputError(f"protected: expected the source's upright size {orig.shape[:2]}, got {prot.shape[:2]}")
    m = None
    if mask is not None:
        m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        if m.shape != prot.shape[:2]:
            raise InputError(f"mask: expected shape {prot.shape[:2]}, got {tuple(m.shape)}")
    hw = (int(prot.shape[0]), int(prot.shape[1]))
    _check_upright_size(jpg, hw, orientation, "protected")
    rect = (0, 0, hw[0], hw[1]) if windows is None else _windows_rect(windows, hw)
    n_re = n_changed = 0
    if rect is not None:
        (y0, x0, y1, x1), stored = _mcu_region(jpg, rect, orientation, hw)
        n_re, n_changed = _reencode_region(jpg, prot[y0:y1, x0:x1], orig[y0:y1, x0:x1],
                                           None if m is None else m[y0:y1, x0:x1], orientation, stored)
    return _finish(source, segs, sos, jpg, n_re, n_changed, strip_gps)


def _crop_hwc(image: torch.Tensor | np.ndarray, rect: tuple[int, int, int, int], name: str) -> np.ndarray:
    """An ``(h, w, 3)`` float32 copy of ``image`` in ``rect`` = (y0, x0, y1, x1).

    ``image``: ``(3,H,W)`` float (tensor or array), or an ``(H,W,3)`` uint8 array whose float is ``u / 255``
    (float32, exactly what :func:`nullswap.faces.io.read_image` gives for it).
    """
    y0, x0, y1, x1 = rect
    if isinstance(image, np.ndarray) and image.dtype == np.uint8:
        return np.true_divide(image[y0:y1, x0:x1], np.float32(255.0), dtype=np.float32)  # u8 -> f32, / 255
    if isinstance(image, torch.Tensor):
        crop = image.detach()[:, y0:y1, x0:x1].to("cpu", torch.float32).numpy()
    else:
        crop = np.asarray(image)[:, y0:y1, x0:x1].astype(np.float32, copy=False)
    return np.ascontiguousarray(crop.transpose(1, 2, 0), dtype=np.float32)


class _PatchedRegion:
    """The protected and the original pixels of an upright region, built strip by strip on demand (the last kept).

    ``prot``: ``clean`` with the windows written in (float32); ``orig``: float32 ``clean``, or its 8-bit decode with
    ``compare="decode"``. :meth:`stored` gives views that :func:`_reencode` indexes like arrays. Nothing of the
    region's size is allocated, so the encoder's memory is a strip's.
    """

    def __init__(self, clean: torch.Tensor | np.ndarray, windows: Sequence[Window], up: tuple[int, int, int, int],
                 orientation: int, compare: str) -> None:
        self.clean, self.windows, self.up, self.orientation, self.compare = clean, windows, up, orientation, compare
        self.hw = (up[2] - up[0], up[3] - up[1])
        self._last: tuple[tuple[int, int, int, int], tuple[np.ndarray, np.ndarray]] | None = None

    def upright(self, rect: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        """``(prot, orig)`` ``(h, w, 3)`` of the region-local upright ``rect`` = (y0, x0, y1, x1)."""
        if self._last is not None and self._last[0] == rect:
            return self._last[1]
        y0, x0 = self.up[0] + rect[0], self.up[1] + rect[1]
        y1, x1 = self.up[0] + rect[2], self.up[1] + rect[3]
        orig = _crop_hwc(self.clean, (y0, x0, y1, x1), "clean")
        u8 = isinstance(self.clean, np.ndarray) and self.clean.dtype == np.uint8
        prot = orig if self.compare == "decode" and u8 else orig.copy()  # orig is then the uint8 pixels
        for win in self.windows:
            bx0, by0, bx1, by1 = (int(v) for v in win.box)
            ax0, ay0, ax1, ay1 = max(bx0, x0), max(by0, y0), min(bx1, x1), min(by1, y1)
            if ax1 > ax0 and ay1 > ay0:
                px = win.pixels[:, ay0 - by0:ay1 - by0, ax0 - bx0:ax1 - bx0]
                px = px.detach().to("cpu", torch.float32).numpy() if isinstance(px, torch.Tensor) else np.asarray(
                    px, dtype=np.float32)
                prot[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0] = px.transpose(1, 2, 0)
        if self.compare == "decode":  # float32 u/255 * 255 is within an ulp of u: the source's 8-bit decode
            if u8:
                orig = self.clean[y0:y1, x0:x1]
            else:
                orig = np.rint(np.clip(orig, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)
        self._last = (rect, (prot, orig))
        return prot, orig

    def stored(self, which: int) -> _StoredView:
        """The stored-orientation view of ``prot`` (``which=0``) or ``orig`` (1)."""
        return _StoredView(self, which)


class _StoredView:
    """``region[ys, xs]`` in the stored orientation of one of a :class:`_PatchedRegion`'s two images."""

    def __init__(self, region: _PatchedRegion, which: int) -> None:
        self.region, self.which = region, which
        rh, rw = region.hw
        self.shape = (rw, rh, 3) if _swaps_axes(region.orientation) else (rh, rw, 3)

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        ys, xs = key
        sy0, sy1, _ = ys.indices(self.shape[0])
        sx0, sx1, _ = xs.indices(self.shape[1])
        r = self.region
        rect = _map_rect((sy0, sx0, sy1, sx1), lambda y, x: _to_upright_point(y, x, r.orientation, r.hw))
        return to_stored_orientation(r.upright(rect)[self.which], r.orientation, copy=False)


#: One MCU strip's blocks and their DCT (:func:`_strip_coefs`).
_Coefs = tuple[int, int, int, np.ndarray, np.ndarray, np.ndarray]  # component, first block row / col, rows, cols, coefs
_StripCoefs = list[_Coefs]


def _patched_coefs(region: _PatchedRegion, stored: tuple[int, int, int, int], geometry: Any) -> _StripCoefs:
    """The DCT of the change in every block of ``region`` that holds a changed pixel, MCU strip by MCU strip.

    One pass: each strip's pixels are compared and transformed together (the strips' blocks are the ones
    :func:`_reencode` finds from the whole changed mask; a block's coefficients depend on its own pixels only).

    Args:
        region: the patched region; its stored rect ``stored`` starts on the MCU grid and ends on it or at the
            photo's edge (:func:`_mcu_region`).
        stored: ``(y0, x0, y1, x1)`` in the stored photo.
        geometry: ``height``, ``width``, ``samp_factor`` of the photo (the loaded coefficients, or
            :func:`_frame_geometry` before they are read).
    """
    h, w = int(geometry.height), int(geometry.width)
    samp = np.asarray(geometry.samp_factor, dtype=int)
    mcu_h, mcu_w = 8 * int(samp[:, 0].max()), 8 * int(samp[:, 1].max())
    oy, ox, sy1, sx1 = stored
    y_hi, x_hi = -(-sy1 // mcu_h) * mcu_h, -(-sx1 // mcu_w) * mcu_w
    prot_view, orig_view = region.stored(0), region.stored(1)
    strip = max(mcu_h, (_STRIP_ROWS // mcu_h) * mcu_h)
    sw_full = x_hi - ox
    xs = slice(0, min(x_hi, w) - ox)
    out: _StripCoefs = []
    for y0 in range(oy, y_hi, strip):
        y1 = min(y0 + strip, y_hi)
        ys = slice(y0 - oy, min(y1, h) - oy)
        prot, orig = prot_view[ys, xs], orig_view[ys, xs]
        ch = np.zeros((y1 - y0, sw_full), dtype=bool)
        ch[:prot.shape[0], :prot.shape[1]] = _changed(prot, orig)
        cols = np.flatnonzero(ch.any(axis=0))
        if cols.size == 0:
            continue
        # only the MCU columns between the strip's first and last changed pixel are transformed
        cx0, cx1 = (int(cols[0]) // mcu_w) * mcu_w, -(-(int(cols[-1]) + 1) // mcu_w) * mcu_w
        out += _strip_coefs(prot[:, cx0:cx1], orig[:, cx0:cx1], ch[:, cx0:cx1], samp, samp.shape[0], y0, ox + cx0)
    return out


def _apply_coefs(jpg: Any, coefs: Iterable[_Coefs]) -> tuple[int, int]:
    """Add :func:`_patched_coefs`'s blocks to ``jpg``'s coefficients (:func:`_add_coefs`); (re-encoded, changed)."""
    names = ["Y"] + (["Cb", "Cr"] if jpg.num_components == 3 else [])
    planes = [getattr(jpg, n) for n in names]  # int16, modified in place (the clipped values fit)
    tables = [np.asarray(jpg.get_component_qt(i), dtype=np.float64) for i in range(len(names))]
    n_re = n_changed = 0
    for c, by0, bx0, iy, ix, coef in coefs:
        counts = _add_coefs(planes[c], tables[c], by0, bx0, iy, ix, coef)
        n_re += counts[0]
        n_changed += counts[1]
    for n, plane in zip(names, planes, strict=True):
        setattr(jpg, n, plane)
    return n_re, n_changed


def _early_geometry(frame: SimpleNamespace | None, stored_hw: tuple[int, int]) -> bool:
    """Whether the frame header's geometry can be used before the coefficients are read (a frame this writer takes)."""
    if frame is None or stored_hw != (frame.height, frame.width) or frame.samp_factor.shape[0] not in (1, 3):
        return False
    samp = frame.samp_factor
    return not (np.any(samp[:, 0].max() % samp[:, 0]) or np.any(samp[:, 1].max() % samp[:, 1]))


def encode_patched_jpeg(
    source: bytes,
    clean: torch.Tensor | np.ndarray,
    windows: Sequence[Window],
    *,
    compare: Literal["float", "decode"] = "float",
    strip_gps: bool = True,
) -> tuple[bytes, JpegWriteResult]:
    """:func:`encode_protected_jpeg` of ``clean`` with ``windows`` written into it, without a full-size copy.

    Only the MCUs under the windows' boxes are read, patched, compared and re-encoded, strip by strip: the cost
    follows the faces, not the photo, and neither a patched copy of the photo (nor of the faces' region) nor a
    decode of the source is needed. Each strip is compared and transformed in one pass, while libjpeg reads the
    source's coefficients on a helper thread (the frame header gives the geometry); the BLAS products run on the
    calling thread (:func:`_matmul_1t`). The bytes are those of the two-pass, sequential writer before 2026-11-30.

    Args:
        source: the source JPEG file's bytes.
        clean: the source's upright decode: ``(3,H,W)`` float in [0,1] (``LoadedImage.tensor``), or ``(H,W,3)``
            uint8 (``LoadedImage.rgb8``, standing for ``rgb8 / 255``: the same bytes); not modified.
        windows: applied in order (a later one over an earlier one), as :func:`~nullswap.faces.pasteback.apply_patches`
            does; the protected photo is ``clean`` with them.
        compare: what the changed pixels are found against: ``"float"``, ``clean`` itself (what
            ``encode_protected_jpeg(source, protected, clean)`` does), ``"decode"``, the source's 8-bit decode
            (``round(255 clean)``, what ``encode_protected_jpeg(source, protected)`` does: the same bytes, no decode).
        strip_gps: drop the EXIF GPS block (and an XMP packet with GPS fields).

    Returns:
        ``(bytes, result)``, the bytes :func:`encode_protected_jpeg` gives for the patched photo.

    Raises:
        UnsupportedJpegError: a JPEG this writer does not handle.
        InputError: ``clean``'s shape disagrees with the source, or a bad ``compare``.
    """
    if compare not in ("float", "decode"):
        raise InputError(f"compare: expected 'float' or 'decode', got {compare!r}")
    u8 = isinstance(clean, np.ndarray) and clean.dtype == np.uint8
    if clean.ndim != 3 or (clean.shape[2] if u8 else clean.shape[0]) != 3:
        raise InputError(f"clean: expected a (3,H,W) RGB image or (H,W,3) uint8 pixels, got shape "
                         f"{tuple(clean.shape)}")
    segs, sos = jpeg_segments(source)
    _check_dct_frame(segs)
    orientation = _orientation(segs)
    hw = (int(clean.shape[0]), int(clean.shape[1])) if u8 else (int(clean.shape[1]), int(clean.shape[2]))
    rect = _windows_rect([w.box for w in windows], hw)
    frame = _frame_geometry(segs)
    early: tuple[tuple[int, int, int, int], _StripCoefs] | None = None
    # libjpeg reads the coefficients (ctypes: without the GIL) on a helper thread while this one compares and
    # transforms the pixels under the windows, which needs only the frame header's geometry: on two cores they overlap
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nullswap-jpeg-read") as pool:
        reading = pool.submit(_read_supported, source)
        stored_hw = (hw[1], hw[0]) if _swaps_axes(orientation) else hw
        if rect is not None and frame is not None and _early_geometry(frame, stored_hw):
            up, stored = _mcu_region(frame, rect, orientation, hw)
            early = (stored, _patched_coefs(_PatchedRegion(clean, windows, up, orientation, compare), stored, frame))
        jpg = reading.result()
    _check_upright_size(jpg, hw, orientation, "clean")
    n_re = n_changed = 0
    if rect is not None:
        if early is None or frame is None or not _same_geometry(frame, jpg):
            up, stored = _mcu_region(jpg, rect, orientation, hw)
            early = (stored, _patched_coefs(_PatchedRegion(clean, windows, up, orientation, compare), stored, jpg))
        n_re, n_changed = _apply_coefs(jpg, early[1])
    return _finish(source, segs, sos, jpg, n_re, n_changed, strip_gps)


def write_protected_jpeg(
    source: bytes | str | os.PathLike[str],
    protected: torch.Tensor | np.ndarray,
    out_path: str | os.PathLike[str],
    *,
    original: torch.Tensor | np.ndarray | None = None,
    mask: torch.Tensor | np.ndarray | None = None,
    strip_gps: bool = True,
    overwrite: bool = False,
) -> JpegWriteResult:
    """Write ``protected`` to ``out_path`` re-encoding only the blocks that changed from ``source``.

    Args:
        source: the source JPEG (its bytes, or its path).
        protected: ``(3,H,W)`` RGB in [0,1], upright.
        out_path: destination (written through a ``.part`` file, then renamed).
        original: the source's upright decode (``LoadedImage.tensor``); decoded when omitted.
        mask: optional ``(H,W)`` upright face mask whose blocks are re-encoded too.
        strip_gps: drop GPS (EXIF GPS block, XMP with GPS fields).
        overwrite: allow replacing an existing file.

    Raises:
        UnsupportedJpegError: a JPEG this writer does not handle (progressive sources are handled).
        ImageWriteError: destination exists (without ``overwrite``) or cannot be written.
        InputError: shapes disagree with the source.
    """
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    p = Path(out_path)
    if p.exists() and not overwrite:
        raise ImageWriteError(p, "file exists (refusing to overwrite)")
    out, result = encode_protected_jpeg(data, protected, original, mask=mask, strip_gps=strip_gps)
    write_bytes_atomic(p, out)
    result.path = p
    log.info("%s: %d of %d blocks re-encoded (%d changed), %d -> %d bytes (%.1f %%)", p.name, result.blocks_reencoded,
             result.blocks, result.blocks_changed, result.input_bytes, result.output_bytes,
             100.0 * result.output_bytes / max(result.input_bytes, 1))
    return result


__all__ = ["JPEGLIB_VERSION", "JpegWriteResult", "Window", "encode_patched_jpeg", "encode_protected_jpeg",
           "jpeg_segments", "kept_segments", "standard_huffman",
           "to_stored_orientation", "unchanged_region", "write_protected_jpeg"]
