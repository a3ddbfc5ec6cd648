"""FaceNet Inception-ResNet-v1 (VGGFace2 / CASIA-WebFace): ``"facenet-vggface2"``, ``"facenet-casia"``.

Schroff, Kalenichenko and Philbin, "FaceNet: A Unified Embedding for Face Recognition and Clustering", CVPR 2015
(arXiv:1503.03832), with the Inception-ResNet-v1 backbone of Szegedy, Ioffe, Vanhoucke and Alemi, "Inception-v4,
Inception-ResNet and the Impact of Residual Connections on Learning", AAAI 2017 (arXiv:1602.07261): stem, 5 x
Inception-ResNet-A (scale 0.17), Reduction-A, 10 x Inception-ResNet-B (0.10), Reduction-B, 5 x Inception-ResNet-C
(0.20) and a last C block without ReLU, global average pooling, a bias-free 1792 -> 512 linear layer and BN1d.

Weights: David Sandberg's TensorFlow models ``20180402-114759`` (VGGFace2) and ``20180408-102900`` (CASIA-WebFace),
as converted and published by facenet-pytorch (GitHub ``timesler/facenet-pytorch`` release v2.2.9,
``20180402-114759-vggface2.pt`` and ``20180408-102900-casia-webface.pt``, MIT). Those files are state dicts of
facenet-pytorch's ``InceptionResnetV1`` *with* its classifier (``logits.weight`` of 8631 x 512 for VGGFace2, 10575 x 512
for CASIA). The module below is written from the paper and uses the same module names (``conv2d_1a``, ``repeat_1``,
``mixed_6a``, ``block8``, ``last_linear``, ``last_bn`` ...), so those files load with strict keys; the ``logits.*``
classifier entries are the only keys dropped (the embedding does not use them). facenet-pytorch is not imported.

Input: 160x160 RGB, ``fixed_image_standardization`` = ``(pixel - 127.5) / 128``. Crops: facenet-pytorch cuts the
MTCNN box plus a margin and resizes it to 160x160 (its LFW evaluation uses ``margin=14``); there is no landmark
alignment. The ``"facenet-160"`` template registered here reproduces that crop on average: its 5 points are the mean
MTCNN landmark positions relative to the MTCNN box, measured with nullswap's MTCNN on 80 LFW images (one per 50th
identity, deep-funneled), mapped into the margin-14 crop (box -> [7, 153] px). MTCNN boxes are taller than wide
(mean w/h 0.75), so the points are vertically compressed like the training crops; a similarity fit to them is the
closest rigid equivalent of the box crop.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from nullswap.faces.templates import AlignmentTemplate, register_template
from nullswap.hub import get_weight_spec
from nullswap.hub.registry import FACENET_VARIANTS
from nullswap.recognizers.base import FaceRecognizer, RecognizerInfo
from nullswap.recognizers.mobilefacenet import load_state_dict_strict, read_torch_checkpoint, resolve_weights
from nullswap.recognizers.registry import register_recognizer

log = logging.getLogger(__name__)

__all__ = [
    "FACENET_160", "FaceNetRecognizer", "InceptionResnetV1", "facenet_casia", "facenet_vggface2",
]

FACENET_160 = register_template(
    AlignmentTemplate(
        "facenet-160",
        (160, 160),
        ((49.0, 64.3), (115.6, 62.9), (83.7, 92.7), (53.7, 117.7), (113.7, 116.3)),
        "FaceNet 160x160: mean MTCNN landmarks in facenet-pytorch's margin-14 box crop (80 LFW faces)",
    )
)


# ------------------------------------------------------------------------------------------------- architecture
class BasicConv2d(nn.Module):
    """Conv (no bias) + BN (eps 1e-3, TensorFlow's) + ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Conv, BN, ReLU."""
        return self.relu(self.bn(self.conv(x)))


class Block35(nn.Module):
    """Inception-ResNet-A (35x35 grid in the paper's 299 px setting; 17x17 at 160 px), 256 channels."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = BasicConv2d(256, 32, 1)
        self.branch1 = nn.Sequential(BasicConv2d(256, 32, 1), BasicConv2d(32, 32, 3, padding=1))
        self.branch2 = nn.Sequential(
            BasicConv2d(256, 32, 1), BasicConv2d(32, 32, 3, padding=1), BasicConv2d(32, 32, 3, padding=1)
        )
        self.conv2d = nn.Conv2d(96, 256, 1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled residual of the concatenated branches, then ReLU."""
        y = self.conv2d(torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), 1))
        return self.relu(x + self.scale * y)


