"""JPEG in, JPEG out: only the blocks a face touches are re-encoded, every other block decodes bit-identically.

Fixture JPEGs are generated here (textured gradients with EXIF + GPS + ICC, each sampling and orientation); a "face"
is a feathered elliptical change like the paste-back's. One test drives the public API on an LFW face.
"""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, ImageOps

from nullswap.faces.io import read_image, write_image
from nullswap.faces.jpeg import (
    encode_protected_jpeg,
    jpeg_segments,
    standard_huffman,
    to_stored_orientation,
    unchanged_region,
    write_protected_jpeg,
)
from nullswap.faces.pasteback import face_mask

ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([(x * 3) % 256, (y * 2) % 256, (x + 2 * y) % 256], -1).astype(float)
    return np.clip(arr + rng.normal(0, 10, arr.shape), 0, 255).astype(np.uint8)


def _exif(orientation: int = 1) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "TestCam"  # Make
    exif[0x0112] = orientation
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 30.0)}  # GPS IFD
    return exif.tobytes()


def _jpeg(path: Path, *, sampling: str = "4:2:0", orientation: int = 1, progressive: bool = False,
          grey: bool = False, size: tuple[int, int] = (203, 301), quality: int = 88, optimize: bool = True) -> Path:
    arr = _texture(*size)
    im = Image.fromarray(arr[:, :, 0] if grey else arr)
    im.save(path, "JPEG", quality=quality, subsampling=SUBSAMPLING[sampling], exif=_exif(orientation),
            icc_profile=None if grey else ICC, progressive=progressive, optimize=optimize)
    return path


