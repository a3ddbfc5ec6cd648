"""The onnxruntime verifiers (issue 14): graph rewrites, batching, no gradients; real crops against onnx2torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from nullswap.errors import InputError
from nullswap.recognizers.base import RecognizerInfo
from nullswap.recognizers.ort_runner import (
    OrtRecognizer,
    OrtUnavailableError,
    create_ort_recognizer,
    onnx_file_graph,
    ort_session,
    prelu_as_max,
    zero_subnormal_weights,
)

pytest.importorskip("onnxruntime")

INFO = RecognizerInfo("tiny-ort", 8, (16, 16), "arcface-112", "test")


def _tiny_prelu_onnx(path: Path, slopes: np.ndarray, *, subnormal: bool = False) -> None:
    """Fixed-batch-1 graph: 1x1 Conv (3 -> 8), PRelu(slopes), GlobalAveragePool, Reshape [1, -1]."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 3, 1, 1)).astype(np.float32)
    if subnormal:
        w[0, 0, 0, 0] = np.float32(1e-40)
    b = rng.standard_normal(8).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "w", "b"], ["c"], kernel_shape=[1, 1]),
            helper.make_node("PRelu", ["c", "slope"], ["p"]),
            helper.make_node("GlobalAveragePool", ["p"], ["g"]),
            helper.make_node("Reshape", ["g", "shape"], ["output"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 8])],
        [
            numpy_helper.from_array(w, "w"),
            numpy_helper.from_array(b, "b"),
            numpy_helper.from_array(slopes.astype(np.float32).reshape(8, 1, 1), "slope"),
            numpy_helper.from_array(np.array([1, -1], np.int64), "shape"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _session_of(model: onnx.ModelProto):
    return ort_session(model.SerializeToString(), threads=1)


def test_prelu_as_max_is_exact_and_only_for_slopes_up_to_one(tmp_path):
    slopes = np.linspace(-0.9, 1.0, 8)
    _tiny_prelu_onnx(tmp_path / "a.onnx", slopes)
    original = onnx.load(str(tmp_path / "a.onnx"))
    rewritten = onnx.load(str(tmp_path / "a.onnx"))
    assert prelu_as_max(rewritten) == 1
    assert [n.op_type for n in rewritten.graph.node] == ["Conv", "Mul", "Max", "GlobalAveragePool", "Reshape"]
    x = (np.random.default_rng(1).standard_normal((1, 3, 16, 16)) * 3).astype(np.float32)
    a = _session_of(original).run(None, {"input": x})[0]
    b = _session_of(rewritten).run(None, {"input": x})[0]
    np.testing.assert_array_equal(a, b)  # bit for bit
    _tiny_prelu_onnx(tmp_path / "big.onnx", np.linspace(-0.5, 1.5, 8))  # a slope above 1: Max would be wrong
    assert prelu_as_max(onnx.load(str(tmp_path / "big.onnx"))) == 0


def test_zero_subnormal_weights(tmp_path):
    _tiny_prelu_onnx(tmp_path / "s.onnx", np.full(8, 0.25), subnormal=True)
    model = onnx.load(str(tmp_path / "s.onnx"))
    assert zero_subnormal_weights(model) == 1
    w = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "w"))
    assert w[0, 0, 0, 0] == 0 and np.count_nonzero(w) == w.size - 1
    assert zero_subnormal_weights(model) == 0


def test_ort_recognizer_batches_normalises_and_refuses_gradients(tmp_path):
    _tiny_prelu_onnx(tmp_path / "t.onnx", np.linspace(-0.9, 1.0, 8))
    rec = OrtRecognizer(INFO, ort_session(onnx_file_graph(str(tmp_path / "t.onnx")), threads=1),
                        mean=(127.5, 127.5, 127.5), std=(127.5, 127.5, 127.5))
    assert not rec.per_sample  # the Reshape [1, -1] was made batch-agnostic
    ref = _session_of(onnx.load(str(tmp_path / "t.onnx")))
    x = torch.rand(3, 3, 16, 16)
    with torch.inference_mode():
        e = rec(x)
    assert e.shape == (3, 8) and torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    z = ((x * 255.0 - 127.5) / 127.5).numpy()
    one_by_one = torch.from_numpy(np.concatenate([ref.run(None, {"input": z[i : i + 1]})[0] for i in range(3)]))
    torch.testing.assert_close(e, torch.nn.functional.normalize(one_by_one, dim=1), rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="expected an input without gradient"):
        rec(torch.rand(1, 3, 16, 16, requires_grad=True))


def test_a_pytorch_recognizer_has_no_ort_form():
    with pytest.raises(OrtUnavailableError, match="expected a recognizer shipped as an ONNX file"):
        create_ort_recognizer("human-mobilefacenet")


def test_backend_choice(monkeypatch):
    from nullswap.verdict import BACKEND_ENV, verifier_backend

    monkeypatch.delenv(BACKEND_ENV, raising=False)
    assert verifier_backend(None, "cpu") == "ort"
    assert verifier_backend("torch", "cpu") == "torch"
    monkeypatch.setenv(BACKEND_ENV, "torch")
    assert verifier_backend(None, "cpu") == "torch"
    monkeypatch.setenv(BACKEND_ENV, "tensorrt")
    with pytest.raises(InputError, match="expected one of auto, ort, torch, got 'tensorrt'"):
        verifier_backend(None, "cpu")


# ------------------------------------------------------------------------------------------- real weights and crops
@pytest.fixture(scope="module")
def real_crops(photos_dir):
    """ArcFace-112 crops of every face SCRFD finds in four shared photos (the group photo's six included)."""
    from nullswap.faces.alignment import align_faces
    from nullswap.faces.detection import create_detector
    from nullswap.faces.io import read_image

    det = create_detector("scrfd")
    crops = []
    for name in ("group_t1.jpg", "obama1.jpg", "biden_biden.jpg", "tomhanks.png"):
        img = read_image(photos_dir / name).tensor
        crops.append(align_faces(img, det.detect(img)[0].landmarks, "arcface-112")[0])
    return torch.cat(crops)


@pytest.mark.shared
@pytest.mark.parametrize("name", ["arcface-mbf", "faceplugin-512"])
def test_ort_embeddings_equal_the_onnx2torch_ones_on_real_crops(name, real_crops):
    from nullswap.recognizers import create_recognizer

    assert real_crops.shape[0] >= 9
    ours, theirs = create_ort_recognizer(name), create_recognizer(name)
    with torch.inference_mode():
        a, b = ours(real_crops), theirs(real_crops)
    cos = (a * b).sum(dim=1)
    assert float(cos.min()) > 0.9999, f"{name}: smallest cosine {float(cos.min()):.6f}"
    assert float((a - b).abs().max()) < 1e-5
    with torch.inference_mode():  # the batch and the crops one by one give the same embeddings
        singles = torch.cat([ours(real_crops[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(singles, a[:3], rtol=1e-5, atol=1e-6)
