"""Crop packs: a dataset's aligned face crops in one portable file, to train where the source photos are not.

A pack holds what :class:`~nullswap.datasets.faces.AlignedFaces` serves (crops in order, identity labels, identity
names, alignment template), so ``data.packs`` in a training config (:func:`nullswap.train.trainer.build_datasets`)
trains on exactly the crops the pack was made from, in the same order: per-crop state such as the NullSwap recipe's
clean-embedding cache and a resumed run's sampler position stay valid.

Format (``.npz``, no pickled objects): ``format`` (``"nullswap-crop-pack/1"``), ``codec`` (``"raw"`` or
``"jpeg444"``), ``template``, ``detector``, ``labels`` ``(N,)`` int64, ``identities`` ``(K,)`` str, ``shape``
``(4,)``; with ``raw`` the crops as ``crops`` ``(N,3,h,w)`` uint8 (compressed npz, lossless); with ``jpeg444`` the
concatenated JPEG files ``data`` and their ``offsets`` ``(N+1,)`` plus ``quality``.

Choice: JPEG at quality 92 without chroma subsampling is the lossy codec; it brings the 4,150 CelebA training crops at
128 px from 204 MB (raw) to 32 MB, the size that fits a 64 MiB transfer to a rented GPU machine beside the repo, and
its error is small but not negligible: 41.0 dB mean PSNR (37.8 dB at worst) over every tenth of those crops, against
the cloak's ~37 dB, so a model trained on a lossy pack sees slightly noisier faces than it protects. ``raw`` is exact.
"""

from __future__ import annotations

import io
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from nullswap.datasets.faces import AlignedFaces
from nullswap.errors import InputError

log = logging.getLogger(__name__)

FORMAT = "nullswap-crop-pack/1"
CODECS = ("raw", "jpeg444")


def save_crop_pack(
    faces: AlignedFaces,
    path: str | os.PathLike[str],
    codec: str = "jpeg444",
    quality: int = 92,
    detector: str = "",
) -> Path:
    """Write ``faces`` (its crops, labels, identities and template) as a crop pack.

    Args:
        faces: the aligned crops, e.g. one split of :func:`nullswap.train.trainer.build_datasets`.
        path: the ``.npz`` file to write (written to a temporary name, then moved into place).
        codec: ``"jpeg444"`` (lossy, small) or ``"raw"`` (exact).
        quality: JPEG quality 1-100 (``jpeg444`` only).
        detector: the detector that found the faces, recorded for provenance.

    Returns:
        The path written.

    Raises:
        InputError: unknown codec, quality outside 1-100, or an empty dataset.
    """
    if codec not in CODECS:
        raise InputError(f"codec: expected one of {CODECS}, got {codec!r}")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise InputError(f"quality: expected an int in [1, 100], got {quality!r}")
    n = len(faces)
    if n == 0:
        raise InputError("faces: expected at least one crop, got none")
    crops = np.asarray(faces._crops)
    meta = {
        "format": np.array(FORMAT),
        "codec": np.array(codec),
        "template": np.array(faces.template.name),
        "detector": np.array(detector),
        "labels": faces.labels.numpy().astype(np.int64),
        "identities": np.array(list(faces.identities), dtype=str),
        "shape": np.array(crops.shape, dtype=np.int64),
    }
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part.npz")
    if codec == "raw":
        np.savez_compressed(tmp, crops=crops, **meta)
    else:
        bufs = []
        for i in range(n):
            b = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(crops[i].transpose(1, 2, 0))).save(
                b, "JPEG", quality=quality, subsampling=0
            )
            bufs.append(np.frombuffer(b.getvalue(), np.uint8))
        offsets = np.cumsum([0] + [len(x) for x in bufs]).astype(np.int64)
        np.savez(tmp, data=np.concatenate(bufs), offsets=offsets, quality=np.int64(quality), **meta)
    tmp.replace(out)
    log.info("crop pack: %d crops (%s) -> %s, %.1f MB", n, codec, out, out.stat().st_size / 1e6)
    return out


def load_crop_pack(path: str | os.PathLike[str], threads: int = 4) -> AlignedFaces:
    """Read a crop pack written by :func:`save_crop_pack` into an :class:`AlignedFaces` (same order).

    Args:
        path: the ``.npz`` file.
        threads: JPEG decoding threads.

    Raises:
        InputError: a missing file, or a file that is not a crop pack of a known format.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"crop pack: expected a file at {str(p)!r}, found none")
    try:
        z = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"crop pack {str(p)!r}: expected an .npz file, got {e}") from e
    with z:
        fmt = str(z["format"]) if "format" in z.files else None
        if fmt != FORMAT:
            raise InputError(f"crop pack {str(p)!r}: expected format {FORMAT!r}, got {fmt!r}")
        codec = str(z["codec"])
        shape = tuple(int(v) for v in z["shape"])
        if codec == "raw":
            crops = z["crops"]
        elif codec == "jpeg444":
            data, off = z["data"], z["offsets"]

            def decode(i: int) -> np.ndarray:
                im = Image.open(io.BytesIO(data[off[i] : off[i + 1]].tobytes())).convert("RGB")
                return np.asarray(im).transpose(2, 0, 1)

            with ThreadPoolExecutor(max(1, threads)) as ex:
                crops = np.stack(list(ex.map(decode, range(len(off) - 1))))
        else:
            raise InputError(f"crop pack {str(p)!r}: expected codec in {CODECS}, got {codec!r}")
        if tuple(crops.shape) != shape:
            raise InputError(f"crop pack {str(p)!r}: expected crops of shape {shape}, got {tuple(crops.shape)}")
        faces = AlignedFaces.from_arrays(crops, z["labels"], [str(s) for s in z["identities"]], str(z["template"]))
    log.info("crop pack: %d crops (%s) from %s", len(faces), codec, p)
    return faces


__all__ = ["CODECS", "FORMAT", "load_crop_pack", "save_crop_pack"]
