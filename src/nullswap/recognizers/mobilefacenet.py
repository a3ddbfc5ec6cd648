"""MobileFaceNet (Chen et al. 2018) trained on CASIA-WebFace: ``"mobilefacenet-casia"``.

Chen, Liu, Gao and Han, "MobileFaceNets: Efficient CNNs for Accurate Real-Time Face Verification on Mobile Devices",
CCBR 2018 (arXiv:1804.07573). The network follows Table 1 of the paper: a 3x3 stride-2 convolution, a 3x3 depthwise
convolution, 15 inverted-residual bottlenecks (MobileNetV2, Sandler et al. 2018) with PReLU, a 1x1 convolution to 512
channels, a *global depthwise convolution* (GDConv, a depthwise convolution whose kernel covers the whole 7x6 feature
map) and a linear 1x1 convolution to the 128-d embedding, each followed by batch normalisation.

Weights: ``068.ckpt`` of GitHub ``Xiaoccer/MobileFaceNet_Pytorch`` (``model/best/068.ckpt``), trained on CASIA-WebFace
with an ArcFace margin (s=32, m=0.5). ``torch.load(...)["net_state_dict"]`` loads into :class:`MobileFaceNet` with
strict keys: module names mirror that repository's ``core/model.py`` (``conv1``, ``dw_conv1``, ``blocks.<i>.conv.<j>``,
``conv2``, ``linear7``, ``linear1``).

Input contract (from the upstream evaluation code ``lfw_eval.py`` / ``dataloader/LFW_loader.py``): 112x96 RGB crops
(SphereFace's ``lfw-112X96`` alignment, here the ``"arcface-112x96"`` template), normalised as ``(x - 127.5) / 128``
on the 0..255 scale.

Embedding: upstream's LFW protocol concatenates the 128-d outputs of the image and of its horizontal flip (256-d) and
subtracts the mean feature of the other nine folds before the cosine. This recognizer returns the plain 128-d
embedding of the single image (no flip, no mean subtraction), L2-normalised by :class:`FaceRecognizer`; that keeps it
a function of one crop, which the protectors' losses need.

This module also holds the small checkpoint helpers (:func:`read_torch_checkpoint`, :func:`load_state_dict_strict`,
:func:`resolve_weights`) that the other PyTorch-checkpoint recognizers (ArcFace, FaceNet) use.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from nullswap.errors import WeightsError, WeightsNotFoundError
from nullswap.recognizers.base import FaceRecognizer, RecognizerInfo
from nullswap.recognizers.registry import register_recognizer

log = logging.getLogger(__name__)

__all__ = [
    "MOBILEFACENET_SETTING", "Bottleneck", "ConvBlock", "MobileFaceNet", "MobileFaceNetRecognizer", "StateDictError",
    "load_state_dict_strict", "mobilefacenet_casia", "read_torch_checkpoint", "resolve_weights",
]


# ------------------------------------------------------------------------------------------- checkpoint helpers
class StateDictError(WeightsError):
    """A state dict does not match the module it is loaded into.

    Attributes:
        source: where the state dict came from (a file name).
        missing: keys the module expects that the state dict lacks.
        unexpected: keys of the state dict the module does not have.
        mismatched: ``{key: (expected shape, actual shape)}`` for keys present in both with different shapes.
    """

    def __init__(
        self,
        source: str,
        missing: list[str],
        unexpected: list[str],
        mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]],
    ) -> None:
        self.source = source
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched

        def _few(keys: list[str]) -> str:
            shown = ", ".join(keys[:8])
            return shown + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")

        parts = []
        if missing:
            parts.append(f"missing keys (expected, absent): {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys (present, not expected): {_few(unexpected)}")
        if mismatched:
            shown = [f"{k}: expected {tuple(e)}, got {tuple(a)}" for k, (e, a) in list(mismatched.items())[:8]]
            parts.append("shape mismatches: " + "; ".join(shown))
        super().__init__(f"state dict from {source} does not match the architecture: " + " | ".join(parts))


def read_torch_checkpoint(path: str | os.PathLike[str], *, key: str | None = None) -> dict[str, torch.Tensor]:
    """Read a PyTorch checkpoint safely (``weights_only=True``) and return its state dict.

    Args:
        path: the ``.pt``/``.pth``/``.ckpt`` file.
        key: entry of a checkpoint dict holding the state dict (e.g. ``"net_state_dict"``); when ``None`` the file
            is the state dict itself, or a dict with a ``"state_dict"`` entry.

    Returns:
        The state dict, with a ``"module."`` prefix (``nn.DataParallel``) removed when every key carries it.

    Raises:
        WeightsNotFoundError: the file does not exist.
        WeightsError: the file cannot be unpickled safely, or holds no state dict.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsNotFoundError(f"checkpoint file {str(p)!r} does not exist")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, truncated zip, non-tensor objects refused by weights_only
        raise WeightsError(f"cannot read PyTorch checkpoint {str(p)!r} (torch.load weights_only=True): {e}") from e
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            found = sorted(obj)[:10] if isinstance(obj, Mapping) else type(obj).__name__
            raise WeightsError(f"checkpoint {str(p)!r}: expected a dict with entry {key!r}, found {found}")
        obj = obj[key]
    elif isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"checkpoint {str(p)!r}: expected a state dict of tensors, got {type(obj).__name__}")
    sd = dict(obj)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def load_state_dict_strict(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    source: str,
    ignore_prefixes: Iterable[str] = (),
) -> nn.Module:
    """Load ``state_dict`` into ``module`` with every key and shape checked, raising a typed error otherwise.

    ``num_batches_tracked`` buffers may be absent (checkpoints from PyTorch < 0.4.1 lack them); keys starting with one
    of ``ignore_prefixes`` (e.g. a classifier head the embedding does not use) are dropped before the check.

    Raises:
        StateDictError: naming the missing and unexpected keys and the mismatched shapes (expected vs actual).
    """
    ignore = tuple(ignore_prefixes)
    sd = {k: v for k, v in state_dict.items() if not (ignore and k.startswith(ignore))}
    expected = module.state_dict()
    missing = [k for k in expected if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in expected]
    mismatched = {
        k: (tuple(expected[k].shape), tuple(v.shape))
        for k, v in sd.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    }
    if missing or unexpected or mismatched:
        raise StateDictError(source, missing, unexpected, mismatched)
    for k in expected:
        if k not in sd:  # an absent num_batches_tracked: keep the module's own
            sd[k] = expected[k]
    module.load_state_dict(sd, strict=True)
    return module