class Block17(nn.Module):
    """Inception-ResNet-B, 896 channels, factorised 1x7 / 7x1 convolutions."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = BasicConv2d(896, 128, 1)
        self.branch1 = nn.Sequential(
            BasicConv2d(896, 128, 1),
            BasicConv2d(128, 128, (1, 7), padding=(0, 3)),
            BasicConv2d(128, 128, (7, 1), padding=(3, 0)),
        )
        self.conv2d = nn.Conv2d(256, 896, 1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled residual of the concatenated branches, then ReLU."""
        y = self.conv2d(torch.cat((self.branch0(x), self.branch1(x)), 1))
        return self.relu(x + self.scale * y)


class Block8(nn.Module):
    """Inception-ResNet-C, 1792 channels, factorised 1x3 / 3x1 convolutions; ``relu=False`` for the last block."""

    def __init__(self, scale: float = 1.0, relu: bool = True) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = BasicConv2d(1792, 192, 1)
        self.branch1 = nn.Sequential(
            BasicConv2d(1792, 192, 1),
            BasicConv2d(192, 192, (1, 3), padding=(0, 1)),
            BasicConv2d(192, 192, (3, 1), padding=(1, 0)),
        )
        self.conv2d = nn.Conv2d(384, 1792, 1)
        self.relu = nn.ReLU() if relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled residual of the concatenated branches, then the optional ReLU."""
        y = x + self.scale * self.conv2d(torch.cat((self.branch0(x), self.branch1(x)), 1))
        return y if self.relu is None else self.relu(y)


class Mixed6a(nn.Module):
    """Reduction-A (k, l, m, n = 192, 192, 256, 384): 256 -> 896 channels, stride 2."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = BasicConv2d(256, 384, 3, stride=2)
        self.branch1 = nn.Sequential(
            BasicConv2d(256, 192, 1), BasicConv2d(192, 192, 3, padding=1), BasicConv2d(192, 256, 3, stride=2)
        )
        self.branch2 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate the three stride-2 branches."""
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), 1)


class Mixed7a(nn.Module):
    """Reduction-B: 896 -> 1792 channels, stride 2."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(BasicConv2d(896, 256, 1), BasicConv2d(256, 384, 3, stride=2))
        self.branch1 = nn.Sequential(BasicConv2d(896, 256, 1), BasicConv2d(256, 256, 3, stride=2))
        self.branch2 = nn.Sequential(
            BasicConv2d(896, 256, 1), BasicConv2d(256, 256, 3, padding=1), BasicConv2d(256, 256, 3, stride=2)
        )
        self.branch3 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate the four stride-2 branches."""
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)), 1)


class InceptionResnetV1(nn.Module):
    """Inception-ResNet-v1 embedding network (FaceNet), 512-d output before L2 normalisation.

    Args:
        embedding_dim: output length (512 for the released models).
        dropout: dropout before the last linear layer (facenet-pytorch's 0.6; inactive in eval).
    """

    def __init__(self, embedding_dim: int = 512, dropout: float = 0.6) -> None:
        super().__init__()
        self.conv2d_1a = BasicConv2d(3, 32, 3, stride=2)
        self.conv2d_2a = BasicConv2d(32, 32, 3)
        self.conv2d_2b = BasicConv2d(32, 64, 3, padding=1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = BasicConv2d(64, 80, 1)
        self.conv2d_4a = BasicConv2d(80, 192, 3)
        self.conv2d_4b = BasicConv2d(192, 256, 3, stride=2)
        self.repeat_1 = nn.Sequential(*[Block35(scale=0.17) for _ in range(5)])
        self.mixed_6a = Mixed6a()
        self.repeat_2 = nn.Sequential(*[Block17(scale=0.10) for _ in range(10)])
        self.mixed_7a = Mixed7a()
        self.repeat_3 = nn.Sequential(*[Block8(scale=0.20) for _ in range(5)])
        self.block8 = Block8(relu=False)
        self.avgpool_1a = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.last_linear = nn.Linear(1792, embedding_dim, bias=False)
        self.last_bn = nn.BatchNorm1d(embedding_dim, eps=1e-3, momentum=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` standardised input -> ``(B, embedding_dim)`` (not L2-normalised)."""
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))
        x = self.conv2d_4b(self.conv2d_4a(self.conv2d_3b(self.maxpool_3a(x))))
        x = self.mixed_7a(self.repeat_2(self.mixed_6a(self.repeat_1(x))))
        x = self.block8(self.repeat_3(x))
        x = self.dropout(self.avgpool_1a(x).flatten(1))
        return self.last_bn(self.last_linear(x))


