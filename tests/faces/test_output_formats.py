"""The real format decides the output: sniffed formats, 16-bit, greyscale, alpha, AVIF/WebP, animated, unwritable.

Every fixture is generated here; a "face" is a small square change. Each test also checks that the input's bytes
are unchanged.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from nullswap.batch import expand_inputs, plan_outputs, run_batch
from nullswap.errors import UnsupportedImageError
from nullswap.faces.io import as_written, is_image_path, output_format, read_image, write_image

ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _rgb(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([x * 4 % 256, y * 5 % 256, (x + y) * 2 % 256], -1).astype(int) + rng.integers(-9, 9, (h, w, 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


def _face(image: torch.Tensor) -> torch.Tensor:
    """Change a 16x16 square (the "face"); every other pixel exactly as read."""
    out = image.clone()
    out[:, 8:24, 8:24] = (out[:, 8:24, 8:24] + 0.05 * torch.linspace(-1, 1, 16)).clamp(0, 1)
    return out


def _outside() -> np.ndarray:
    m = np.ones((48, 64), bool)
    m[8:24, 8:24] = False
    return m


def _write(src: Path, out: Path, **kw) -> tuple[Path, dict, torch.Tensor]:
    before = _sha(src)
    loaded = read_image(src)
    protected = _face(loaded.tensor)
    rec: dict = {}
    written = write_image(out, protected, like=loaded, record=rec, **kw)
    assert _sha(src) == before
    return written, rec, protected


def test_png_named_jpg_stays_lossless_png(tmp_path):
    arr = _rgb()
    Image.fromarray(arr).save(tmp_path / "photo.jpg", format="PNG", icc_profile=ICC)
    assert output_format(tmp_path / "out.jpg", read_image(tmp_path / "photo.jpg")) == "PNG"
    (tmp_path / "out").mkdir()
    out, rec, protected = _write(tmp_path / "photo.jpg", tmp_path / "out" / "photo.jpg")
    assert out.name == "photo.jpg" and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the name kept, PNG bytes
    assert rec["format"] == "PNG"
    got = np.asarray(Image.open(out))
    assert np.array_equal(got[_outside()], arr[_outside()])  # lossless: untouched pixels exact
    expected = (protected.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(got, expected)  # and the face exactly as protected
    assert Image.open(out).info.get("icc_profile") == ICC


def test_explicit_other_extension_converts_and_jpeg_named_png_stays_jpeg(tmp_path):
    Image.fromarray(_rgb()).save(tmp_path / "a.jpg", quality=90)
    loaded = read_image(tmp_path / "a.jpg")
    assert output_format(tmp_path / "b.png", loaded) == "PNG"  # a deliberate conversion
    assert output_format(tmp_path / "b.jpeg", loaded) == "JPEG"
    assert output_format(tmp_path / "b.png") == "PNG" and output_format(tmp_path / "b.xyz") is None
    Image.fromarray(_rgb()).save(tmp_path / "c.png", format="JPEG", quality=90)
    out, rec, _ = _write(tmp_path / "c.png", tmp_path / "c.out.png")
    assert Image.open(out).format == "JPEG" and rec["writer"] == "jpeg-coefficients"


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16bit_grey_stays_16bit_grey(tmp_path, fmt):
    g = (np.linspace(0, 65535, 48 * 64).reshape(48, 64)).astype(np.uint16)
    src = tmp_path / f"g.{fmt.lower()}"
    Image.fromarray(g).save(src, compression="tiff_lzw") if fmt == "TIFF" else Image.fromarray(g).save(src)
    out, rec, protected = _write(src, tmp_path / f"o.{fmt.lower()}")
    im = Image.open(out)
    assert im.mode == "I;16" and rec["bit_depth"] == 16 and rec["mode"] == "I;16"
    got = np.asarray(im)
    assert np.array_equal(got[_outside()], g[_outside()])  # bit-exact at 16 bits
    assert not np.array_equal(got, g)
    if fmt == "TIFF":
        assert im.info.get("compression") == "tiff_lzw"


@pytest.mark.parametrize(("fmt", "alpha"), [("png", False), ("png", True), ("tif", False)])
def test_16bit_colour_stays_16bit_colour(tmp_path, fmt, alpha):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 65535, (48, 64, 4 if alpha else 3)).astype(np.uint16)
    src = tmp_path / f"c.{fmt}"
    if fmt == "png":
        cv2.imwrite(str(src), a[:, :, [2, 1, 0, 3][: a.shape[2]]])
    else:
        import tifffile

        tifffile.imwrite(src, a, photometric="rgb", compression="zlib", iccprofile=ICC)
    loaded = read_image(src)
    assert loaded.bit_depth == 16 and loaded.mode == ("RGBA;16" if alpha else "RGB;16")
    out, rec, _ = _write(src, tmp_path / f"o.{fmt}")
    back = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and back.shape == a.shape and rec["bit_depth"] == 16
    back = back[:, :, [2, 1, 0, 3][: a.shape[2]]]
    assert np.array_equal(back[_outside()], a[_outside()]) and not np.array_equal(back, a)
    if fmt == "tif":
        import tifffile

        with tifffile.TiffFile(out) as t:
            assert t.pages[0].tags["InterColorProfile"].value == ICC


def test_16bit_grey_alpha_png_stays_16bit_grey_alpha(tmp_path):
    from nullswap.faces.io import _encode_png16

    g = np.dstack([np.linspace(0, 65535, 48 * 64).reshape(48, 64), np.full((48, 64), 40000)]).astype(np.uint16)
    (tmp_path / "ga.png").write_bytes(_encode_png16(g, []))
    loaded = read_image(tmp_path / "ga.png")
    assert loaded.mode == "LA;16" and loaded.greyscale and loaded.alpha is not None
    out, rec, _ = _write(tmp_path / "ga.png", tmp_path / "o.png")
    raw = out.read_bytes()
    assert raw[24] == 16 and raw[25] == 4  # IHDR: 16 bits, grey + alpha
    assert torch.equal(read_image(out).alpha, loaded.alpha)
    back = read_image(out).tensor[0].numpy() * 65535
    assert np.array_equal(np.rint(back)[_outside()], g[:, :, 0][_outside()])


@pytest.mark.parametrize("fmt", ["png", "jpg", "tif"])
def test_greyscale_stays_greyscale_and_says_the_colour_part_is_lost(tmp_path, fmt):
    g = _rgb()[:, :, 1]
    src = tmp_path / f"g.{fmt}"
    Image.fromarray(g, "L").save(src)
    out, rec, _ = _write(src, tmp_path / f"o.{fmt}")
    im = Image.open(out)
    assert im.mode == "L" and any("colour part is lost" in n for n in rec["notes"])
    if fmt != "jpg":
        assert np.array_equal(np.asarray(im)[_outside()], g[_outside()])


def test_grey_alpha_and_rgba_keep_alpha(tmp_path):
    la = np.dstack([_rgb()[:, :, 0], np.full((48, 64), 200, np.uint8)])
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    out, _, _ = _write(tmp_path / "la.png", tmp_path / "o.png")
    assert Image.open(out).mode == "LA" and np.array_equal(np.asarray(Image.open(out))[:, :, 1], la[:, :, 1])


def test_palette_png_becomes_true_colour_with_a_note(tmp_path):
    Image.fromarray(_rgb()).convert("P").save(tmp_path / "p.png")
    out, rec, _ = _write(tmp_path / "p.png", tmp_path / "o.png")
    assert Image.open(out).mode == "RGB" and any("palette" in n for n in rec["notes"])


def test_avif_and_webp_accepted_in_their_own_format(tmp_path):
    arr = _rgb()
    Image.fromarray(arr).save(tmp_path / "a.avif", quality=90)
    Image.fromarray(arr).save(tmp_path / "l.webp", lossless=True)
    Image.fromarray(arr).save(tmp_path / "y.webp", quality=90)
    assert all(is_image_path(tmp_path / n) for n in ("a.avif", "l.webp", "x.gif", "x.qoi", "x.jp2"))
    out, rec, _ = _write(tmp_path / "a.avif", tmp_path / "o.avif")
    assert Image.open(out).format == "AVIF" and any("AVIF re-encoded" in n for n in rec["notes"])
    out, rec, protected = _write(tmp_path / "l.webp", tmp_path / "ol.webp")
    assert out.read_bytes()[12:16] in (b"VP8L", b"VP8X") and not rec["notes"]  # lossless stays lossless
    got = np.asarray(Image.open(out).convert("RGB"))
    assert np.array_equal(got[_outside()], arr[_outside()])
    out, rec, _ = _write(tmp_path / "y.webp", tmp_path / "oy.webp")
    assert Image.open(out).format == "WEBP" and any("lossy WebP" in n for n in rec["notes"])


def test_unwritable_format_becomes_png_with_its_name(tmp_path):
    xpm = '/* XPM */\nstatic char *x[] = {\n"4 2 2 1",\n"a c #FF0000",\n"b c #0000FF",\n"abab",\n"baba"\n};\n'
    (tmp_path / "icon.xpm").write_text(xpm)
    assert is_image_path(tmp_path / "icon.xpm")
    loaded = read_image(tmp_path / "icon.xpm")
    rec: dict = {}
    out = write_image(tmp_path / "o.xpm", loaded.tensor, like=loaded, record=rec)
    assert out.name == "o.png" and Image.open(out).format == "PNG" and rec["format"] == "PNG"
    assert any("cannot be written" in n for n in rec["notes"])


@pytest.mark.parametrize("fmt", ["gif", "webp", "png", "tif"])
def test_animated_or_multipage_is_refused_with_a_line_in_the_batch(tmp_path, fmt):
    frames = [Image.fromarray(_rgb(seed=i)) for i in range(3)]
    src = tmp_path / f"anim.{fmt}"
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=100)
    with pytest.raises(UnsupportedImageError, match="unsupported: (animated|multi-page)") as e:
        read_image(src)
    assert "3 " in str(e.value)
    still = tmp_path / "still.png"
    Image.fromarray(_rgb()).save(still)
    photos, bad = expand_inputs([str(tmp_path)])
    assert src in photos and not bad  # picked up, then reported, never dropped silently

    class NoFace:  # what PhotoProtector.protect_file returns for a photo without a face
        faces: list = []
        report = None

    def protect_file(path: Path) -> NoFace:
        read_image(path)  # the animated input fails here, as in PhotoProtector.protect_file
        return NoFace()

    outcomes = run_batch(plan_outputs(photos, tmp_path / "out"), protect_file, settings={})
    by = {o.source.name: o for o in outcomes}
    # its own status, not a failure (no output); the message says why
    assert by[src.name].status == "unsupported" and by[src.name].message.startswith("unsupported: ")
    assert by["still.png"].status == "no-face"


def test_as_written_returns_what_a_reader_gets_back(tmp_path):
    Image.fromarray(_rgb()[:, :, 0], "L").save(tmp_path / "g.png")
    loaded = read_image(tmp_path / "g.png")
    protected = _face(loaded.tensor) * torch.tensor([1.0, 0.9, 0.8])[:, None, None]  # some colour
    got = as_written(protected, loaded)
    assert torch.equal(got[0], got[1]) and torch.equal(got[1], got[2])  # greyscale on disk
    assert torch.equal(got, read_image(write_image(tmp_path / "o.png", protected, like=loaded)).tensor)
    Image.fromarray(_rgb()).save(tmp_path / "c.jpg", quality=75)
    loaded = read_image(tmp_path / "c.jpg")
    protected = _face(loaded.tensor)
    got = as_written(protected, loaded)
    assert torch.equal(got, read_image(write_image(tmp_path / "o.jpg", protected, like=loaded)).tensor)
    assert torch.equal(got[:, :, 32:], loaded.tensor[:, :, 32:])  # blocks away from the face: the input's pixels