def resolve_weights(spec_name: str, *, weights_dir: str | None, checkpoint: str | os.PathLike[str] | None) -> Path:
    """The weight file to load: ``checkpoint`` when given (must exist), else the hub's resolution of ``spec_name``.

    Raises:
        WeightsNotFoundError: the explicit checkpoint does not exist, or the hub finds no copy (its message lists
            every place tried).
    """
    if checkpoint is not None:
        p = Path(checkpoint).expanduser()
        if not p.is_file():
            raise WeightsNotFoundError(f"{spec_name}: checkpoint file {str(p)!r} does not exist")
        return p
    from nullswap.hub import fetch

    return Path(fetch(spec_name, weights_dir=weights_dir))


# ------------------------------------------------------------------------------------------------- architecture
#: Bottleneck stages of the paper's Table 1 after the depthwise conv: (expansion t, output channels c, repeats n,
#: stride s of the first repeat).
MOBILEFACENET_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (2, 64, 5, 2),
    (4, 128, 1, 2),
    (2, 128, 6, 1),
    (4, 128, 1, 2),
    (2, 128, 2, 1),
)


class ConvBlock(nn.Module):
    """Convolution + batch norm (+ PReLU unless ``linear``); ``depthwise`` makes it a per-channel convolution."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int | tuple[int, int],
        stride: int = 1,
        padding: int = 0,
        *,
        depthwise: bool = False,
        linear: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, groups=cin if depthwise else 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.prelu = None if linear else nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Conv, BN and the optional PReLU."""
        x = self.bn(self.conv(x))
        return x if self.prelu is None else self.prelu(x)


class Bottleneck(nn.Module):
    """MobileNetV2 inverted residual with PReLU: 1x1 expand, 3x3 depthwise, linear 1x1 project (+ identity)."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.residual = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hidden),
            nn.PReLU(hidden),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.PReLU(hidden),
            nn.Conv2d(hidden, cout, 1, 1, 0, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block, with the identity shortcut where shapes allow."""
        y = self.conv(x)
        return x + y if self.residual else y


