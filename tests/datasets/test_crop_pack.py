"""Crop packs: exact (raw) and lossy (JPEG 4:4:4) round trips, refusals, and ``data.packs`` in build_datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nullswap.datasets.crop_pack import load_crop_pack, save_crop_pack
from nullswap.datasets.faces import AlignedFaces
from nullswap.errors import InputError
from nullswap.train.config import load_config
from nullswap.train.trainer import build_datasets


def _smooth_crops(n: int) -> np.ndarray:
    """Smooth synthetic 128-px crops (gradients + a blob), the kind JPEG codes well."""
    yy, xx = np.mgrid[0:128, 0:128].astype(np.float64) / 127
    out = []
    for i in range(n):
        blob = np.exp(-((xx - 0.3 - 0.1 * i) ** 2 + (yy - 0.5) ** 2) / 0.05)
        rgb = np.stack([0.2 + 0.6 * xx, 0.3 + 0.4 * yy, 0.2 + 0.5 * blob])
        out.append(np.clip(rgb * 255, 0, 255).round().astype(np.uint8))
    return np.stack(out)


def _faces(n: int = 5) -> AlignedFaces:
    labels = [i % 2 for i in range(n)]
    return AlignedFaces.from_arrays(_smooth_crops(n), labels, ["alice", "bob"], "protector-128")


def test_raw_pack_round_trip_is_exact(tmp_path):
    faces = _faces()
    path = save_crop_pack(faces, tmp_path / "p.npz", codec="raw", detector="mtcnn")
    back = load_crop_pack(path)
    assert np.array_equal(np.asarray(back._crops), np.asarray(faces._crops))
    assert torch.equal(back.labels, faces.labels)
    assert back.identities == ["alice", "bob"] and back.template.name == "protector-128"
    assert torch.equal(back.tensor([1, 3]), faces.tensor([1, 3]))
    x, y = back[2]
    assert x.shape == (3, 128, 128) and x.dtype == torch.float32 and y == 0


def test_jpeg_pack_is_close_and_in_order(tmp_path):
    faces = _faces()
    back = load_crop_pack(save_crop_pack(faces, tmp_path / "p.npz", quality=92), threads=2)
    a = np.asarray(faces._crops).astype(np.float64)
    b = np.asarray(back._crops).astype(np.float64)
    assert b.shape == a.shape and back._crops.dtype == np.uint8
    psnr = [10 * np.log10(255**2 / max(((a[i] - b[i]) ** 2).mean(), 1e-12)) for i in range(len(a))]
    assert min(psnr) > 40, psnr
    # each crop is closest to its own source: the order is kept
    d = ((a[:, None] - b[None]) ** 2).mean(axis=(2, 3, 4))
    assert (d.argmin(axis=1) == np.arange(len(a))).all()


def test_pack_refusals(tmp_path):
    faces = _faces(2)
    with pytest.raises(InputError, match="codec"):
        save_crop_pack(faces, tmp_path / "p.npz", codec="png")
    with pytest.raises(InputError, match="quality"):
        save_crop_pack(faces, tmp_path / "p.npz", quality=0)
    with pytest.raises(InputError, match="found none"):
        load_crop_pack(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(InputError, match="format"):
        load_crop_pack(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="npz"):
        load_crop_pack(tmp_path / "junk.npz")


def test_from_arrays_refusals():
    crops = _smooth_crops(2)
    with pytest.raises(InputError, match="uint8"):
        AlignedFaces.from_arrays(crops.astype(np.float32), [0, 0], ["a"], "protector-128")
    with pytest.raises(InputError, match="template"):
        AlignedFaces.from_arrays(crops[:, :, :64], [0, 0], ["a"], "protector-128")
    with pytest.raises(InputError, match="one per crop"):
        AlignedFaces.from_arrays(crops, [0], ["a"], "protector-128")
    with pytest.raises(InputError, match="indices"):
        AlignedFaces.from_arrays(crops, [0, 1], ["a"], "protector-128")


def test_build_datasets_reads_packs(tmp_path):
    train = save_crop_pack(_faces(4), tmp_path / "train.npz", codec="raw")
    val = save_crop_pack(_faces(2), tmp_path / "val.npz", codec="raw")
    cfg = load_config(None, [f"data.packs={{train: {train}, val: {val}}}", "data.root=/nonexistent"])
    ds = build_datasets(cfg)
    assert set(ds) == {"train", "val"} and len(ds["train"]) == 4 and len(ds["val"]) == 2
    with pytest.raises(InputError, match="train"):
        build_datasets(load_config(None, [f"data.packs={{val: {val}}}"]))
    with pytest.raises(InputError, match="packs"):
        build_datasets(load_config(None, [f"data.packs={{training: {train}}}"]))