class FaceNetRecognizer(FaceRecognizer):
    """Inception-ResNet-v1 with facenet-pytorch's ``fixed_image_standardization`` on RGB."""

    def __init__(self, info: RecognizerInfo, net: InceptionResnetV1 | None = None) -> None:
        super().__init__(info)
        self.net = net if net is not None else InceptionResnetV1(info.embedding_dim)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Raw 512-d embedding of 160x160 RGB crops in [0, 1]."""
        return self.net((x * 255.0 - 127.5) / 128.0)


# ------------------------------------------------------------------------------------------------ weights, registry
_VARIANTS = FACENET_VARIANTS  # name -> (file, training set, classes of the dropped classifier)


def _register_weights(name: str) -> str:
    """The hub name of a FaceNet variant (registered eagerly in :mod:`nullswap.hub.registry`)."""
    return get_weight_spec(name).name


def _info(name: str) -> RecognizerInfo:
    filename, data, _ = _VARIANTS[name]
    return RecognizerInfo(
        name=name,
        embedding_dim=512,
        input_size=(160, 160),
        template="facenet-160",
        normalization="RGB, (255*x - 127.5) / 128 (facenet-pytorch fixed_image_standardization)",
        weights=(_register_weights(name),),
        offline=False,
        description=f"FaceNet Inception-ResNet-v1 (23.5M parameters) trained on {data}, 512-d; user-supplied",
        provenance=f"davidsandberg/facenet model {filename.split('-')[0]}-{filename.split('-')[1]} ({data}), "
        f"facenet-pytorch release v2.2.9 {filename}",
        paper="Schroff et al., FaceNet: A Unified Embedding for Face Recognition and Clustering, CVPR 2015; "
        "Szegedy et al., Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning, AAAI 2017",
    )


FACENET_VGGFACE2_INFO = _info("facenet-vggface2")
FACENET_CASIA_INFO = _info("facenet-casia")


def _build(info: RecognizerInfo, pretrained: bool, weights_dir: str | None, checkpoint: str | None
           ) -> FaceNetRecognizer:
    model = FaceNetRecognizer(info)
    if pretrained:
        path = resolve_weights(info.weights[0], weights_dir=weights_dir, checkpoint=checkpoint)
        sd = read_torch_checkpoint(path)
        load_state_dict_strict(model.net, sd, source=str(path), ignore_prefixes=("logits.",))
        log.debug("%s: loaded %s", info.name, path)
    return model


@register_recognizer(FACENET_VGGFACE2_INFO)
def facenet_vggface2(
    pretrained: bool = True, weights_dir: str | None = None, checkpoint: str | None = None
) -> FaceNetRecognizer:
    """Build ``"facenet-vggface2"`` from facenet-pytorch's ``20180402-114759-vggface2.pt`` (or ``checkpoint``).

    Raises:
        WeightsNotFoundError: no file given, found or downloadable.
        WeightsError: unreadable file, or keys/shapes that differ (:class:`StateDictError`).
    """
    return _build(FACENET_VGGFACE2_INFO, pretrained, weights_dir, checkpoint)


@register_recognizer(FACENET_CASIA_INFO)
def facenet_casia(
    pretrained: bool = True, weights_dir: str | None = None, checkpoint: str | None = None
) -> FaceNetRecognizer:
    """Build ``"facenet-casia"`` from facenet-pytorch's ``20180408-102900-casia-webface.pt`` (or ``checkpoint``).

    Raises:
        WeightsNotFoundError: no file given, found or downloadable.
        WeightsError: unreadable file, or keys/shapes that differ (:class:`StateDictError`).
    """
    return _build(FACENET_CASIA_INFO, pretrained, weights_dir, checkpoint)
