"""ArcFace IResNet-50/100 and FaceNet Inception-ResNet-v1 loaders, checked against facts of the upstream files.

Their weights are user-supplied (not obtainable offline), so these tests check what a user's file must match:
parameter counts and state-dict keys/shapes as published upstream, and the round trip of a random state dict
through the loaders with strict keys. Expected numbers come from the upstream sources, not from nullswap's code:

* insightface ``recognition/arcface_torch/backbones/iresnet.py``: module names (``conv1``, ``bn1``, ``prelu``,
  ``layer<k>.<i>.{bn1,conv1,bn2,prelu,conv2,bn3,downsample.0,downsample.1}``, ``bn2``, ``fc``, ``features``), stage
  depths (3, 4, 14, 3) / (3, 13, 30, 3), ``fc`` = Linear(512 * 7 * 7, 512). State-dict entries: stem 7, each block
  18 (3 BN x 5 + 2 convs + PReLU), each of the 4 downsamples 6, head 12 (bn2 5, fc 2, features 5).
* Parameter counts: IResNet-50 43.59M (AdaDistill, Boutros et al., ECCV 2024: "ResNet50 (43.59M, 13.64GFLOPs)");
  IResNet-100 65.132M (OpenVINO Open Model Zoo, face-recognition-resnet100-arcface-onnx, "MParams 65.1320", the
  insightface LResNet100E-IR of the same design).
* facenet-pytorch ``models/inception_resnet_v1.py`` module names and the published files' classifier
  ``logits`` (8631 classes for VGGFace2, 10575 for CASIA-WebFace); 23,482,624 parameters without the classifier
  (a torchinfo summary of facenet-pytorch's InceptionResnetV1 with a 10-class head: 23,487,754 total, 5,130 head).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nullswap.errors import WeightsError, WeightsNotFoundError
from nullswap.faces.alignment import template_to_template
from nullswap.faces.templates import get_template
from nullswap.recognizers import create_recognizer, recognizer_info
from nullswap.recognizers.arcface import arcface_r50, arcface_r100, iresnet
from nullswap.recognizers.facenet import InceptionResnetV1, facenet_casia, facenet_vggface2
from nullswap.recognizers.mobilefacenet import StateDictError, load_state_dict_strict


def _nparams(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _randomise(sd: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random but valid values (positive running variances) so that a round trip is a meaningful check."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in sd.items():
        if not v.is_floating_point():
            out[k] = v.clone()
        elif k.endswith("running_var"):
            out[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            out[k] = torch.randn(v.shape, generator=g) * 0.05
    return out


# ------------------------------------------------------------------------------------------------------ ArcFace
@pytest.fixture(scope="module")
def r50():
    return arcface_r50(pretrained=False).eval()


@pytest.fixture(scope="module")
def r100():
    return arcface_r100(pretrained=False).eval()  # built once for this module


def test_arcface_info():
    for name in ("arcface-r50", "arcface-r100"):
        info = recognizer_info(name)
        assert (info.embedding_dim, info.input_size, info.template) == (512, (112, 112), "arcface-112")
        assert not info.offline and "0.5" in info.normalization


def test_iresnet50_upstream_facts(r50):
    n = _nparams(r50.net)
    assert abs(n - 43.59e6) < 0.005e6, n
    sd = r50.net.state_dict()
    assert len(sd) == 7 + 18 * (3 + 4 + 14 + 3) + 6 * 4 + 12 == 475
    expected = {
        "conv1.weight": (64, 3, 3, 3),
        "prelu.weight": (64,),
        "layer1.0.bn1.weight": (64,),
        "layer1.0.conv2.weight": (64, 64, 3, 3),
        "layer1.0.downsample.0.weight": (64, 64, 1, 1),
        "layer2.0.downsample.1.running_var": (128,),
        "layer3.13.bn3.running_mean": (256,),
        "layer4.2.prelu.weight": (512,),
        "bn2.weight": (512,),
        "fc.weight": (512, 512 * 7 * 7),
        "fc.bias": (512,),
        "features.weight": (512,),
        "features.running_var": (512,),
    }
    assert {k: tuple(sd[k].shape) for k in expected} == expected
    assert "layer3.14.bn1.weight" not in sd and "layer1.1.downsample.0.weight" not in sd


def test_iresnet100_upstream_facts(r100):
    n = _nparams(r100.net)
    assert abs(n / 1e6 - 65.132) / 65.132 < 1e-3, n
    sd = r100.net.state_dict()
    assert len(sd) == 7 + 18 * (3 + 13 + 30 + 3) + 6 * 4 + 12 == 925
    assert tuple(sd["layer2.12.conv2.weight"].shape) == (128, 128, 3, 3)
    assert tuple(sd["layer3.29.bn3.weight"].shape) == (256,)
    assert "layer3.30.bn1.weight" not in sd and tuple(sd["fc.weight"].shape) == (512, 25088)


def test_arcface_r50_roundtrip_through_file(tmp_path, r50):
    sd = _randomise(r50.net.state_dict())
    path = tmp_path / "backbone.pth"
    torch.save(sd, path)
    model = create_recognizer("arcface-r50", checkpoint=str(path))
    ref = iresnet("r50").eval()
    ref.load_state_dict(sd)
    x = torch.rand(2, 3, 112, 112, requires_grad=True)
    e = model(x)
    with torch.no_grad():
        torch.testing.assert_close(model.embed(x), ref((x - 0.5) / 0.5))
    assert e.shape == (2, 512)
    (e[0] * e[1]).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_arcface_dataparallel_prefix_is_stripped(tmp_path, r50):
    path = tmp_path / "dp.pth"
    torch.save({"module." + k: v for k, v in r50.net.state_dict().items()}, path)
    arcface_r50(checkpoint=str(path))


def test_arcface_wrong_keys_are_named(tmp_path, r50, r100):
    sd = dict(r50.net.state_dict())
    sd.pop("layer3.13.bn3.running_mean")
    sd["fc.weight"] = torch.zeros(512, 512 * 8 * 8)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(StateDictError) as ei:
        arcface_r50(checkpoint=str(path))
    assert ei.value.missing == ["layer3.13.bn3.running_mean"]
    assert ei.value.mismatched == {"fc.weight": ((512, 25088), (512, 32768))}
    assert "layer3.13.bn3.running_mean" in str(ei.value) and "(512, 25088)" in str(ei.value)
    # an IResNet-50 file given for IResNet-100: the deeper blocks are missing
    with pytest.raises(StateDictError) as ei:
        load_state_dict_strict(r100.net, r50.net.state_dict(), source="r50 backbone.pth")
    assert "layer2.4.conv1.weight" in ei.value.missing and not ei.value.unexpected


def test_arcface_missing_weights(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="nope.pth"):
        arcface_r50(checkpoint=str(tmp_path / "nope.pth"))
    with pytest.raises(WeightsNotFoundError, match="arcface-r50"):
        arcface_r50(weights_dir=str(tmp_path))  # no file in any weights folder; no remote source exists
    bad = tmp_path / "bad.pth"
    bad.write_text("not a checkpoint")
    with pytest.raises(WeightsError, match="bad.pth"):
        arcface_r50(checkpoint=str(bad))


# ------------------------------------------------------------------------------------------------------ FaceNet
@pytest.fixture(scope="module")
def facenet():
    return facenet_vggface2(pretrained=False).eval()


def test_facenet_info_and_template():
    for name in ("facenet-vggface2", "facenet-casia"):
        info = recognizer_info(name)
        assert (info.embedding_dim, info.input_size, info.template) == (512, (160, 160), "facenet-160")
        assert not info.offline and "127.5" in info.normalization
    t = get_template("facenet-160")
    pts = t.points_tensor()
    assert t.size == (160, 160) and ((pts > 0) & (pts < 160)).all()
    assert pts[0, 0] < pts[1, 0] and pts[3, 0] < pts[4, 0] and pts[:2, 1].max() < pts[2, 1] < pts[3:, 1].min()
    M = template_to_template("arcface-112", "facenet-160")
    scale = float(torch.linalg.det(M[:, :2]).sqrt())
    assert 1.2 < scale < 2.0  # a 112 px ArcFace face appears larger in the 160 px FaceNet crop


def test_facenet_upstream_facts(facenet):
    assert _nparams(facenet.net) == 23_482_624
    sd = facenet.net.state_dict()
    expected = {
        "conv2d_1a.conv.weight": (32, 3, 3, 3),
        "conv2d_1a.bn.running_var": (32,),
        "conv2d_4b.conv.weight": (256, 192, 3, 3),
        "repeat_1.4.branch2.2.conv.weight": (32, 32, 3, 3),
        "repeat_1.0.conv2d.weight": (256, 96, 1, 1),
        "mixed_6a.branch1.2.conv.weight": (256, 192, 3, 3),
        "repeat_2.9.branch1.1.conv.weight": (128, 128, 1, 7),
        "repeat_2.9.branch1.2.conv.weight": (128, 128, 7, 1),
        "mixed_7a.branch2.2.conv.weight": (256, 256, 3, 3),
        "repeat_3.4.conv2d.bias": (1792,),
        "block8.conv2d.weight": (1792, 384, 1, 1),
        "last_linear.weight": (512, 1792),
        "last_bn.running_mean": (512,),
    }
    assert {k: tuple(sd[k].shape) for k in expected} == expected
    assert "last_linear.bias" not in sd and "logits.weight" not in sd


@pytest.mark.parametrize(("factory", "classes"), [(facenet_vggface2, 8631), (facenet_casia, 10575)])
def test_facenet_roundtrip_of_published_layout(tmp_path, facenet, factory, classes):
    # facenet-pytorch's release files are its InceptionResnetV1 state dict *with* the classifier head
    sd = _randomise(facenet.net.state_dict(), seed=classes)
    published = dict(sd, **{"logits.weight": torch.randn(classes, 512), "logits.bias": torch.randn(classes)})
    path = tmp_path / f"facenet-{classes}.pt"
    torch.save(published, path)
    model = factory(checkpoint=str(path)).eval()
    ref = InceptionResnetV1().eval()
    ref.load_state_dict(sd)
    x = torch.rand(2, 3, 160, 160, requires_grad=True)
    e = model(x)
    with torch.no_grad():
        torch.testing.assert_close(model.embed(x), ref((x * 255 - 127.5) / 128))
    (e[0] * e[1]).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_facenet_wrong_keys_are_named(tmp_path, facenet):
    sd = dict(facenet.net.state_dict())
    sd.pop("repeat_2.3.branch1.1.bn.weight")
    sd["last_linear.bias"] = torch.zeros(512)
    path = tmp_path / "bad.pt"
    torch.save(sd, path)
    with pytest.raises(StateDictError) as ei:
        facenet_vggface2(checkpoint=str(path))
    assert ei.value.missing == ["repeat_2.3.branch1.1.bn.weight"] and ei.value.unexpected == ["last_linear.bias"]
    msg = str(ei.value)
    assert "repeat_2.3.branch1.1.bn.weight" in msg and "last_linear.bias" in msg and "bad.pt" in msg


def test_facenet_missing_file(tmp_path: Path):
    with pytest.raises(WeightsNotFoundError, match="20180402"):
        facenet_vggface2(checkpoint=str(tmp_path / "20180402-114759-vggface2.pt"))
