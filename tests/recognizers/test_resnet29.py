"""Tests of dlib's ResNet-29 (``dlib-resnet29``) and face-api.js's copy of it (``faceapi-resnet29``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nullswap.errors import InputError, WeightsError
from nullswap.recognizers import create_recognizer, list_recognizers, recognizer_info
from nullswap.recognizers.resnet29 import (
    BLOCKS,
    DlibResNet29,
    ResidualBlock,
    dlib_state_dict,
    faceapi_state_dict,
    read_faceapi_weights,
)
from tests.recognizers.test_dlib_format import installed_dlib_dat

# Mean MTCNN landmarks of LFW deep-funneled 250x250 images (150 random images): a detector-free alignment that is
# good enough for comparing two implementations on realistic chips.
LFW_MEAN_LANDMARKS = ((104.0, 112.5), (146.7, 111.4), (125.8, 136.5), (107.4, 158.6), (145.2, 157.8))
CHIP_IMAGES = ("Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "Aaron_Peirsol/Aaron_Peirsol_0003.jpg",
               "Abdullah_Gul/Abdullah_Gul_0001.jpg", "Abdullah_Gul/Abdullah_Gul_0006.jpg")
FACEAPI_DIR = "weights/face-api"
FACEAPI_MANIFEST = "face_recognition_model-weights_manifest.json"


@pytest.fixture(autouse=True)
def _one_thread():
    # These small convolutions gain little from intra-op threads, and on a busy (oversubscribed) runner OpenMP
    # barriers make them up to 10x slower; one thread keeps the file fast everywhere.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------------------------------ fixtures (real data)
@pytest.fixture(scope="module")
def dlib_dat() -> Path:
    p = installed_dlib_dat()
    if p is None:
        pytest.skip("PyPI face-recognition-models (dlib_face_recognition_resnet_model_v1.dat) is not installed")
    return p


@pytest.fixture(scope="module")
def dlib_model(dlib_dat: Path):
    return create_recognizer("dlib-resnet29", checkpoint=str(dlib_dat))


@pytest.fixture(scope="module")
def faceapi_model(shared: Path):
    return create_recognizer("faceapi-resnet29", checkpoint=str(shared / FACEAPI_DIR / FACEAPI_MANIFEST))


@pytest.fixture(scope="module")
def chips(lfw_dir: Path) -> torch.Tensor:
    """4 aligned 150x150 chips (2 people x 2 images), on exact 8-bit levels so dlib sees the same pixels."""
    from nullswap.faces import align_faces, read_image

    lm = torch.tensor([LFW_MEAN_LANDMARKS])
    out = [align_faces(read_image(lfw_dir / "images" / rel).tensor, lm, "dlib-150")[0] for rel in CHIP_IMAGES]
    return ((torch.cat(out) * 255).round() / 255).float()


# ------------------------------------------------------------------------------------------------ no real data
def test_registered() -> None:
    names = list_recognizers()
    assert "dlib-resnet29" in names and "faceapi-resnet29" in names
    for name in ("dlib-resnet29", "faceapi-resnet29"):
        info = recognizer_info(name)
        assert (info.embedding_dim, info.input_size, info.template) == (128, (150, 150), "dlib-150")
        assert info.offline and info.weights


def test_random_weights_forward() -> None:
    m = create_recognizer("dlib-resnet29", pretrained=False)
    assert not any(p.requires_grad for p in m.parameters())
    sd = m.state_dict()
    assert len(sd) == 29 * 4 + 1  # conv weight+bias, affine gamma+beta for 29 convolutions; fc without bias
    assert sum(v.numel() for v in sd.values()) == 5_614_592  # exactly the parameter count of dlib's file
    e = m(torch.rand(2, 3, 150, 150))
    assert e.shape == (2, 128) and torch.isfinite(e).all()
    torch.testing.assert_close(e.norm(dim=1), torch.ones(2))
    with pytest.raises(InputError, match="150"):
        m(torch.rand(1, 3, 112, 112))


def test_feature_map_sizes() -> None:
    m = DlibResNet29()
    sizes = []
    x = F.max_pool2d(F.relu(m.stem(torch.zeros(1, 3, 150, 150))), 3, 2)
    sizes.append(tuple(x.shape[1:]))
    for block in m.blocks.values():
        x = block(x)
        sizes.append(tuple(x.shape[1:]))
    # dlib: 150 -7x7/2-> 72 -pool 3/2-> 35 -> 17 -> 8 -> 4 (conv branch 3x3 zero-extended) -> 2
    assert sizes[0] == (32, 35, 35)
    assert [s for s, (_, _, _, down) in zip(sizes[1:], BLOCKS, strict=True) if down] == [
        (64, 17, 17), (128, 8, 8), (256, 4, 4), (256, 2, 2)]


def test_down_block_zero_extension() -> None:
    """dlib's add_prev adds differently shaped tensors by zero-extending both (channels, bottom rows, right cols)."""
    torch.manual_seed(0)
    block = ResidualBlock(4, 8, down=True).eval()
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        out = block(x)
        branch = block.conv2(F.relu(block.conv1(x)))  # (1, 8, 3, 3)
        pooled = F.avg_pool2d(x, 2, 2)  # (1, 4, 4, 4)
    assert out.shape == (1, 8, 4, 4)
    expected = torch.zeros(1, 8, 4, 4)
    expected[:, :, :3, :3] += branch
    expected[:, :4] += pooled
    torch.testing.assert_close(out, F.relu(expected))


