"""Dataset listing, identity-disjoint splits and the aligned-crop cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nullswap.datasets.faces import (
    AlignedFaces,
    FaceRecord,
    identity_disjoint_split,
    limit_records,
    scan_faces,
)
from nullswap.errors import InputError


def _img(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)


def test_identity_folders_and_images_subfolder(tmp_path):
    for name in ("Alice", "Bob"):
        for i in range(3):
            _img(tmp_path / "images" / name / f"{name}_{i:04d}.jpg", i)
    (tmp_path / "images" / "Bob" / "notes.txt").write_text("not an image")
    recs = scan_faces(tmp_path)
    assert [r.identity for r in recs] == ["Alice"] * 3 + ["Bob"] * 3
    assert all(r.path.suffix == ".jpg" for r in recs)


def test_plain_layout_gives_each_image_its_own_identity(tmp_path):
    for i in range(3):
        _img(tmp_path / "sub" / f"{i:05d}.png", i)
    recs = scan_faces(tmp_path, "plain")
    assert len({r.identity for r in recs}) == 3


def test_celeba_hq_identities_and_official_split(tmp_path):
    for i in range(4):
        _img(tmp_path / f"{i}.jpg", i)
    (tmp_path / "map.txt").write_text("idx orig_idx orig_file\n0 10 000011.jpg\n1 11 000012.jpg\n2 12 000013.jpg\n"
                                      "3 13 000014.jpg\n")
    (tmp_path / "ids.txt").write_text("0.jpg 7\n1.jpg 7\n2.jpg 9\n3.jpg 5\n")
    (tmp_path / "part.txt").write_text("000011.jpg 0\n000012.jpg 0\n000013.jpg 1\n000014.jpg 2\n")
    recs = scan_faces(tmp_path, "celeba-hq", identity_file=tmp_path / "ids.txt", mapping_file=tmp_path / "map.txt",
                      partition_file=tmp_path / "part.txt")
    assert [r.identity for r in recs] == ["7", "7", "9", "5"]
    parts = identity_disjoint_split(recs)
    assert [len(parts[k]) for k in ("train", "val", "test")] == [2, 1, 1]
    # identities through the CelebA mapping instead of the HQ identity file
    (tmp_path / "celeba_ids.txt").write_text("000011.jpg 1\n000012.jpg 1\n000013.jpg 2\n000014.jpg 3\n")
    recs2 = scan_faces(tmp_path, "celeba-hq", mapping_file=tmp_path / "map.txt",
                       celeba_identity_file=tmp_path / "celeba_ids.txt")
    assert [r.identity for r in recs2] == ["1", "1", "2", "3"]
    with pytest.raises(InputError, match="identity_file"):
        scan_faces(tmp_path, "celeba-hq")


def test_split_is_identity_disjoint_and_seeded():
    recs = [FaceRecord(Path(f"/x/{i}_{j}.jpg"), str(i)) for i in range(50) for j in range(3)]
    a = identity_disjoint_split(recs, seed=1)
    b = identity_disjoint_split(recs, seed=1)
    assert a == b
    ids = {k: {r.identity for r in v} for k, v in a.items()}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    assert len(ids["train"]) == 40 and len(ids["val"]) == 5 and len(ids["test"]) == 5
    with pytest.raises(InputError, match="sum"):
        identity_disjoint_split(recs, (0.5, 0.1, 0.1))
    assert len(limit_records(recs, 4, 2)) == 8


def test_bad_layout_and_root(tmp_path):
    with pytest.raises(InputError, match="layout"):
        scan_faces(tmp_path, "ffhq-weird")
    with pytest.raises(InputError, match="missing"):
        scan_faces(tmp_path / "nope")
    with pytest.raises(InputError, match="found none"):
        scan_faces(tmp_path)


@pytest.mark.shared
def test_aligned_celeba_crops_are_cached(shared, tmp_path):
    recs = limit_records(scan_faces(shared / "data" / "celeba"), 2, 3)
    ds = AlignedFaces(recs, template="protector-128", cache_dir=tmp_path)
    assert len(ds) >= 5 and ds.identities == sorted({r.identity for r in recs})
    x, y = ds[0]
    assert x.shape == (3, 128, 128) and float(x.min()) >= 0 and float(x.max()) <= 1 and y == 0
    assert len(list(tmp_path.glob("*.npy"))) == 1
    again = AlignedFaces(recs, template="protector-128", cache_dir=tmp_path, detector="mtcnn")
    assert np.array_equal(again.tensor().numpy(), ds.tensor().numpy())
