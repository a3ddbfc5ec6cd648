"""ArcFace IResNet-50 / IResNet-100 backbones of insightface's ``arcface_torch``: ``"arcface-r50"``, ``"arcface-r100"``.

Deng, Guo, Xue and Zafeiriou, "ArcFace: Additive Angular Margin Loss for Deep Face Recognition", CVPR 2019
(arXiv:1801.07698). The backbone is the "improved" pre-activation ResNet of Section 3 of that paper (Duta et al.'s
IResNet naming in insightface): a 3x3 stride-1 stem (BN, PReLU), four stages of ``IBasicBlock``
(BN - 3x3 conv - BN - PReLU - 3x3 conv (stride 2 in the first block) - BN, plus a 1x1 conv + BN shortcut where the
shape changes), then the "E" output layer: BN - dropout - FC(512*7*7 -> 512) - BN1d. Stage depths (3, 4, 14, 3) for
r50 and (3, 13, 30, 3) for r100.

Module names, parameter shapes and the forward pass follow insightface ``recognition/arcface_torch/backbones/
iresnet.py``, so a ``backbone.pth`` saved by arcface_torch (``torch.save(backbone.module.state_dict(), ...)``, e.g. the
model zoo's ``ms1mv3_arcface_r50_fp16/backbone.pth``) loads with strict keys. Those files are distributed through
OneDrive/Baidu links only, so a user supplies them: ``create_recognizer("arcface-r50", checkpoint=".../backbone.pth")``
or a weights folder holding ``ms1mv3_arcface_r50_fp16/backbone.pth`` (``arcface-r50/backbone.pth`` or a flat
``arcface-r50-backbone.pth`` also work).

Input: the insightface 112x112 alignment (``"arcface-112"``), RGB, ``(x - 0.5) / 0.5`` on the [0, 1] scale, i.e.
``(pixel - 127.5) / 127.5`` as in arcface_torch's ``inference.py`` and its data loaders.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from nullswap.hub import get_weight_spec
from nullswap.recognizers.base import FaceRecognizer, RecognizerInfo
from nullswap.recognizers.mobilefacenet import load_state_dict_strict, read_torch_checkpoint, resolve_weights
from nullswap.recognizers.registry import register_recognizer

log = logging.getLogger(__name__)

__all__ = ["IBasicBlock", "IResNet", "ArcFaceRecognizer", "IRESNET_LAYERS", "arcface_r50", "arcface_r100", "iresnet"]

#: Blocks per stage, from arcface_torch's ``iresnet50`` / ``iresnet100``.
IRESNET_LAYERS: dict[str, tuple[int, int, int, int]] = {
    "r18": (2, 2, 2, 2),
    "r34": (3, 4, 6, 3),
    "r50": (3, 4, 14, 3),
    "r100": (3, 13, 30, 3),
}


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class IBasicBlock(nn.Module):
    """Improved residual block: BN, conv3x3, BN, PReLU, conv3x3 (strided), BN, plus the (projected) shortcut."""

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = _conv3x3(cin, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual branch plus shortcut (no activation after the sum, as upstream)."""
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class IResNet(nn.Module):
    """arcface_torch's IResNet backbone for 112x112 crops.

    Args:
        layers: blocks per stage, e.g. ``IRESNET_LAYERS["r50"]``.
        num_features: embedding length (512).
        dropout: dropout before the FC layer (0 in the released models; inactive in eval anyway).
    """

    fc_scale = 7 * 7

    def __init__(self, layers: tuple[int, int, int, int], num_features: int = 512, dropout: float = 0.0) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        self.layer1 = self._make_layer(64, layers[0], 2)
        self.layer2 = self._make_layer(128, layers[1], 2)
        self.layer3 = self._make_layer(256, layers[2], 2)
        self.layer4 = self._make_layer(512, layers[3], 2)
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(512 * self.fc_scale, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes, eps=1e-5)
            )
        mods = [IBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        mods += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 112, 112)`` normalised input -> ``(B, num_features)``."""
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


def iresnet(depth: str) -> IResNet:
    """An untrained IResNet of ``depth`` in ``IRESNET_LAYERS`` (``"r18"``, ``"r34"``, ``"r50"``, ``"r100"``)."""
    try:
        return IResNet(IRESNET_LAYERS[depth])
    except KeyError:
        raise ValueError(f"unknown IResNet depth {depth!r}; known: {', '.join(IRESNET_LAYERS)}") from None


class ArcFaceRecognizer(FaceRecognizer):
    """IResNet with arcface_torch's input normalisation ``(x - 0.5) / 0.5`` on RGB in [0, 1]."""

    def __init__(self, info: RecognizerInfo, net: IResNet) -> None:
        super().__init__(info)
        self.net = net

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Raw 512-d embedding (the BN1d ``features`` output)."""
        return self.net((x - 0.5) / 0.5)


def _register_weights(depth: str) -> str:
    """The hub name of the IResNet backbone of ``depth`` (registered eagerly in :mod:`nullswap.hub.registry`)."""
    return get_weight_spec(f"arcface-{depth}").name


def _info(depth: str, nparams: str) -> RecognizerInfo:
    return RecognizerInfo(
        name=f"arcface-{depth}",
        embedding_dim=512,
        input_size=(112, 112),
        template="arcface-112",
        normalization="RGB, (x - 0.5) / 0.5",
        weights=(_register_weights(depth),),
        offline=False,
        description=f"ArcFace IResNet-{depth[1:]} ({nparams} parameters), 512-d; user-supplied backbone.pth",
        provenance=f"insightface recognition/arcface_torch, ms1mv3_arcface_{depth}_fp16/backbone.pth (MS1MV3)",
        paper="Deng et al., ArcFace: Additive Angular Margin Loss for Deep Face Recognition, CVPR 2019, "
        "arXiv:1801.07698",
    )


ARCFACE_R50_INFO = _info("r50", "43.6M")
ARCFACE_R100_INFO = _info("r100", "65.2M")


def _build(info: RecognizerInfo, depth: str, pretrained: bool, weights_dir: str | None,
           checkpoint: str | None) -> ArcFaceRecognizer:
    model = ArcFaceRecognizer(info, iresnet(depth))
    if pretrained:
        path = resolve_weights(info.weights[0], weights_dir=weights_dir, checkpoint=checkpoint)
        load_state_dict_strict(model.net, read_torch_checkpoint(path), source=str(path))
        log.debug("%s: loaded %s", info.name, path)
    return model


@register_recognizer(ARCFACE_R50_INFO)
def arcface_r50(
    pretrained: bool = True, weights_dir: str | None = None, checkpoint: str | None = None
) -> ArcFaceRecognizer:
    """Build ``"arcface-r50"``; ``checkpoint`` is an arcface_torch ``backbone.pth`` of an IResNet-50.

    Raises:
        WeightsNotFoundError: no file given or found.
        WeightsError: unreadable file, or keys/shapes that differ from IResNet-50 (:class:`StateDictError`).
    """
    return _build(ARCFACE_R50_INFO, "r50", pretrained, weights_dir, checkpoint)


@register_recognizer(ARCFACE_R100_INFO)
def arcface_r100(
    pretrained: bool = True, weights_dir: str | None = None, checkpoint: str | None = None
) -> ArcFaceRecognizer:
    """Build ``"arcface-r100"``; ``checkpoint`` is an arcface_torch ``backbone.pth`` of an IResNet-100.

    Raises:
        WeightsNotFoundError: no file given or found.
        WeightsError: unreadable file, or keys/shapes that differ from IResNet-100 (:class:`StateDictError`).
    """
    return _build(ARCFACE_R100_INFO, "r100", pretrained, weights_dir, checkpoint)
