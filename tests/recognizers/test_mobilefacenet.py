"""MobileFaceNet (CASIA-WebFace) recognizer: architecture, checkpoint loading, real weights and an LFW subset.

Also holds the LFW-subset helpers shared with ``test_onnx_models.py`` (landmarks are detected once per session).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nullswap.errors import InputError, WeightsError, WeightsNotFoundError
from nullswap.recognizers import create_recognizer, recognizer_info
from nullswap.recognizers.mobilefacenet import (
    MobileFaceNet,
    StateDictError,
    load_state_dict_strict,
    mobilefacenet_casia,
)

# ----------------------------------------------------------------------------------------------- LFW helpers
_LFW_FACES: dict[Path, tuple[torch.Tensor, torch.Tensor]] = {}


def lfw_pairs(lfw_dir: Path, n: int = 100) -> list[tuple[Path, Path, bool]]:
    """The first ``n`` matched and the first ``n`` mismatched pairs of ``meta/pairs.txt`` (fold 1)."""
    lines = (lfw_dir / "meta" / "pairs.txt").read_text().splitlines()
    per_fold = int(lines[0].split()[1])
    rows = [ln.split("\t") for ln in lines[1:]]

    def img(name: str, i: str) -> Path:
        return lfw_dir / "images" / name / f"{name}_{int(i):04d}.jpg"

    matched = [(img(r[0], r[1]), img(r[0], r[2]), True) for r in rows[:n]]
    mismatched = [(img(r[0], r[1]), img(r[2], r[3]), False) for r in rows[per_fold : per_fold + n]]
    assert all(len(r) == 3 for r in rows[:n]) and all(len(r) == 4 for r in rows[per_fold : per_fold + n])
    return matched + mismatched


def lfw_faces(paths: list[Path]) -> dict[Path, tuple[torch.Tensor, torch.Tensor]]:
    """Image and 5 landmarks (nullswap's MTCNN, the face nearest the centre) of each path, cached per session."""
    try:
        from nullswap.faces.detection import create_detector
        from nullswap.faces.io import read_image
    except ImportError as e:  # pragma: no cover - while the detector module is absent
        pytest.skip(f"nullswap.faces.detection is not available: {e}")
    todo = [p for p in dict.fromkeys(paths) if p not in _LFW_FACES]
    if todo:
        try:
            det = create_detector("mtcnn", min_face_size=40)
        except WeightsError as e:
            pytest.skip(f"MTCNN weights unavailable: {e}")
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small tensors: one thread is faster and robust to a loaded machine
        try:
            for p in todo:
                img = read_image(p).tensor
                d = det.detect(img)[0]
                assert len(d) > 0, f"MTCNN found no face in {p}"
                h, w = img.shape[1:]
                centres = (d.boxes[:, :2] + d.boxes[:, 2:]) / 2
                i = int(((centres - torch.tensor([w / 2, h / 2])) ** 2).sum(1).argmin())
                _LFW_FACES[p] = (img, d.landmarks[i])
        finally:
            torch.set_num_threads(threads)
    return {p: _LFW_FACES[p] for p in paths}


def best_threshold_accuracy(scores: torch.Tensor, same: torch.Tensor) -> float:
    """Accuracy of ``score >= t`` at the best threshold t (over all observed scores and +inf)."""
    cands = torch.cat([scores.unique(), torch.tensor([float("inf")])])
    acc = ((scores[None, :] >= cands[:, None]) == same[None, :]).float().mean(1)
    return float(acc.max())


def lfw_accuracy(model, lfw_dir: Path, n: int = 100) -> float:
    """Best-threshold verification accuracy of ``model`` on the LFW subset, crops aligned to its template."""
    from nullswap.faces.alignment import align_faces

    pairs = lfw_pairs(lfw_dir, n)
    faces = lfw_faces([p for a, b, _ in pairs for p in (a, b)])
    crops = {p: align_faces(img, lm[None], model.template)[0][0] for p, (img, lm) in faces.items()}
    keys = list(crops)
    with torch.no_grad():
        emb = torch.cat([model(torch.stack([crops[k] for k in keys[i : i + 50]])) for i in range(0, len(keys), 50)])
    index = {k: i for i, k in enumerate(keys)}
    scores = torch.stack([(emb[index[a]] * emb[index[b]]).sum() for a, b, _ in pairs])
    same = torch.tensor([s for _, _, s in pairs])
    return best_threshold_accuracy(scores, same)


def lfw_crop(lfw_dir: Path, size: tuple[int, int]) -> torch.Tensor:
    """Two roughly face-centred LFW crops resized to ``size`` (for gradient checks; no detector needed)."""
    from nullswap.faces.io import read_image

    ims = []
    for name in ("Zico/Zico_0001.jpg", "Abel_Pacheco/Abel_Pacheco_0001.jpg"):
        img = read_image(lfw_dir / "images" / name).tensor[:, 70:180, 75:175]
        ims.append(F.interpolate(img[None], size=size, mode="bilinear", align_corners=False)[0])
    return torch.stack(ims).clamp(0, 1)


# ------------------------------------------------------------------------------------------ architecture facts
@pytest.fixture(scope="module")
def random_model():
    torch.manual_seed(0)
    return mobilefacenet_casia(pretrained=False).eval()


def test_info_registered():
    info = recognizer_info("mobilefacenet-casia")
    assert info.embedding_dim == 128 and info.input_size == (112, 96)
    assert info.template == "arcface-112x96" and info.offline and info.weights == ("mobilefacenet-casia",)
    assert "127.5" in info.normalization and "128" in info.normalization


def test_architecture_matches_paper_and_upstream_layout(random_model):
    net = random_model.net
    # Chen et al. 2018: "less than 1 million parameters" (abstract), 0.99M in their comparison table
    assert 0.98e6 < sum(p.numel() for p in net.parameters()) < 1e6
    sd = net.state_dict()
    # Xiaoccer/MobileFaceNet_Pytorch core/model.py: 15 bottlenecks (5+1+6+1+2), each an 8-module Sequential `conv`
    assert len(net.blocks) == 15 and len(net.blocks[0].conv) == 8
    # 068.ckpt's net_state_dict has 333 entries: conv block with PReLU = conv + 5 BN entries + PReLU = 7, linear
    # conv block = 6, bottleneck = 3 convs + 3 x 5 BN entries + 2 PReLU = 20
    assert len(sd) == 7 + 7 + 15 * 20 + 7 + 6 + 6 == 333
    assert sd["linear7.conv.weight"].shape == (512, 1, 7, 6)  # GDConv over the 7x6 map of a 112x96 input
    assert sd["linear1.conv.weight"].shape == (128, 512, 1, 1)
    assert sd["blocks.5.conv.0.weight"].shape == (256, 64, 1, 1)  # t=4 expansion stage
    assert sd["blocks.12.conv.3.weight"].shape == (512, 1, 3, 3)  # depthwise of the second t=4 stage
    assert "linear7.prelu.weight" not in sd and "conv2.prelu.weight" in sd


def test_forward_shapes_normalised_and_differentiable(random_model):
    x = torch.rand(3, 3, 112, 96, requires_grad=True)
    e = random_model(x)
    assert e.shape == (3, 128)
    assert torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    (e[0] @ e[1]).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_embed_is_single_image_not_flip_concat(random_model):
    x = torch.rand(1, 3, 112, 96)
    with torch.no_grad():
        raw = random_model.embed(x)
        ref = random_model.net((x * 255 - 127.5) / 128)
    assert raw.shape == (1, 128) and torch.equal(raw, ref)


def test_wrong_input_size(random_model):
    with pytest.raises(InputError, match=r"\(112, 96\)"):
        random_model(torch.rand(1, 3, 112, 112))


# -------------------------------------------------------------------------------------------- checkpoint loading
def _ckpt(tmp_path: Path, sd: dict, name: str = "m.ckpt") -> Path:
    p = tmp_path / name
    torch.save({"epoch": 68, "net_state_dict": sd}, p)
    return p


def test_roundtrip_through_file(tmp_path, random_model):
    path = _ckpt(tmp_path, random_model.net.state_dict())
    loaded = mobilefacenet_casia(checkpoint=str(path)).eval()
    x = torch.rand(2, 3, 112, 96)
    with torch.no_grad():
        assert torch.equal(loaded(x), random_model(x))


def test_missing_unexpected_and_mismatched_keys_are_named(tmp_path, random_model):
    sd = dict(random_model.net.state_dict())
    sd.pop("linear1.bn.running_var")
    sd["linear1.extra.weight"] = torch.zeros(3)
    sd["linear7.conv.weight"] = torch.zeros(512, 1, 7, 7)  # a 112x112 MobileFaceNet's GDConv
    with pytest.raises(StateDictError) as ei:
        mobilefacenet_casia(checkpoint=str(_ckpt(tmp_path, sd)))
    err = ei.value
    assert isinstance(err, WeightsError)
    assert err.missing == ["linear1.bn.running_var"] and err.unexpected == ["linear1.extra.weight"]
    assert err.mismatched == {"linear7.conv.weight": ((512, 1, 7, 6), (512, 1, 7, 7))}
    msg = str(err)
    assert "linear1.bn.running_var" in msg and "linear1.extra.weight" in msg and "(512, 1, 7, 6)" in msg


def test_absent_num_batches_tracked_is_accepted(random_model):
    sd = {k: v for k, v in random_model.net.state_dict().items() if not k.endswith("num_batches_tracked")}
    load_state_dict_strict(MobileFaceNet(), sd, source="test")


def test_missing_file_and_wrong_container(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="nope.ckpt"):
        mobilefacenet_casia(checkpoint=str(tmp_path / "nope.ckpt"))
    p = tmp_path / "plain.ckpt"
    torch.save({"weights": {}}, p)
    with pytest.raises(WeightsError, match="net_state_dict"):
        mobilefacenet_casia(checkpoint=str(p))
    bad = tmp_path / "garbage.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="garbage.ckpt"):
        mobilefacenet_casia(checkpoint=str(bad))


# ------------------------------------------------------------------------------------------------- real weights
@pytest.fixture(scope="module")
def real_model(shared):
    return create_recognizer("mobilefacenet-casia", weights_dir=str(shared / "weights"))


@pytest.mark.shared
def test_real_checkpoint_keys_match_exactly(shared):
    ckpt = torch.load(shared / "weights/mobilefacenet-casia/068.ckpt", map_location="cpu", weights_only=True)
    sd = ckpt["net_state_dict"]
    net = MobileFaceNet()
    assert list(sd) == list(net.state_dict())
    net.load_state_dict(sd, strict=True)


@pytest.mark.shared
def test_real_weights_embedding_and_gradient(real_model, lfw_dir):
    assert not any(p.requires_grad for p in real_model.parameters())
    x = lfw_crop(lfw_dir, (112, 96)).requires_grad_(True)
    e = real_model(x)
    assert e.shape == (2, 128) and torch.isfinite(e).all()
    cos = (e[0] * e[1]).sum()
    cos.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.shared
@pytest.mark.slow
def test_real_weights_lfw_subset(real_model, lfw_dir):
    acc = lfw_accuracy(real_model, lfw_dir)
    assert acc >= 0.95, f"mobilefacenet-casia LFW subset accuracy {acc:.3f} < 0.95"