class MobileFaceNet(nn.Module):
    """MobileFaceNet backbone (Chen et al. 2018, Table 1), 128-d output.

    Args:
        input_size: (height, width) of the crop; the GDConv kernel is the final feature map, ``input_size / 16``
            (7x6 for 112x96, 7x7 for the paper's 112x112).
        embedding_dim: output length.
        setting: bottleneck stages, see :data:`MOBILEFACENET_SETTING`.
    """

    def __init__(
        self,
        input_size: tuple[int, int] = (112, 96),
        embedding_dim: int = 128,
        setting: tuple[tuple[int, int, int, int], ...] = MOBILEFACENET_SETTING,
    ) -> None:
        super().__init__()
        if input_size[0] % 16 or input_size[1] % 16:
            raise ValueError(f"MobileFaceNet: input size must be a multiple of 16, got {input_size}")
        self.conv1 = ConvBlock(3, 64, 3, 2, 1)
        self.dw_conv1 = ConvBlock(64, 64, 3, 1, 1, depthwise=True)
        layers: list[nn.Module] = []
        cin = 64
        for t, c, n, s in setting:
            for i in range(n):
                layers.append(Bottleneck(cin, c, s if i == 0 else 1, t))
                cin = c
        self.blocks = nn.Sequential(*layers)
        self.conv2 = ConvBlock(cin, 512, 1)
        self.linear7 = ConvBlock(512, 512, (input_size[0] // 16, input_size[1] // 16), depthwise=True, linear=True)
        self.linear1 = ConvBlock(512, embedding_dim, 1, linear=True)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` normalised input -> ``(B, embedding_dim)``."""
        x = self.dw_conv1(self.conv1(x))
        x = self.conv2(self.blocks(x))
        x = self.linear1(self.linear7(x))
        return x.flatten(1)


# --------------------------------------------------------------------------------------------------- recognizer
class MobileFaceNetRecognizer(FaceRecognizer):
    """MobileFaceNet with its input normalisation ``(255 x - 127.5) / 128`` on RGB."""

    def __init__(self, info: RecognizerInfo, net: MobileFaceNet | None = None) -> None:
        super().__init__(info)
        self.net = net if net is not None else MobileFaceNet(info.input_size, info.embedding_dim)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Raw 128-d embedding of RGB crops in [0, 1] (single image, no flip)."""
        return self.net((x * 255.0 - 127.5) / 128.0)


MOBILEFACENET_CASIA_INFO = RecognizerInfo(
    name="mobilefacenet-casia",
    embedding_dim=128,
    input_size=(112, 96),
    template="arcface-112x96",
    normalization="RGB, (255*x - 127.5) / 128",
    weights=("mobilefacenet-casia",),
    offline=True,
    description="MobileFaceNet 128-d (0.99M parameters) trained on CASIA-WebFace with an ArcFace margin",
    provenance="GitHub Xiaoccer/MobileFaceNet_Pytorch model/best/068.ckpt (CASIA-WebFace, ArcFace s=32 m=0.5); "
    "embedding of the single image (upstream's LFW protocol concatenates the flipped image's embedding)",
    paper="Chen et al., MobileFaceNets: Efficient CNNs for Accurate Real-Time Face Verification on Mobile Devices, "
    "CCBR 2018, arXiv:1804.07573",
)


@register_recognizer(MOBILEFACENET_CASIA_INFO)
def mobilefacenet_casia(
    pretrained: bool = True, weights_dir: str | None = None, checkpoint: str | None = None
) -> MobileFaceNetRecognizer:
    """Build ``"mobilefacenet-casia"``; ``checkpoint`` overrides the hub file (same ``net_state_dict`` layout).

    Raises:
        WeightsError: the checkpoint is missing, unreadable or does not match (typed :class:`StateDictError`).
    """
    model = MobileFaceNetRecognizer(MOBILEFACENET_CASIA_INFO)
    if pretrained:
        path = resolve_weights("mobilefacenet-casia", weights_dir=weights_dir, checkpoint=checkpoint)
        sd = read_torch_checkpoint(path, key="net_state_dict")
        load_state_dict_strict(model.net, sd, source=str(path))
        log.debug("mobilefacenet-casia: loaded %s", path)
    return model