def _to_faceapi_layout(model: DlibResNet29) -> dict[str, np.ndarray]:
    sd = model.state_dict()
    out = {}
    prefixes = {"stem": "conv32_down"} | {
        f"blocks.{b}.{c}": f"{b}/{c}" for b, *_ in BLOCKS for c in ("conv1", "conv2")}
    for key, fa in prefixes.items():
        out[f"{fa}/conv/filters"] = sd[f"{key}.conv.weight"].permute(2, 3, 1, 0).numpy()
        out[f"{fa}/conv/bias"] = sd[f"{key}.conv.bias"].numpy()
        out[f"{fa}/scale/weights"] = sd[f"{key}.affine.weight"].numpy()
        out[f"{fa}/scale/biases"] = sd[f"{key}.affine.bias"].numpy()
    out["fc"] = sd["fc.weight"].T.numpy()
    return out


def test_faceapi_mapping_strict() -> None:
    torch.manual_seed(0)
    src = DlibResNet29()
    weights = _to_faceapi_layout(src)
    assert len(weights) == 117
    sd = faceapi_state_dict(weights, src)
    for k, v in src.state_dict().items():
        assert torch.equal(sd[k], v), k
    with pytest.raises(WeightsError, match="do not belong"):
        faceapi_state_dict(weights | {"extra/tensor": np.zeros(3, np.float32)}, src)
    missing = dict(weights)
    del missing["conv64_2/conv1/scale/biases"]
    with pytest.raises(WeightsError, match="missing tensor 'conv64_2/conv1/scale/biases'"):
        faceapi_state_dict(missing, src)
    bad = dict(weights)
    bad["conv128_1/conv2/conv/filters"] = np.zeros((3, 3, 128, 64), np.float32)
    with pytest.raises(WeightsError, match=r"expected shape \(128, 128, 3, 3\).*found \(64, 128, 3, 3\)"):
        faceapi_state_dict(bad, src)


