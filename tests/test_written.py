"""The verdict's pixels are the written file's: :mod:`nullswap.written` against a real write and read-back."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from nullswap import written
from nullswap.faces.io import read_image, write_image
from nullswap.written import apply_windows, save_encoded, written_pixels, written_region


def _photo(path, fmt: str, mode: str = "RGB", orientation: int = 1, size=(200, 152)):
    rng = np.random.default_rng(0)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], 2)
    arr = np.clip(arr + rng.normal(0, 8, arr.shape), 0, 255).astype(np.uint8)
    im = Image.fromarray(arr, "RGB").convert(mode)
    kwargs = {}
    if fmt == "JPEG":
        kwargs = {"quality": 90, "subsampling": 2}
        if orientation != 1:
            exif = Image.Exif()
            exif[0x0112] = orientation
            kwargs["exif"] = exif.tobytes()
    im.save(path, format=fmt, **kwargs)
    return read_image(path)


def _patches(clean: torch.Tensor):
    """Two overlapping face windows with a visible change (as face_patches returns them)."""
    g = torch.Generator().manual_seed(1)
    out = []
    for box in ((20, 30, 90, 110), (70, 50, 150, 130)):
        x0, y0, x1, y1 = box
        base = apply_windows(clean[:, y0:y1, x0:x1].clone(), out, (x0, y0))
        out.append(SimpleNamespace(box=box, pixels=(base + 0.03 * torch.randn(base.shape, generator=g)).clamp(0, 1)))
    return out


@pytest.mark.parametrize(
    ("fmt", "suffix", "mode", "orientation"),
    [
        ("JPEG", ".jpg", "RGB", 1),
        ("JPEG", ".jpg", "RGB", 6),
        ("JPEG", ".jpg", "L", 1),
        ("PNG", ".png", "RGB", 1),
        ("PNG", ".png", "L", 1),
        ("WEBP", ".webp", "RGB", 1),
    ],
)
@pytest.mark.parametrize("in_place", [False, True])
def test_written_region_is_what_the_file_reads_back(tmp_path, monkeypatch, fmt, suffix, mode, orientation, in_place):
    if in_place:  # the large-photo path: patched in place, the writer decodes the source to compare
        monkeypatch.setattr(written, "COPY_MAX_PIXELS", 0)
    src = _photo(tmp_path / f"in{suffix}", fmt, mode, orientation)
    clean_before = src.tensor.clone()
    patches = _patches(src.tensor)
    region = (10, 20, 140, 140)
    got, enc = written_region(src.tensor, patches, src, region)
    assert torch.equal(src.tensor, clean_before)  # patched in place for the encode, then restored
    full = apply_windows(src.tensor.clone(), patches)
    out = write_image(tmp_path / f"out{suffix}", full, like=src)
    back = read_image(out).tensor
    x0, y0, x1, y1 = region
    assert torch.equal(got, back[:, y0:y1, x0:x1])
    assert (enc is not None) == (fmt == "JPEG")
    if enc is not None:  # saving the kept bytes writes the same file's pixels, with write_image's record
        rec: dict = {}
        saved = save_encoded(tmp_path / f"kept{suffix}", enc, record=rec)
        assert torch.equal(read_image(saved).tensor, back)
        assert rec["writer"] == "jpeg-coefficients" and rec["path"] == str(saved) and rec["blocks_reencoded"] > 0
        with pytest.raises(OSError, match="exists"):
            save_encoded(saved, enc)
    whole, _ = written_pixels(full, src)
    assert torch.equal(whole, back)
    if fmt == "JPEG" and mode == "RGB":  # the point: the file is not the in-memory photo
        assert not torch.equal(got, full[:, y0:y1, x0:x1])


def test_tensor_input_is_verified_as_8_bit(tmp_path):
    x = torch.rand(3, 40, 50)
    got, enc = written_pixels(x, None)
    assert enc is None
    out = write_image(tmp_path / "t.png", x)
    assert torch.equal(got, read_image(out).tensor)


def _old_bytes(src, patches, *, decode: bool, strip_gps: bool = True) -> bytes:
    """What the earlier path wrote: the whole photo patched, every pixel compared (``decode``: the in-place path)."""
    from nullswap.faces.jpeg import encode_protected_jpeg

    full = apply_windows(src.tensor.clone(), patches)
    return encode_protected_jpeg(src.raw, full, None if decode else src.tensor, strip_gps=strip_gps)[0]


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
@pytest.mark.parametrize("in_place", [False, True])
def test_encoded_bytes_equal_the_earlier_whole_photo_path(tmp_path, monkeypatch, orientation, in_place):
    if in_place:
        monkeypatch.setattr(written, "COPY_MAX_PIXELS", 0)
    src = _photo(tmp_path / "in.jpg", "JPEG", "RGB", orientation, size=(203, 157))
    patches = _patches(src.tensor)
    h, w = src.tensor.shape[1:]  # a window over the photo's edge too (parts outside are left out)
    g = torch.Generator().manual_seed(2)
    patches.append(SimpleNamespace(box=(w - 30, h - 25, w + 10, h + 5), pixels=torch.rand(3, 30, 40, generator=g)))
    _, enc = written_region(src.tensor, patches, src, (0, 0, 50, 50))
    assert enc is not None and enc.data == _old_bytes(src, patches, decode=in_place)


def test_save_without_verdict_bytes_equals_the_earlier_in_place_write(tmp_path):
    from nullswap.protection import ProtectedImage

    src = _photo(tmp_path / "in.jpg", "JPEG", "RGB", 6, size=(240, 176))
    patches = _patches(src.tensor)
    before = src.tensor.clone()
    out = ProtectedImage(src.tensor, [], src, "test", patches=patches).save(tmp_path / "out.jpg", strip_gps=False)
    assert torch.equal(src.tensor, before)
    assert out.read_bytes() == _old_bytes(src, patches, decode=True, strip_gps=False)


def test_shared_photo_encoded_bytes_equal_the_earlier_paths(photos_dir, monkeypatch):
    path = photos_dir / "biden_biden.jpg"
    if not path.is_file():
        pytest.skip(f"shared photo missing: {path}")
    src = read_image(path)
    h, w = src.tensor.shape[1:]
    g = torch.Generator().manual_seed(3)
    patches = []
    for x0, y0, x1, y1 in [(w // 4, h // 5, w // 2, h // 2), (w // 3, h // 3, 2 * w // 3, 3 * h // 4)]:
        base = apply_windows(src.tensor[:, y0:y1, x0:x1].clone(), patches, (x0, y0))
        patches.append(SimpleNamespace(box=(x0, y0, x1, y1),
                                       pixels=(base + 0.02 * torch.randn(base.shape, generator=g)).clamp(0, 1)))
    for in_place in (False, True):
        monkeypatch.setattr(written, "COPY_MAX_PIXELS", 0 if in_place else 10**9)
        _, enc = written_region(src.tensor, patches, src, patches[0].box)
        assert enc is not None and enc.data == _old_bytes(src, patches, decode=in_place)
