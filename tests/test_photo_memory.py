"""Memory of a protected photo: 8-bit pixels kept as uint8, only the faces' windows converted to float, the paste-back
and the JPEG encode worked in strips, with outputs bit-identical to the full-float path (issues 14 and 15)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import nullswap.protection as protection
from nullswap.faces.alignment import align_faces
from nullswap.faces.io import LoadedImage, _float_chw, read_image
from nullswap.faces.jpeg import encode_patched_jpeg
from nullswap.faces.pasteback import apply_patches, face_patches, patch_mask
from nullswap.written import apply_windows


def _jpeg(path: Path, size=(203, 157), orientation: int = 1, mode: str = "RGB") -> Path:
    rng = np.random.default_rng(0)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], 2)
    arr = np.clip(arr + rng.normal(0, 8, arr.shape), 0, 255).astype(np.uint8)
    kwargs: dict = {"quality": 90, "subsampling": 2}
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    Image.fromarray(arr, "RGB").convert(mode).save(path, format="JPEG", **kwargs)
    return path


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("expected VmRSS in /proc/self/status")


@pytest.mark.parametrize(("mode", "suffix"), [("RGB", ".jpg"), ("L", ".jpg"), ("RGB", ".png")])
def test_8_bit_photo_is_kept_as_uint8_until_its_float_is_read(tmp_path, mode, suffix):
    path = tmp_path / f"in{suffix}"
    if suffix == ".jpg":
        _jpeg(path, orientation=6, mode=mode)
    else:
        Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(path)
    im = read_image(path)
    assert im.rgb8 is not None and im.rgb8.dtype == np.uint8 and im.rgb8.shape[2] == 3
    assert im._tensor is None  # no float photo yet
    h, w = im.size
    assert im.rgb8.shape[:2] == (h, w)
    box = (3, 5, min(w, 30), min(h, 41))
    win = im.window(box)
    assert im._tensor is None
    t = im.tensor  # built on first read, exactly rgb8 / 255, then kept
    assert t.shape == (3, h, w) and t.dtype == torch.float32 and im.tensor is t
    assert torch.equal(t, torch.from_numpy(im.rgb8.astype(np.float32) / np.float32(255)).permute(2, 0, 1))
    assert torch.equal(win, t[:, box[1]:box[3], box[0]:box[2]])


def test_16_bit_photo_has_no_uint8_copy(tmp_path):
    import cv2

    arr = np.random.default_rng(2).integers(0, 65536, (20, 30, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "in16.png"), arr)
    im = read_image(tmp_path / "in16.png")
    assert im.rgb8 is None and im._tensor is not None and im.bit_depth == 16
    assert im.float_canvas() is im.tensor  # nothing to save: the float photo is the photo


def test_loaded_image_needs_pixels():
    from nullswap.errors import InputError

    with pytest.raises(InputError, match="expected a float tensor or rgb8 pixels, got neither"):
        LoadedImage(None)
    with pytest.raises(InputError, match=r"rgb8: expected an \(H,W,3\) uint8 array"):
        LoadedImage(None, rgb8=np.zeros((4, 4), np.uint8))


def test_float_canvas_holds_the_photo_in_filled_boxes_only(tmp_path):
    im = read_image(_jpeg(tmp_path / "in.jpg"))
    canvas = im.float_canvas()
    assert canvas.shape == (3, *im.size) and canvas.dtype == torch.float32
    assert im.partial(canvas) and im.holds(canvas) and not im.partial(canvas.clone())
    im.fill(canvas, (10, 20, 70, 90))
    im.fill(canvas, (-5, -5, 4, 3))  # clipped to the photo
    t = im.tensor
    assert torch.equal(canvas[:, 20:90, 10:70], t[:, 20:90, 10:70])
    assert torch.equal(canvas[:, :3, :4], t[:, :3, :4])
    rest = canvas.clone()
    rest[:, 20:90, 10:70] = 0
    rest[:, :3, :4] = 0
    assert not rest.any()
    assert im.holds(t) and not im.partial(t)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_float_canvas_costs_memory_only_where_filled():
    h, w = 3000, 4000  # 12 MP: a float32 photo is 137 MiB
    rgb8 = np.full((h, w, 3), 200, np.uint8)
    im = LoadedImage(None, rgb8=rgb8)
    before = _rss_mib()
    canvas = im.float_canvas()
    im.fill(canvas, (1000, 1000, 1400, 1300))  # 0.12 MP: 1.4 MiB of floats
    assert float(canvas[:, 1000:1300, 1000:1400].min()) == pytest.approx(200 / 255)
    assert float(canvas[:, 0, 0].max()) == 0.0  # reading untouched pages maps the zero page
    assert _rss_mib() - before < 30, _rss_mib() - before
    assert im._tensor is None


def _two_faces(h: int, w: int) -> torch.Tensor:
    """Two overlapping faces, the second one turned by 25 degrees."""
    lm = torch.tensor([[0.35, 0.4], [0.65, 0.4], [0.5, 0.55], [0.38, 0.7], [0.62, 0.7]])
    c, s = torch.cos(torch.tensor(0.44)), torch.sin(torch.tensor(0.44))
    turned = (lm - 0.5) @ torch.tensor([[c, s], [-s, c]]) + 0.5
    return torch.stack([lm * torch.tensor([w * 0.6, h * 0.6]), turned * torch.tensor([w * 0.5, h * 0.5])
                        + torch.tensor([w * 0.3, h * 0.25])])


def _footprint_patches(img, crops, matrices, template, original_crops, mode):
    """face_patches as it was: the whole footprint window in one piece (the reference)."""
    from nullswap.faces.alignment import compose_affine, invert_affine, warp_affine
    from nullswap.faces.pasteback import FacePatch, _apply_one, _window, face_mask
    from nullswap.faces.templates import get_template

    t = get_template(template)
    _, H, W = img.shape
    m_crop = face_mask(t.size)
    out = []
    for i in range(crops.shape[0]):
        M = matrices[i].to(torch.float64)
        x0, y0, x1, y1 = _window(M, t.size, H, W)
        shift = torch.tensor([[1.0, 0.0, x0], [0.0, 1.0, y0]], dtype=torch.float64)
        back = invert_affine(compose_affine(M, shift)).float()
        payload = crops[i] - original_crops[i] if mode == "delta" else crops[i]
        warped = warp_affine(torch.cat([payload, m_crop[None]])[None], back[None], (y1 - y0, x1 - x0))[0]
        pw, mw = warped[:3], warped[3].clamp(0, 1)
        region = img[:, y0:y1, x0:x1].clone()
        for p in out:
            _apply_one(region, p, (x0, y0))
        new = region + mw * pw if mode == "delta" else region * (1 - mw) + mw * pw
        out.append(FacePatch((x0, y0, x1, y1), torch.where(mw > 0, new.clamp(0, 1), region), mw))
    return out


@pytest.mark.parametrize("mode", ["delta", "replace"])
def test_paste_back_in_strips_is_bit_identical_to_one_piece(mode):
    torch.manual_seed(0)
    h, w = 301, 407
    img = torch.rand(3, h, w)
    crops, M = align_faces(img, _two_faces(h, w), "arcface-112")
    prot = (crops + 0.05 * torch.randn_like(crops)).clamp(0, 1)
    whole = face_patches(img, prot, M, "arcface-112", original_crops=crops, mode=mode, strip_rows=None)
    assert len(whole) == 2
    ref = _footprint_patches(img, prot, M, "arcface-112", crops, mode)
    for a, b in zip(ref, whole, strict=True):  # the box is where the mask reaches: a part of the footprint
        assert a.box[0] <= b.box[0] < b.box[2] <= a.box[2] and a.box[1] <= b.box[1] < b.box[3] <= a.box[3]
        assert (b.box[2] - b.box[0]) * (b.box[3] - b.box[1]) < 0.9 * (a.box[2] - a.box[0]) * (a.box[3] - a.box[1])
    assert torch.equal(apply_patches(img.clone(), whole), apply_patches(img.clone(), ref))
    assert torch.equal(patch_mask(whole, (h, w)), patch_mask(ref, (h, w)))
    for rows in (1, 7, 64, 256):
        got = face_patches(img, prot, M, "arcface-112", original_crops=crops, mode=mode, strip_rows=rows)
        for a, b in zip(whole, got, strict=True):
            assert a.box == b.box and torch.equal(a.pixels, b.pixels) and torch.equal(a.mask, b.mask)


def test_paste_back_on_a_float_canvas_equals_the_float_photo(tmp_path):
    im = read_image(_jpeg(tmp_path / "in.jpg", size=(407, 301)))
    lms = _two_faces(*im.size)
    crops, M = align_faces(im.tensor, lms, "arcface-112")
    prot = (crops + 0.05).clamp(0, 1)
    ref = face_patches(im.tensor, prot, M, "arcface-112", original_crops=crops)
    canvas = im.float_canvas()
    for p in ref:  # the windows only (+2 px, as PhotoProtector fills them)
        x0, y0, x1, y1 = p.box
        im.fill(canvas, (x0 - 2, y0 - 2, x1 + 2, y1 + 2))
    crops2, M2 = align_faces(canvas, lms, "arcface-112", check_range=False)
    assert torch.equal(crops2, crops) and torch.equal(M2, M)
    got = face_patches(canvas, prot, M2, "arcface-112", original_crops=crops2, check_range=False)
    for a, b in zip(ref, got, strict=True):
        assert a.box == b.box and torch.equal(a.pixels, b.pixels)


@pytest.mark.parametrize("orientation", [1, 6, 3])
@pytest.mark.parametrize("compare", ["float", "decode"])
def test_jpeg_encode_from_uint8_pixels_equals_the_float_photo(tmp_path, orientation, compare):
    im = read_image(_jpeg(tmp_path / "in.jpg", size=(203, 157), orientation=orientation))
    g = torch.Generator().manual_seed(3)
    patches = []
    h, w = im.size
    for box in ((20, 30, 90, 110), (70, 50, 150, 130), (w - 30, h - 25, w + 10, h + 5)):
        x0, y0, x1, y1 = box
        base = apply_windows(im.tensor[:, y0:y1, x0:x1].clone(), patches, (x0, y0))
        base = torch.nn.functional.pad(base, (0, x1 - x0 - base.shape[2], 0, y1 - y0 - base.shape[1]))
        noise = 0.03 * torch.randn(base.shape, generator=g)
        patches.append(SimpleNamespace(box=box, pixels=(base + noise).clamp(0, 1)))
    a, ra = encode_patched_jpeg(im.raw, im.tensor, patches, compare=compare)
    b, rb = encode_patched_jpeg(im.raw, im.rgb8, patches, compare=compare)
    assert a == b and ra.blocks_reencoded == rb.blocks_reencoded > 0
    assert np.array_equal(np.rint(np.clip(_float_chw(im.rgb8).numpy(), 0, 1) * np.float32(255)).astype(np.uint8),
                          im.rgb8.transpose(2, 0, 1))  # the 8-bit decode of the float photo is rgb8 itself


def _float_read(path, **kw):
    """read_image as before the uint8 pixels: the float photo built at once, no rgb8 (the full-float path)."""
    im = read_image(path, **kw)
    t = im.tensor
    im.rgb8 = None
    im._tensor = t
    return im


@pytest.mark.shared
def test_protect_file_keeps_uint8_and_writes_the_full_float_paths_bytes(photos_dir, tmp_path, monkeypatch):
    """The pipeline with the uint8 photo and a float canvas of the faces' region writes the bytes, verdicts and
    pixels of the full-float path; it never builds the float photo."""
    path = photos_dir / "group_t1.jpg"
    if not path.is_file():
        pytest.skip(f"shared photo missing: {path}")
    pp = protection.PhotoProtector("nullswap", seed=0, device="cpu")
    res = pp.protect_file(path)
    assert len(res.faces) > 1 and res.encoded is not None
    assert res.source.rgb8 is not None and res.source._tensor is None and res._image is None
    new = res.save(tmp_path / "new.jpg").read_bytes()
    monkeypatch.setattr(protection, "read_image", _float_read)
    old_res = pp.protect_file(path)
    assert old_res.source.rgb8 is None
    assert new == old_res.save(tmp_path / "old.jpg").read_bytes()
    for a, b in zip(res.faces, old_res.faces, strict=True):
        assert [s.cosine for s in a.verdict.scores] == [s.cosine for s in b.verdict.scores]
    assert torch.equal(res.image, old_res.image)
    assert "ProtectedImage(size=(3, " in repr(res)


def test_a_folder_releases_each_photo_once_written(tmp_path):
    """run_batch keeps no reference to a written photo while the next one is protected (the writer holds it)."""
    import gc
    import time
    import weakref

    from nullswap.batch import plan_outputs, run_batch

    class Result:
        faces = [SimpleNamespace(verdict=None)]
        report = None
        status = "protected"

        def save(self, path, strip_gps=True):
            Path(path).write_bytes(b"x")
            return Path(path)

    sources = []
    for i in range(4):
        sources.append(tmp_path / f"{i}.jpg")
        sources[-1].write_bytes(bytes([i]))
    refs: list[weakref.ref] = []
    alive_when_next_started: list[bool] = []

    def protect(path):
        if refs:  # the previous photo: written by the writer thread, then nobody holds it
            deadline = time.perf_counter() + 5.0
            while refs[-1]() is not None and time.perf_counter() < deadline:
                gc.collect()
                time.sleep(0.01)
            alive_when_next_started.append(refs[-1]() is not None)
        r = Result()
        refs.append(weakref.ref(r))
        return r

    outcomes = run_batch(plan_outputs(sources, tmp_path / "out"), protect, settings={})
    assert [o.status for o in outcomes] == ["protected"] * 4
    assert alive_when_next_started == [False, False, False]

