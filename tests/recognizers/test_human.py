"""The @vladmandic/human recognizers on the real TF.js weights in ../shared (skipped without them)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nullswap.errors import WeightsError
from nullswap.faces.alignment import align_faces
from nullswap.faces.templates import get_template
from nullswap.recognizers import create_recognizer, recognizer_info
from nullswap.recognizers.human import fix_mobilefacenet_prelu, fuse_prelu_patterns, human_mobilefacenet
from nullswap.recognizers.tfjs import TFJSGraph, TFJSNode, load_tfjs_graph

log = logging.getLogger(__name__)

NAMES = {"human-mobilefacenet": 192, "human-mobileface": 256, "human-faceres": 1024}
MIN_ACC = {"human-mobilefacenet": 0.95, "human-mobileface": 0.90, "human-faceres": 0.90}


@pytest.fixture(scope="module")
def weights_dir(shared: Path) -> str:
    return str(shared / "weights")


@pytest.fixture(scope="module")
def models(weights_dir: str) -> dict:
    return {name: create_recognizer(name, weights_dir=weights_dir) for name in NAMES}


def _read(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255


def _lfw_path(lfw: Path, name: str, i: int) -> Path:
    return lfw / "images" / name / f"{name}_{i:04d}.jpg"


def test_infos_are_consistent():
    for name, dim in NAMES.items():
        info = recognizer_info(name)
        assert info.embedding_dim == dim and info.offline
        assert get_template(info.template).size == info.input_size
        assert len(info.weights) == 2
    assert recognizer_info("human-faceres").input_size == (224, 224)
    assert recognizer_info("human-mobileface").input_size == (112, 112)


def test_fuse_prelu_patterns_preserves_the_function():
    # y = relu(x) + c * (x - |x|) in both operand orders, on a 1-D and a 4-D (NCHW-stored) tensor
    nodes = [TFJSNode("x", "Placeholder"), TFJSNode("c", "Const"), TFJSNode("r", "Relu", ["x"]),
             TFJSNode("a", "Abs", ["x"]), TFJSNode("s", "Sub", ["x", "a"]), TFJSNode("m", "Mul", ["c", "s"]),
             TFJSNode("y", "AddV2", ["m", "r"])]
    c = np.array([0.1, -0.3, 0.7], np.float32)
    x = torch.randn(2, 3, 4, 5)
    ref = TFJSGraph(nodes, {"c": c}, ["y"]).to_module()(x)
    graph = TFJSGraph([TFJSNode(n.name, n.op, list(n.inputs)) for n in nodes], {"c": c}, ["y"])
    assert fuse_prelu_patterns(graph) == 1 and graph.nodes["y"].op == "Prelu"
    mod = graph.to_module()
    assert "Abs" not in mod.extra_repr()
    torch.testing.assert_close(mod(x), ref)
    torch.testing.assert_close(mod(x), torch.where(x >= 0, x, 2 * torch.from_numpy(c).view(1, 3, 1, 1) * x))
    v = torch.randn(7, 3)
    torch.testing.assert_close(mod(v), TFJSGraph(nodes, {"c": c}, ["y"]).to_module()(v))


@pytest.mark.shared
@pytest.mark.parametrize("name", list(NAMES))
def test_loads_embeds_and_backpropagates(models, name):
    m = models[name]
    assert m.embedding_dim == NAMES[name]
    assert not any(p.requires_grad for p in m.parameters())
    torch.manual_seed(0)
    x = torch.rand(2, 3, *m.input_size, requires_grad=True)
    e = m(x)
    assert e.shape == (2, NAMES[name])
    torch.testing.assert_close(e.norm(dim=1), torch.ones(2))
    (e[0] @ e[1]).backward()
    g = x.grad
    assert torch.isfinite(g).all() and g.abs().sum() > 0


@pytest.mark.shared
@pytest.mark.parametrize("name", list(NAMES))
def test_input_size_matches_the_graph_placeholder(weights_dir, name):
    from nullswap.hub import fetch

    info = recognizer_info(name)
    graph = load_tfjs_graph(fetch(info.weights[0], weights_dir=weights_dir), fetch(info.weights[1],
                                                                                    weights_dir=weights_dir))
    (inp,) = graph.inputs
    assert graph.nodes[inp].attrs["shape"] == [-1, *info.input_size, 3]  # NHWC


@pytest.mark.shared
def test_checkpoint_argument_loads_a_model_json(shared):
    m = create_recognizer("human-mobileface", checkpoint=str(shared / "weights/human-models/mobileface.json"))
    assert m(torch.rand(1, 3, 112, 112)).shape == (1, 256)


@pytest.mark.shared
def test_pretrained_false_redraws_kernels(weights_dir):
    m0 = create_recognizer("human-mobileface", pretrained=False, weights_dir=weights_dir)
    m1 = create_recognizer("human-mobileface", weights_dir=weights_dir)
    x = torch.rand(1, 3, 112, 112)
    e0, e1 = m0(x), m1(x)
    assert e0.shape == e1.shape == (1, 256) and torch.isfinite(e0).all()
    assert float(e0[0] @ e1[0]) < 0.9


@pytest.mark.shared
def test_prelu_fix_is_found_by_pattern(weights_dir):
    from nullswap.hub import fetch

    graph = load_tfjs_graph(fetch("human-mobilefacenet.json", weights_dir=weights_dir),
                            fetch("human-mobilefacenet.bin", weights_dir=weights_dir))
    muls = {n.inputs[1] for n in graph.nodes.values() if n.op == "Mul" and n.inputs[1].endswith("/mul")}
    before = {k: graph.weights[k].copy() for k in muls}
    assert fix_mobilefacenet_prelu(graph) == (33, 16)
    assert len(muls) == 33 and all(np.array_equal(graph.weights[k], -before[k]) for k in muls)
    consumers = graph.consumers()
    for n in graph.nodes.values():
        if n.op == "Abs":
            x = graph.nodes[n.inputs[0]]
            assert "Relu" not in x.attrs.get("fused_ops", [])  # the PReLU sees the raw convolution
            adds = [c for c, _ in consumers[x.name] if c.op == "Add"]
            assert not adds  # the Add reads Relu(x) now, never x itself
    with pytest.raises(WeightsError, match="already"):
        fix_mobilefacenet_prelu(graph)


@pytest.mark.shared
def test_as_shipped_mobilefacenet_is_near_constant(models, weights_dir, lfw_dir):
    # loosely centred crops of six different people: the shipped graph scores every pair >= 0.99, the fixed one not
    people = ["Abel_Pacheco", "Bernard_Law", "Gerhard_Schroeder", "George_W_Bush", "Serena_Williams", "Tony_Blair"]
    x = torch.stack([_read(sorted((lfw_dir / "images" / p).glob("*.jpg"))[0])[:, 69:181, 69:181] for p in people])
    broken = human_mobilefacenet(weights_dir=weights_dir, fix_prelu=False).eval()
    with torch.no_grad():
        sb = broken(x) @ broken(x).T
        sf = models["human-mobilefacenet"](x) @ models["human-mobilefacenet"](x).T
    off = ~torch.eye(len(people), dtype=torch.bool)
    log.info("as shipped: min off-diagonal cosine %.4f; fixed: max %.4f", sb[off].min(), sf[off].max())
    assert sb[off].min() >= 0.99
    assert sf[off].max() < 0.9


# ------------------------------------------------------------------------------------------------------------ LFW
def _pairs(lfw: Path, n: int = 100) -> list[tuple[tuple[str, int], tuple[str, int], int]]:
    lines = (lfw / "meta" / "pairs.txt").read_text().splitlines()[1:]
    out = []
    for line in lines[:n]:
        a, i, j = line.split("\t")
        out.append(((a, int(i)), (a, int(j)), 1))
    for line in lines[300 : 300 + n]:
        a, i, b, j = line.split("\t")
        out.append(((a, int(i)), (b, int(j)), 0))
    return out


def _best_accuracy(sims: np.ndarray, labels: np.ndarray) -> float:
    return max(float(((sims >= t) == labels).mean()) for t in np.unique(sims))


@pytest.fixture(scope="module")
def lfw_faces(lfw_dir):
    """Images and MTCNN landmarks of the first 100 matched + 100 mismatched pairs (detected once for all models)."""
    try:
        from nullswap.faces.detection import create_detector

        det = create_detector("mtcnn")
    except (ImportError, WeightsError) as e:
        pytest.skip(f"nullswap's MTCNN detector is unavailable ({e}); the LFW checks need landmarks")
    pairs = _pairs(lfw_dir)
    keys = sorted({k for p in pairs for k in p[:2]})
    images, landmarks = {}, {}
    centre = torch.tensor([125.0, 125.0])
    for k in keys:
        img = _read(_lfw_path(lfw_dir, *k))
        d = det.detect(img)[0]
        assert len(d) > 0, f"no face found in {k}"
        i = int((((d.boxes[:, :2] + d.boxes[:, 2:]) / 2 - centre) ** 2).sum(1).argmin())  # the centred face
        images[k], landmarks[k] = img, d.landmarks[i : i + 1]
    return pairs, images, landmarks


def _similarities(model, lfw_faces, pairs: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    all_pairs, images, landmarks = lfw_faces
    pairs = all_pairs if pairs is None else pairs
    keys = sorted({k for p in pairs for k in p[:2]})
    crops = torch.cat([align_faces(images[k][None], landmarks[k], model.template)[0] for k in keys])
    with torch.no_grad():
        emb = torch.cat([model(crops[i : i + 64]) for i in range(0, len(crops), 64)])
    idx = {k: i for i, k in enumerate(keys)}
    sims = np.array([float(emb[idx[a]] @ emb[idx[b]]) for a, b, _ in pairs])
    return sims, np.array([label for *_, label in pairs])


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.parametrize("name", list(NAMES))
def test_lfw_subset_accuracy(models, lfw_faces, name):
    sims, labels = _similarities(models[name], lfw_faces)
    acc = _best_accuracy(sims, labels)
    log.info("%s: LFW best-threshold accuracy %.3f on %d pairs", name, acc, len(labels))
    assert acc >= MIN_ACC[name], f"{name}: LFW accuracy {acc:.3f} < {MIN_ACC[name]}"


@pytest.mark.shared
@pytest.mark.slow
def test_lfw_as_shipped_mobilefacenet_cannot_verify(weights_dir, lfw_faces):
    # 25 matched + 25 mismatched pairs are plenty to show it (and keep the test fast)
    pairs = lfw_faces[0][:25] + lfw_faces[0][100:125]
    broken = human_mobilefacenet(weights_dir=weights_dir, fix_prelu=False).eval()
    sims, labels = _similarities(broken, lfw_faces, pairs)
    assert sims.min() >= 0.99  # every pair, matched or not, looks like the same person
    assert _best_accuracy(sims, labels) < 0.9