def _cloak(image: torch.Tensor, box: tuple[int, int, int, int], amp: float = 0.04, seed: int = 0) -> torch.Tensor:
    """A face-like change: noise through a feathered elliptical mask in ``box`` (x0, y0, x1, y1); exact elsewhere."""
    x0, y0, x1, y1 = box
    g = torch.Generator().manual_seed(seed)
    m = face_mask((y1 - y0, x1 - x0))
    out = image.clone()
    region = out[:, y0:y1, x0:x1]
    new = (region + m * amp * torch.randn(region.shape, generator=g)).clamp(0, 1)
    out[:, y0:y1, x0:x1] = torch.where(m > 0, new, region)
    return out


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _stored_decode(path: Path) -> np.ndarray:
    """Pixels as stored in the file (no EXIF rotation), RGB uint8."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _samp(path: Path) -> np.ndarray:
    import jpeglib

    return np.asarray(jpeglib.read_dct(str(path)).samp_factor)


def _check_outside_identical(src: Path, out: Path, protected: torch.Tensor, original: torch.Tensor,
                             orientation: int) -> float:
    """Assert bit-identity outside the re-encoded blocks; return the fraction of pixels that region covers."""
    changed = (protected != original).any(0).numpy()
    keep = unchanged_region(to_stored_orientation(changed, orientation), _samp(src))
    a, b = _stored_decode(src), _stored_decode(out)
    assert a.shape == b.shape
    assert np.array_equal(a[keep], b[keep])
    return float(keep.mean())


@pytest.mark.parametrize(("sampling", "orientation", "progressive"), [
    ("4:2:0", 1, False), ("4:4:4", 1, False), ("4:2:2", 1, False), ("4:2:0", 6, False), ("4:4:4", 5, False),
    ("4:2:0", 1, True)])
def test_jpeg_keeps_every_untouched_block(tmp_path, sampling, orientation, progressive):
    src = _jpeg(tmp_path / "in.jpg", sampling=sampling, orientation=orientation, progressive=progressive)
    before = _sha(src)
    loaded = read_image(src)
    protected = _cloak(loaded.tensor, (40, 30, 140, 150))
    rec: dict = {}
    out = write_image(tmp_path / "out.jpg", protected, like=loaded, strip_gps=True, record=rec)
    assert _sha(src) == before  # the input is never touched

    # pixels outside the re-encoded blocks (and chroma's 1-pixel rim) decode bit-identically
    kept = _check_outside_identical(src, out, protected, loaded.tensor, orientation)
    assert kept > 0.6
    # same tables, sampling, size class; EXIF (orientation kept, GPS gone), ICC intact
    with Image.open(src) as a, Image.open(out) as b:
        assert b.format == "JPEG" and b.size == a.size and b.quantization == a.quantization
        assert b.layer == a.layer  # component ids and sampling factors
        exif = b.getexif()
        assert exif.get(0x010F) == "TestCam" and exif.get(0x0112) == orientation and 0x8825 not in exif
        assert b.info.get("icc_profile") == ICC
    ratio = out.stat().st_size / src.stat().st_size
    # a progressive source is written baseline (jpeglib writes sequential JPEGs): a few percent more on this noise
    assert 0.95 <= ratio <= (1.08 if progressive else 1.05), ratio
    assert rec["writer"] == "jpeg-coefficients" and 0 < rec["blocks_reencoded"] < rec["blocks"] / 3
    assert ("baseline" in " ".join(rec["notes"])) == progressive
    # the face carries the cloak, quantised with the input's tables: the written change follows the intended one
    face = (protected != loaded.tensor).any(0)
    written = (read_image(out).tensor - loaded.tensor)[:, face].flatten()
    intended = (protected - loaded.tensor)[:, face].flatten()
    assert float(torch.nn.functional.cosine_similarity(written, intended, dim=0)) > 0.3


@pytest.mark.parametrize("grey", [False, True])
def test_standard_coded_source_is_written_with_the_standard_tables(tmp_path, grey):
    """A baseline source with the Annex K Huffman tables is written with them (no optimising pass): same coding."""
    std = _jpeg(tmp_path / "std.jpg", optimize=False, grey=grey)
    opt = _jpeg(tmp_path / "opt.jpg", optimize=True, grey=grey)
    prog = _jpeg(tmp_path / "prog.jpg", progressive=True, grey=grey)
    assert standard_huffman(std.read_bytes())
    assert not standard_huffman(opt.read_bytes()) and not standard_huffman(prog.read_bytes())
    for src, want_std in ((std, True), (opt, False), (prog, False)):
        loaded = read_image(src)
        protected = _cloak(loaded.tensor, (40, 30, 140, 150))
        out = write_image(tmp_path / f"out-{src.stem}.jpg", protected, like=loaded)
        assert standard_huffman(out.read_bytes()) == want_std, src.name
        assert _check_outside_identical(src, out, protected, loaded.tensor, 1) > 0.6
        if want_std:  # the same coding: about the source's size (the optimised coding is a few % smaller)
            assert 0.97 <= out.stat().st_size / src.stat().st_size <= 1.03


def test_greyscale_jpeg_stays_greyscale_with_copied_blocks(tmp_path):
    src = _jpeg(tmp_path / "g.jpg", grey=True)
    loaded = read_image(src)
    assert loaded.greyscale
    protected = _cloak(loaded.tensor, (100, 50, 200, 170))
    rec: dict = {}
    out = write_image(tmp_path / "o.jpg", protected, like=loaded, record=rec)
    with Image.open(out) as im:
        assert im.mode == "L"
    _check_outside_identical(src, out, protected, loaded.tensor, 1)
    assert rec["writer"] == "jpeg-coefficients" and rec["sampling"] == "grey"
    assert any("colour part is lost" in n for n in rec["notes"])


def test_unchanged_image_gives_the_same_pixels_and_gps_kept_on_request(tmp_path):
    src = _jpeg(tmp_path / "s.jpg")
    loaded = read_image(src)
    out = write_image(tmp_path / "k.jpg", loaded.tensor, like=loaded, strip_gps=False)
    assert np.array_equal(_stored_decode(src), _stored_decode(out))
    assert 0x8825 in Image.open(out).getexif()


def test_mask_blocks_are_reencoded_and_shapes_are_checked(tmp_path):
    src = _jpeg(tmp_path / "s.jpg", size=(64, 96))
    loaded = read_image(src)
    mask = torch.zeros(64, 96)
    mask[10:20, 10:20] = 1
    res = write_protected_jpeg(src, loaded.tensor, tmp_path / "m.jpg", original=loaded.tensor, mask=mask)
    # rows/cols 10-19 span luma blocks 1-2 each way (4) and 4:2:0 chroma blocks (16 px) 0-1 each way (4 per component)
    assert res.blocks_reencoded == 4 + 2 * 4
    assert res.blocks_changed == 0  # nothing changed: the re-encoded blocks keep their coefficients
    from nullswap.errors import ImageWriteError, InputError

    with pytest.raises(ImageWriteError, match="exists"):
        write_protected_jpeg(src, loaded.tensor, tmp_path / "m.jpg")
    with pytest.raises(InputError, match="expected"):
        encode_protected_jpeg(src.read_bytes(), torch.zeros(3, 10, 10))
    with pytest.raises(InputError, match="mask"):
        encode_protected_jpeg(src.read_bytes(), loaded.tensor, mask=torch.zeros(5, 5))


def test_xmp_with_gps_dropped_when_stripping_and_other_segments_kept(tmp_path):
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><exif:GPSLatitude>48,51N</exif:GPSLatitude></x:xmpmeta>'
    arr = _texture(64, 64)
    Image.fromarray(arr).save(tmp_path / "x.jpg", quality=90, exif=_exif(), xmp=xmp, comment=b"hello")
    loaded = read_image(tmp_path / "x.jpg")
    protected = _cloak(loaded.tensor, (8, 8, 56, 56))
    rec: dict = {}
    write_image(tmp_path / "strip.jpg", protected, like=loaded, strip_gps=True, record=rec)
    write_image(tmp_path / "keep.jpg", protected, like=loaded, strip_gps=False)
    markers = {n: [m for m, _ in jpeg_segments((tmp_path / n).read_bytes())[0]] for n in ("strip.jpg", "keep.jpg")}
    strip_payloads = [p for _, p in jpeg_segments((tmp_path / "strip.jpg").read_bytes())[0]]
    assert not any(b"GPSLatitude" in p for p in strip_payloads) and "XMP dropped: it holds GPS fields" in rec["notes"]
    assert any(b"GPSLatitude" in p for _, p in jpeg_segments((tmp_path / "keep.jpg").read_bytes())[0])
    assert 0xFE in markers["strip.jpg"] and markers["strip.jpg"].count(0xE0) == 1  # comment kept, one JFIF header


def test_mpo_writes_the_primary_image_only(tmp_path):
    a, b = Image.fromarray(_texture(64, 80)), Image.fromarray(_texture(64, 80, seed=1))
    a.save(tmp_path / "cam.jpg", "MPO", save_all=True, append_images=[b], quality=90)
    loaded = read_image(tmp_path / "cam.jpg")
    assert loaded.format == "MPO"
    rec: dict = {}
    out = write_image(tmp_path / "o.jpg", _cloak(loaded.tensor, (10, 10, 50, 50)), like=loaded, record=rec)
    with Image.open(out) as im:
        assert im.format == "JPEG" and getattr(im, "n_frames", 1) == 1
    assert rec["writer"] == "jpeg-coefficients"
    assert any("MPF index dropped" in n for n in rec["notes"]) and any("after the image" in n for n in rec["notes"])


def test_cmyk_jpeg_falls_back_to_a_full_reencode_logged_and_noted(tmp_path, caplog):
    cmyk_icc = b"\x00" * 16 + b"CMYK" + b"\x00" * 108  # enough to name the profile's colour space
    Image.fromarray(_texture(64, 64)).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    loaded = read_image(tmp_path / "c.jpg")
    loaded.icc_profile = cmyk_icc
    rec: dict = {}
    with caplog.at_level(logging.WARNING, logger="nullswap.faces.io"):
        out = write_image(tmp_path / "o.jpg", _cloak(loaded.tensor, (8, 8, 56, 56)), like=loaded, record=rec)
    assert "re-encoded whole" in caplog.text
    assert rec["writer"] == "pillow" and any("re-encoded whole" in n for n in rec["notes"])
    assert any("ICC profile dropped" in n for n in rec["notes"])
    with Image.open(out) as im:
        assert im.format == "JPEG" and im.mode == "RGB" and "icc_profile" not in im.info


@pytest.mark.parametrize("orientation", range(1, 9))
def test_to_stored_orientation_undoes_exif_transpose(orientation):
    arr = _texture(6, 10)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", exif=exif.tobytes())
    upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))))
    assert np.array_equal(to_stored_orientation(upright, orientation), arr)


def test_unchanged_region_covers_blocks_and_the_chroma_rim():
    changed = np.zeros((40, 48), bool)
    changed[17, 20] = True
    keep444 = unchanged_region(changed, np.array([[1, 1], [1, 1], [1, 1]]))
    assert (~keep444).sum() == 64 and not keep444[16:24, 16:24].any()
    keep420 = unchanged_region(changed, np.array([[2, 2], [1, 1], [1, 1]]))
    assert not keep420[15:33, 15:33].any() and keep420[14, 14] and keep420[33, 33]


@pytest.mark.shared
def test_public_api_jpeg_face_photo_keeps_the_rest_bit_identical(lfw_dir, tmp_path):
    """A real face through ``nullswap.protect``: only its blocks change, the file stays within 5 % of its size."""
    import nullswap

    face = Image.open(next(iter(sorted((lfw_dir / "images").rglob("*.jpg"))))).convert("RGB")
    canvas = Image.fromarray(_texture(400, 560))
    canvas.paste(face, (200, 90))
    src = tmp_path / "photo.jpg"
    canvas.save(src, quality=90, subsampling=2, exif=_exif(), icc_profile=ICC, optimize=True)
    before = _sha(src)
    result = nullswap.protect(src, method="nullswap", verify=False, report=True, seed=0)
    assert len(result.faces) == 1
    (tmp_path / "out").mkdir()
    out = result.save(tmp_path / "out" / "photo.jpg")
    assert _sha(src) == before
    assert result.report["output"]["writer"] == "jpeg-coefficients"
    kept = _check_outside_identical(src, out, result.image, result.source.tensor, 1)
    assert kept > 0.8  # one face on a 400x560 photo
    ratio = out.stat().st_size / src.stat().st_size
    assert 0.95 <= ratio <= 1.05, ratio
    with Image.open(out) as im:
        assert 0x8825 not in im.getexif() and im.info.get("icc_profile") == ICC


@pytest.mark.shared
def test_camera_jpeg_thumbnail_dropped_pixels_kept(photos_dir, tmp_path):
    """A real camera JPEG (EXIF with a thumbnail of the clean photo): the thumbnail goes, every pixel stays."""
    from nullswap.faces.jpeg import _exif_has_thumbnail

    src = photos_dir / "alex_lacamoire1.jpg"
    loaded = read_image(src)
    rec: dict = {}
    out = write_image(tmp_path / "o.jpg", loaded.tensor, like=loaded, record=rec)
    assert "EXIF thumbnail dropped (it shows the unprotected photo)" in rec["notes"]
    exif_payloads = [p for m, p in jpeg_segments(out.read_bytes())[0] if m == 0xE1 and p.startswith(b"Exif")]
    assert len(exif_payloads) == 1 and not _exif_has_thumbnail(exif_payloads[0][6:])
    assert np.array_equal(_stored_decode(src), _stored_decode(out))
    assert Image.open(out).getexif().get(0x010F) == Image.open(src).getexif().get(0x010F)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_windows_give_the_same_bytes_as_comparing_the_whole_photo(orientation):
    from types import SimpleNamespace

    from nullswap.faces.jpeg import encode_patched_jpeg

    arr = _texture(131, 174, seed=orientation)
    ex = Image.Exif()
    ex[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90, subsampling=2, exif=ex.tobytes())
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        up = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    clean = torch.from_numpy(up.astype(np.float32) / 255).permute(2, 0, 1).contiguous()
    h, w = clean.shape[1:]
    g = torch.Generator().manual_seed(orientation)
    boxes = [(7, 11, 40, 37), (w - 25, h - 19, w + 6, h + 4)]
    wins = [SimpleNamespace(box=b, pixels=torch.rand(3, b[3] - b[1], b[2] - b[0], generator=g)) for b in boxes]
    prot = clean.clone()
    for b, win in zip(boxes, wins, strict=True):
        x0, y0, x1, y1 = b
        prot[:, y0:min(y1, h), x0:min(x1, w)] = win.pixels[:, : min(y1, h) - y0, : min(x1, w) - x0]
    for original, compare in ((clean, "float"), (None, "decode")):
        whole, res = encode_protected_jpeg(data, prot, original)
        assert encode_protected_jpeg(data, prot, original, windows=boxes)[0] == whole
        patched, res2 = encode_patched_jpeg(data, clean, wins, compare=compare)
        assert patched == whole and res2.blocks_reencoded == res.blocks_reencoded > 0
