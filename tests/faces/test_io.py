import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from nullswap.errors import ImageReadError, ImageWriteError
from nullswap.faces.io import read_image, write_image


def _gradient(h=40, w=60):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 4 % 256, y * 6 % 256, (x + y) * 2 % 256], -1).astype(np.uint8)


def test_rgb_roundtrip_exact(tmp_path):
    arr = _gradient()
    Image.fromarray(arr).save(tmp_path / "a.png")
    im = read_image(tmp_path / "a.png")
    assert im.tensor.shape == (3, 40, 60) and im.tensor.dtype == torch.float32
    write_image(tmp_path / "b.png", im.tensor, like=im)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), arr)


def test_exif_orientation_applied_and_reset(tmp_path):
    arr = _gradient(40, 60)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    Image.fromarray(arr).save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=100)
    im = read_image(tmp_path / "r.jpg")
    assert im.tensor.shape == (3, 60, 40)  # upright: width and height swap
    top_left_src = arr[-1, 0].astype(float) / 255  # orientation 6: the source's bottom-left lands top-left
    assert np.allclose(im.tensor[:, 0, 0].numpy(), top_left_src, atol=0.06)
    # JPEG -> JPEG keeps the stored pixels (copied DCT blocks) and so the orientation tag; the upright view is the same
    out = write_image(tmp_path / "o.jpg", im.tensor, like=im)
    assert Image.open(out).getexif().get(0x0112) == 6
    assert torch.equal(read_image(out).tensor, im.tensor)
    # re-encoded formats store upright pixels: orientation reset to 1
    out = write_image(tmp_path / "o.png", im.tensor, like=im)
    assert Image.open(out).getexif().get(0x0112) == 1 and Image.open(out).size == (40, 60)


def test_rgba_keeps_alpha_aside(tmp_path):
    arr = np.dstack([_gradient(), np.full((40, 60), 128, np.uint8)])
    Image.fromarray(arr, "RGBA").save(tmp_path / "a.png")
    im = read_image(tmp_path / "a.png")
    assert im.tensor.shape == (3, 40, 60) and im.alpha is not None and im.alpha.shape == (40, 60)
    assert torch.allclose(im.alpha, torch.full((40, 60), 128 / 255))
    out = write_image(tmp_path / "b.png", im.tensor, like=im)
    assert Image.open(out).mode == "RGBA"
    assert np.array_equal(np.asarray(Image.open(out)), arr)


def test_grayscale_and_palette(tmp_path):
    Image.fromarray(_gradient()[:, :, 0], "L").save(tmp_path / "g.png")
    Image.fromarray(_gradient()).convert("P").save(tmp_path / "p.png")
    for f in ("g.png", "p.png"):
        im = read_image(tmp_path / f)
        assert im.tensor.shape == (3, 40, 60)
    g = read_image(tmp_path / "g.png").tensor
    assert torch.equal(g[0], g[1]) and torch.equal(g[1], g[2])


def test_cmyk_jpeg(tmp_path):
    Image.fromarray(_gradient()).convert("CMYK").save(tmp_path / "c.jpg", quality=100)
    im = read_image(tmp_path / "c.jpg")
    assert im.tensor.shape == (3, 40, 60)
    assert (im.tensor - torch.from_numpy(_gradient()).permute(2, 0, 1) / 255).abs().mean() < 0.05


def test_16bit_png(tmp_path):
    a = (np.linspace(0, 65535, 40 * 60).reshape(40, 60)).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / "d.png")
    im = read_image(tmp_path / "d.png")
    assert im.bit_depth == 16 and im.tensor.shape == (3, 40, 60)
    assert abs(float(im.tensor.max()) - 1.0) < 1e-4 and float(im.tensor.min()) == 0.0


@pytest.mark.parametrize("fmt", ["webp", "bmp", "tiff"])
def test_other_formats(tmp_path, fmt):
    Image.fromarray(_gradient()).save(tmp_path / f"x.{fmt}")
    assert read_image(tmp_path / f"x.{fmt}").tensor.shape == (3, 40, 60)


def test_bad_files_raise_typed_error_with_name(tmp_path):
    Image.fromarray(_gradient(200, 200)).save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    for name in ("trunc.jpg", "empty.jpg", "notes.txt", "missing.png"):
        with pytest.raises(ImageReadError) as e:
            read_image(tmp_path / name)
        assert name in str(e.value)


def test_decompression_bomb_refused(tmp_path, monkeypatch):
    import nullswap.faces.io as nio

    Image.fromarray(_gradient()).save(tmp_path / "big.png")
    monkeypatch.setattr(nio, "MAX_PIXELS", 100)
    with pytest.raises(ImageReadError, match="exceeds"):
        read_image(tmp_path / "big.png")