def test_read_faceapi_weights_dequantizes(tmp_path: Path) -> None:
    q = np.array([[0, 1], [2, 255]], np.uint8)
    f = np.array([1.5, -2.0, 3.25], np.float32)
    manifest = [{"paths": ["w.bin"], "weights": [
        {"name": "a", "shape": [2, 2], "dtype": "float32",
         "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
        {"name": "b", "shape": [3], "dtype": "float32"},
    ]}]
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    (tmp_path / "w.bin").write_bytes(q.tobytes() + f.astype("<f4").tobytes())
    w = read_faceapi_weights(tmp_path / "m.json")
    np.testing.assert_allclose(w["a"], q * 0.5 - 1.0)
    np.testing.assert_array_equal(w["b"], f)
    assert w["a"].dtype == np.float32
    (tmp_path / "w.bin").write_bytes(q.tobytes() + f.astype("<f4").tobytes()[:-4])
    with pytest.raises(WeightsError, match=r"w\.bin: truncated: weight 'b'"):
        read_faceapi_weights(tmp_path / "m.json")
    (tmp_path / "w.bin").write_bytes(q.tobytes() + f.astype("<f4").tobytes() + b"\x00")
    with pytest.raises(WeightsError, match="expected 16 bytes.*found 17"):
        read_faceapi_weights(tmp_path / "m.json")


def test_dlib_native_without_dlib(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from nullswap.recognizers import dlib_native

    real_import = importlib.import_module

    def fake_import(name: str, *args, **kwargs):
        if name == "dlib":
            raise ImportError("No module named 'dlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(dlib_native.importlib, "import_module", fake_import)
    assert not dlib_native.dlib_available()
    with pytest.raises(dlib_native.DlibUnavailableError, match="dlib-bin"):
        dlib_native.DlibNativeDescriptor("model.dat")


def test_to_uint8_chips() -> None:
    from nullswap.recognizers.dlib_native import to_uint8_chips

    x = torch.rand(2, 3, 150, 150)
    arr = to_uint8_chips(x)
    assert arr.shape == (2, 150, 150, 3) and arr.dtype == np.uint8
    assert np.array_equal(arr[1, 10, 20], (x[1, :, 10, 20] * 255).round().to(torch.uint8).numpy())
    assert to_uint8_chips(arr[0]).shape == (1, 150, 150, 3)
    with pytest.raises(InputError, match="150"):
        to_uint8_chips(torch.rand(1, 3, 112, 112))
    with pytest.raises(InputError, match="uint8"):
        to_uint8_chips(np.zeros((150, 150, 3), np.float32))


# -------------------------------------------------------------------------------------------------- real weights
@pytest.mark.shared
def test_faceapi_manifest_counts(shared: Path) -> None:
    manifest = json.loads((shared / FACEAPI_DIR / FACEAPI_MANIFEST).read_text())
    entries = [w for g in manifest for w in g["weights"]]
    assert sum("quantization" in w for w in entries) == 109
    assert sum("quantization" not in w and w["dtype"] == "float32" for w in entries) == 8
    weights = read_faceapi_weights(shared / FACEAPI_DIR / FACEAPI_MANIFEST)
    assert len(weights) == 117


@pytest.mark.shared
def test_dlib_architecture_mismatch_is_reported(dlib_dat: Path) -> None:
    from nullswap.recognizers.dlib_format import read_dlib_net

    net = read_dlib_net(dlib_dat)
    net.layers[5].attrs["stride_y"] = 2
    with pytest.raises(WeightsError, match=r"layer record 5 .*expected con_4"):
        dlib_state_dict(net)


@pytest.mark.shared
def test_dlib_matches_native(dlib_model, dlib_dat: Path, chips: torch.Tensor) -> None:
    from nullswap.recognizers.dlib_native import DlibNativeDescriptor, dlib_available

    if not dlib_available():
        pytest.skip("the dlib Python module (PyPI dlib-bin) is not installed; cannot compare with native dlib")
    native = DlibNativeDescriptor(dlib_dat).compute(chips)
    with torch.inference_mode():
        ours = dlib_model.embed(chips).numpy()
    diff = float(np.abs(ours - native).max())
    assert diff <= 1e-3, f"max abs difference to dlib.face_recognition_model_v1: {diff}"


@pytest.mark.shared
def test_faceapi_agrees_with_dlib(dlib_model, faceapi_model, chips: torch.Tensor) -> None:
    with torch.inference_mode():
        a, b = dlib_model(chips), faceapi_model(chips)
    cos = (a * b).sum(1)
    assert (cos > 0.99).all(), cos
    # and the descriptors still separate the two identities
    same = float((a[0] * a[1]).sum()), float((a[2] * a[3]).sum())
    cross = float((a[0] * a[2]).sum())
    assert min(same) > cross


@pytest.mark.shared
@pytest.mark.parametrize("name", ["dlib-resnet29", "faceapi-resnet29"])
def test_gradients_flow(name: str, dlib_model, faceapi_model, chips: torch.Tensor) -> None:
    model = dlib_model if name == "dlib-resnet29" else faceapi_model
    x = chips[:1].clone().requires_grad_(True)
    target = model(chips[1:2]).detach()
    cos = (model(x) * target).sum()
    (g,) = torch.autograd.grad(cos, x)
    assert torch.isfinite(g).all()
    assert g.abs().max() > 0


@pytest.mark.shared
def test_hub_loading(shared: Path) -> None:
    """Both models load by name through the weight hub (face-api from ../shared, dlib from the installed package)."""
    m = create_recognizer("faceapi-resnet29", weights_dir=str(shared / "weights"))
    assert isinstance(m, DlibResNet29)
    if installed_dlib_dat() is not None:
        assert isinstance(create_recognizer("dlib-resnet29"), DlibResNet29)


# ------------------------------------------------------------------------------------------------------ LFW check
def _lfw_pairs(lfw_dir: Path, n: int) -> list[tuple[str, str, bool]]:
    lines = (lfw_dir / "meta" / "pairs.txt").read_text().splitlines()
    _, per_fold = map(int, lines[0].split())
    pairs = []
    for line in lines[1:1 + n]:
        name, i, j = line.split()
        pairs.append((f"{name}/{name}_{int(i):04d}.jpg", f"{name}/{name}_{int(j):04d}.jpg", True))
    for line in lines[1 + per_fold:1 + per_fold + n]:
        n1, i, n2, j = line.split()
        pairs.append((f"{n1}/{n1}_{int(i):04d}.jpg", f"{n2}/{n2}_{int(j):04d}.jpg", False))
    return pairs


def best_threshold_accuracy(scores: np.ndarray, same: np.ndarray) -> float:
    """Accuracy at the best threshold over the pairs themselves (the usual quick LFW check, not 10-fold)."""
    best = 0.0
    for t in np.concatenate([scores - 1e-6, [scores.max() + 1e-6]]):
        best = max(best, float(((scores >= t) == same).mean()))
    return best


@pytest.mark.shared
@pytest.mark.slow
def test_lfw_subset_accuracy(lfw_dir: Path, dlib_model, faceapi_model) -> None:
    """First 100 matched + 100 mismatched pairs of pairs.txt, MTCNN landmarks -> "dlib-150": accuracy >= 0.95."""
    from nullswap.faces import align_faces, create_detector, read_image

    try:
        detector = create_detector("mtcnn", min_face_size=60)  # LFW faces are ~100 px: a shorter pyramid
    except WeightsError as e:
        pytest.skip(f"MTCNN weights unavailable for the LFW check: {e}")
    pairs = _lfw_pairs(lfw_dir, 100)
    files = sorted({p for a, b, _ in pairs for p in (a, b)})
    fallback = torch.tensor([LFW_MEAN_LANDMARKS])
    crops = []
    missed = 0
    for rel in files:
        img = read_image(lfw_dir / "images" / rel).tensor
        det = detector.detect(img)[0]
        if len(det):
            centre = (det.boxes[:, :2] + det.boxes[:, 2:]) / 2
            lm = det.landmarks[[int(((centre - 124.5) ** 2).sum(1).argmin())]]
        else:
            missed += 1
            lm = fallback
        crops.append(align_faces(img, lm, "dlib-150")[0])
    assert missed <= len(files) // 20, f"MTCNN found no face in {missed} of {len(files)} LFW images"
    x = torch.cat(crops)
    index = {rel: i for i, rel in enumerate(files)}
    ia = torch.tensor([index[a] for a, _, _ in pairs])
    ib = torch.tensor([index[b] for _, b, _ in pairs])
    same = np.array([s for _, _, s in pairs])
    for model in (dlib_model, faceapi_model):
        with torch.inference_mode():
            e = torch.cat([model(x[i:i + 50]) for i in range(0, len(x), 50)])
        scores = (e[ia] * e[ib]).sum(1).numpy()
        acc = best_threshold_accuracy(scores, same)
        assert acc >= 0.95, f"{model.name}: LFW best-threshold accuracy {acc:.3f} on {len(pairs)} pairs"
