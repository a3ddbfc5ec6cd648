"""Draft-mode detection copies of JPEGs (nullswap.faces.preview) and the protect path's fast-path options."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from nullswap.errors import InputError
from nullswap.faces.preview import jpeg_preview, to_photo_pixels


def _jpeg(path, w: int, h: int, orientation: int = 1):
    arr = np.zeros((h, w, 3), np.uint8)
    arr[: h // 4, : w // 4] = 255  # a white block at the top left marks the stored orientation
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    Image.fromarray(arr).save(path, quality=90, exif=exif.tobytes())
    return path


def test_preview_is_reduced_and_maps_back_to_photo_pixels(tmp_path):
    p = _jpeg(tmp_path / "a.jpg", 2600, 1600)
    pv = jpeg_preview(p, 640)
    assert pv is not None and pv.size == (1600, 2600)
    h, w = pv.tensor.shape[1:]
    assert max(h, w) >= 640 and max(h, w) < 2600  # libjpeg's 1/2, 1/4 or 1/8, long side still >= 640
    assert pv.scale == pytest.approx((2600 / w, 1600 / h))
    box = torch.tensor([[10.0, 20.0, 30.0, 40.0]])
    assert torch.allclose(to_photo_pixels(box, pv.scale), box * torch.tensor([pv.scale[0], pv.scale[1]] * 2))
    lm = torch.ones(1, 5, 2)
    assert to_photo_pixels(lm, pv.scale)[0, 0].tolist() == pytest.approx(list(pv.scale))
    assert jpeg_preview(p.read_bytes(), 640) is not None


def test_preview_applies_exif_orientation(tmp_path):
    p = _jpeg(tmp_path / "r.jpg", 2600, 1600, orientation=6)  # stored landscape, shown portrait
    pv = jpeg_preview(p, 640)
    assert pv is not None and pv.size == (2600, 1600)
    assert pv.tensor.shape[1] > pv.tensor.shape[2]
    # orientation 6 (rotate 90 clockwise to display): the stored top-left block ends at the top right
    top_right = pv.tensor[:, : pv.tensor.shape[1] // 8, -pv.tensor.shape[2] // 8:].mean()
    assert float(top_right) > 0.9


def test_no_preview_for_small_photos_or_other_formats(tmp_path):
    assert jpeg_preview(_jpeg(tmp_path / "s.jpg", 1000, 700), 640) is None  # under 2 x 640: full decode
    png = tmp_path / "a.png"
    Image.new("RGB", (3000, 2000)).save(png)
    assert jpeg_preview(png, 640) is None
    with pytest.raises(InputError, match="expected a positive int"):
        jpeg_preview(png, 0)


def test_refine_needs_method_nullswap_and_threads_default():
    from nullswap.protection import DEFAULT_DETECTOR, PhotoProtector, physical_cores

    assert DEFAULT_DETECTOR == "scrfd"
    assert physical_cores() >= 1
    with pytest.raises(InputError, match="expected method nullswap"):
        PhotoProtector("pgd", refine=5, device="cpu")
    with pytest.raises(InputError, match="expected an int >= 0"):
        PhotoProtector("nullswap", refine=-1, device="cpu")