def test_write_keeps_icc_and_exif_and_strips_gps(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "TestCam"  # Make
    exif[0x8825] = {1: "N", 2: (1.0, 2.0, 3.0)}  # GPS IFD
    Image.fromarray(_gradient()).save(tmp_path / "s.jpg", icc_profile=icc, exif=exif.tobytes())
    im = read_image(tmp_path / "s.jpg")
    kept = Image.open(write_image(tmp_path / "k.jpg", im.tensor, like=im))
    assert kept.info.get("icc_profile") == icc and kept.getexif().get(0x010F) == "TestCam"
    assert 0x8825 in kept.getexif()
    stripped = Image.open(write_image(tmp_path / "n.jpg", im.tensor, like=im, strip_gps=True))
    assert 0x8825 not in stripped.getexif() and stripped.getexif().get(0x010F) == "TestCam"


def test_write_refuses_overwrite_and_reports_readonly(tmp_path):
    t = torch.rand(3, 8, 8)
    write_image(tmp_path / "a.png", t)
    before = (tmp_path / "a.png").read_bytes()
    with pytest.raises(ImageWriteError, match="exists"):
        write_image(tmp_path / "a.png", torch.zeros(3, 8, 8))
    assert (tmp_path / "a.png").read_bytes() == before
    with pytest.raises(ImageWriteError):
        write_image(tmp_path / "missing-dir" / "a.png", t)


def _old_report_roundtrip(image, quality):
    """``protection.jpeg_roundtrip`` before it moved to ``faces.io`` (the protect report's q75 re-compression)."""
    import io

    from nullswap.faces.io import to_uint8

    buf = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    arr = torch.from_numpy(np.asarray(Image.open(buf).convert("RGB")).copy()).permute(2, 0, 1)
    return arr.float().div(255.0).to(image.device)


def _old_perturbation_roundtrip(x, quality):
    """``evaluation.perturbations._jpeg`` before it used ``faces.io.jpeg_roundtrip`` (the robustness protocol)."""
    import io

    arr = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = np.empty_like(arr)
    for i, a in enumerate(arr):
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(a)).save(buf, format="JPEG", quality=int(round(quality)))
        buf.seek(0)
        with Image.open(buf) as im:
            out[i] = np.asarray(im.convert("RGB"))
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(device=x.device, dtype=x.dtype) / 255.0


def test_jpeg_roundtrip_is_the_one_both_callers_use_with_the_same_pixels():
    from nullswap import protection
    from nullswap.errors import InputError
    from nullswap.evaluation.perturbations import apply_perturbation
    from nullswap.faces.io import jpeg_roundtrip

    g = torch.Generator().manual_seed(0)
    photo = torch.from_numpy(_gradient(37, 53)).permute(2, 0, 1).float() / 255  # odd sizes: partial MCUs
    photo = (photo + 0.05 * torch.randn(photo.shape, generator=g)).clamp(0, 1)
    assert protection.jpeg_roundtrip is jpeg_roundtrip
    for q in (10, 75, 95):
        y = jpeg_roundtrip(photo, q)
        assert y.shape == photo.shape and y.dtype == torch.float32
        assert torch.equal(y, _old_report_roundtrip(photo, q))
    crops = torch.rand(3, 3, 32, 40, generator=g) * 1.2 - 0.1  # out of range: clamped as before
    for q in (1, 30, 50, 90, 100):
        assert torch.equal(jpeg_roundtrip(crops, q), _old_perturbation_roundtrip(crops, q))
    crops = crops.clamp(0, 1)  # the protocol takes [0,1] crops
    assert torch.equal(apply_perturbation(crops, "jpeg", 2), _old_perturbation_roundtrip(crops, 50))
    assert torch.equal(apply_perturbation(crops.double(), "jpeg", 64.0),
                       _old_perturbation_roundtrip(crops.double(), 64))
    for bad in (0, 101, 75.0, True):
        with pytest.raises(InputError, match="expected an integer quality in"):
            jpeg_roundtrip(photo, bad)
    with pytest.raises(InputError, match=r"expected an image \(3,H,W\) or a batch"):
        jpeg_roundtrip(photo[0], 75)


def test_float_chw_is_exact_division_by_255():
    """``_float_chw`` (torch, in row strips) gives IEEE float32 ``u / 255`` for every 8-bit value, in CHW order."""
    from nullswap.faces.io import _STRIP_ROWS, _float_chw

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (_STRIP_ROWS + 37, 19, 3), dtype=np.uint8)  # more rows than one strip
    arr[:16, :16] = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)  # every value
    got = _float_chw(arr[:, 2:])  # a non-contiguous view, as the callers pass
    want = np.divide(arr[:, 2:].transpose(2, 0, 1), np.float32(255.0), dtype=np.float32)
    assert got.dtype == torch.float32 and got.shape == (3, _STRIP_ROWS + 37, 17)
    assert np.array_equal(got.numpy(), want)


def test_float_chw_writes_into_a_view_and_checks_its_shape():
    """``out=``: the conversion lands in a strided view of a larger tensor (the float canvas), nothing else touched."""
    from nullswap.errors import InputError
    from nullswap.faces.io import _float_chw

    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    big = torch.full((3, 60, 50), -1.0)
    view = big[:, 7:47, 11:41]
    assert _float_chw(arr, out=view) is view
    assert np.array_equal(big[:, 7:47, 11:41].numpy(), np.divide(arr.transpose(2, 0, 1), np.float32(255.0),
                                                                 dtype=np.float32))
    big[:, 7:47, 11:41] = -1.0
    assert bool((big == -1.0).all())
    with pytest.raises(InputError, match=r"expected a \(3, 40, 30\) float32 tensor, got \(3, 40, 29\)"):
        _float_chw(arr, out=torch.empty(3, 40, 29))
    with pytest.raises(InputError, match="float64"):
        _float_chw(arr, out=torch.empty(3, 40, 30, dtype=torch.float64))


def test_float_chw_reads_a_read_only_array_without_warning():
    import warnings

    from nullswap.faces.io import _float_chw

    arr = np.frombuffer(bytes(range(256)) * 3, dtype=np.uint8).reshape(16, 16, 3)  # read-only, as a decode can be
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = _float_chw(arr)
    assert np.array_equal(got.numpy(), np.divide(arr.transpose(2, 0, 1), np.float32(255.0), dtype=np.float32))
