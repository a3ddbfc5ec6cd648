"""SimSwap (Chen et al. 2020, simswap.txt), key-compatible with the official ``latest_net_G.pth`` (224 model).

:class:`SimSwapGenerator` reproduces the official ``models/fs_networks.Generator_Adain_Upsample`` (input_nc=3,
output_nc=3, latent_size=512, n_blocks=9, deep=False, BatchNorm): reflect-padded 7x7 stem, three stride-2 convs to
512 channels, nine ``ResnetBlock_Adain`` (the ID-injection module: conv, parameter-free InstanceNorm, ApplyStyle
AdaIN from the 512-d ArcFace identity, Sec. 3.2, Eq. 1-2), three bilinear-upsampling conv stages and a 7x7 head. Its
state dict keys match the official file: ``first_layer.1.weight``, ``first_layer.2.running_mean``, ``down1.0.weight``,
``BottleNeck.0.conv1.1.weight``, ``BottleNeck.0.style1.linear.weight``, ``up3.1.weight``, ``last_layer.1.weight``...

The official generator takes the target in [0,1] (``ToTensor``, no normalisation) and returns the swap directly
(clamped to [0,1] at test time); the identity is the L2-normalised ArcFace embedding of the source. Choice: the
identity extractor is this repository's ``arcface-r100`` (insightface ``arcface_torch`` IResNet-100 backbone, user
supplied with ``arcface_checkpoint=``), fed differentiably through a :class:`RecognizerEnsemble`; SimSwap's own
``arcface_checkpoint.tar`` is a pickled whole module that ``weights_only`` loading refuses. Choice: the wrapper takes
``protector-256`` crops and resizes them to 224 (bilinear) for the generator and back; SimSwap's own crop is the
ArcFace template scaled to 224, so framing differs slightly.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nullswap._common import freeze, load_strict
from nullswap.errors import InputError, WeightsError, WeightsNotFoundError
from nullswap.manipulators.base import FaceSwapper, register_manipulator, unused_model_kwargs
from nullswap.manipulators.swapper import ApplyStyle, InstanceNorm
from nullswap.recognizers.base import FaceRecognizer
from nullswap.recognizers.ensemble import RecognizerEnsemble
from nullswap.registry import check_keywords

log = logging.getLogger(__name__)

GENERATOR_CHECKPOINT = "latest_net_G.pth"


class ResnetBlockAdain(nn.Module):
    """Official ``ResnetBlock_Adain`` with reflect padding: ``x + style2(conv2(act(style1(conv1(x), z))), z)``."""

    def __init__(self, dim: int, latent_size: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, kernel_size=3, padding=0), InstanceNorm())
        self.style1 = ApplyStyle(latent_size, dim)
        self.act1 = nn.ReLU(True)
        self.conv2 = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, kernel_size=3, padding=0), InstanceNorm())
        self.style2 = ApplyStyle(latent_size, dim)

    def forward(self, x: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """Residual update of ``x`` styled by ``latent``."""
        y = self.act1(self.style1(self.conv1(x), latent))
        y = self.style2(self.conv2(y), latent)
        return x + y


def _up(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear"), nn.Conv2d(c_in, c_out, 3, stride=1, padding=1),
                         nn.BatchNorm2d(c_out), nn.ReLU(True))


def _down(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(True))


class SimSwapGenerator(nn.Module):
    """The official ``Generator_Adain_Upsample`` (SimSwap Fig. 3), same module names and order.

    Args:
        input_nc: input channels (3).
        output_nc: output channels (3).
        latent_size: identity embedding size (512).
        n_blocks: ID-injection blocks (9).
        deep: the 512-px variant's extra down/up stage (``down4`` / ``up4``).
        base: stem width (64 in the official model; smaller only for tests).
    """

    def __init__(self, input_nc: int = 3, output_nc: int = 3, latent_size: int = 512, n_blocks: int = 9,
                 deep: bool = False, base: int = 64) -> None:
        super().__init__()
        self.deep = deep
        self.latent_size = latent_size
        b = base
        self.first_layer = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(input_nc, b, kernel_size=7, padding=0),
                                         nn.BatchNorm2d(b), nn.ReLU(True))
        self.down1 = _down(b, 2 * b)
        self.down2 = _down(2 * b, 4 * b)
        self.down3 = _down(4 * b, 8 * b)
        if deep:
            self.down4 = _down(8 * b, 8 * b)
        self.BottleNeck = nn.Sequential(*[ResnetBlockAdain(8 * b, latent_size) for _ in range(n_blocks)])
        if deep:
            self.up4 = _up(8 * b, 8 * b)
        self.up3 = _up(8 * b, 4 * b)
        self.up2 = _up(4 * b, 2 * b)
        self.up1 = _up(2 * b, b)
        self.last_layer = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(b, output_nc, kernel_size=7, padding=0))

    def forward(self, x: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """Official forward: ``x`` target in [0,1] (side divisible by 8), ``latent`` ``(B, latent_size)``."""
        h = self.down3(self.down2(self.down1(self.first_layer(x))))
        if self.deep:
            h = self.down4(h)
        for blk in self.BottleNeck:
            h = blk(h, latent)
        if self.deep:
            h = self.up4(h)
        return self.last_layer(self.up1(self.up2(self.up3(h))))


def official_key_shapes(latent_size: int = 512, n_blocks: int = 9, base: int = 64) -> dict[str, tuple[int, ...]]:
    """Keys/shapes of the official 224 generator's state dict, written out from ``fs_networks.py`` (for tests)."""
    out: dict[str, tuple[int, ...]] = {}

    def bn(p: str, n: int) -> None:
        for k in ("weight", "bias", "running_mean", "running_var"):
            out[f"{p}.{k}"] = (n,)
        out[f"{p}.num_batches_tracked"] = ()

    def conv(p: str, o: int, i: int, k: int) -> None:
        out[f"{p}.weight"], out[f"{p}.bias"] = (o, i, k, k), (o,)

    b = base
    conv("first_layer.1", b, 3, 7)
    bn("first_layer.2", b)
    for name, i, o in (("down1", b, 2 * b), ("down2", 2 * b, 4 * b), ("down3", 4 * b, 8 * b)):
        conv(f"{name}.0", o, i, 3)
        bn(f"{name}.1", o)
    for j in range(n_blocks):
        for s in ("1", "2"):
            conv(f"BottleNeck.{j}.conv{s}.1", 8 * b, 8 * b, 3)
            out[f"BottleNeck.{j}.style{s}.linear.weight"] = (16 * b, latent_size)
            out[f"BottleNeck.{j}.style{s}.linear.bias"] = (16 * b,)
    for name, i, o in (("up3", 8 * b, 4 * b), ("up2", 4 * b, 2 * b), ("up1", 2 * b, b)):
        conv(f"{name}.1", o, i, 3)
        bn(f"{name}.2", o)
    conv("last_layer.1", 3, b, 7)
    return out


def read_simswap_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the official generator state dict (``latest_net_G.pth``) with ``weights_only=True``.

    Raises:
        WeightsNotFoundError: no file at ``path``.
        WeightsError: not a readable state dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"simswap: expected the official generator checkpoint, got {str(path)!r} "
                                   "(not found)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a weights problem
        raise WeightsError(f"simswap: cannot read {str(path)!r} as a state dict: {e}") from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"simswap: expected a state dict of tensors in {str(path)!r}, got {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items()}


class SimSwap(FaceSwapper):
    """SimSwap face swapper on ``protector-256`` crops (see the module docstring for the resizing Choice).

    Args:
        generator: a :class:`SimSwapGenerator` (official weights loaded, or random).
        recognizer: the identity extractor (a ``latent_size``-d recognizer module, or a one-recognizer ensemble
            fed from ``protector-256`` crops).
        work_size: the generator's input side (224 for the official model).
    """

    name = "simswap"
    template = "protector-256"

    def __init__(self, generator: SimSwapGenerator, recognizer: FaceRecognizer | RecognizerEnsemble,
                 work_size: int = 224) -> None:
        super().__init__()
        self.generator = generator
        self.id_net = (recognizer if isinstance(recognizer, RecognizerEnsemble)
                       else RecognizerEnsemble([recognizer], source_template=self.template))
        freeze(self.id_net)
        dim = int(self.id_net.recognizers[0].embedding_dim)
        if len(self.id_net) != 1 or dim != generator.latent_size:
            raise InputError(f"simswap: expected one {generator.latent_size}-d identity recognizer, got "
                             f"{len(self.id_net)} of {dim}-d")
        self.work_size = work_size

    def train(self, mode: bool = True) -> SimSwap:
        """Train/eval for the generator; the identity network stays in eval mode."""
        super().train(mode)
        self.id_net.eval()
        return self

    def identity(self, source: torch.Tensor) -> torch.Tensor:
        """L2-normalised ArcFace embeddings ``(B, 512)`` of source crops (differentiable)."""
        self.check_input(source)
        return F.normalize(self.id_net(source)[0], dim=1)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """Target crops with the identity ``condition`` injected, in [0,1], same size as ``x``.

        Raises:
            InputError: bad crops or a condition that is not ``(B, latent_size)``.
        """
        self.check_input(x)
        d = self.generator.latent_size
        if condition is None or tuple(condition.shape) != (x.shape[0], d):
            got = None if condition is None else tuple(condition.shape)
            raise InputError(f"{self.name}: expected condition of shape ({x.shape[0]}, {d}), got {got}")
        h, w = x.shape[-2:]
        t = F.interpolate(x, size=(self.work_size, self.work_size), mode="bilinear", align_corners=False,
                          antialias=True)
        y = self.generator(t, condition.to(x.dtype)).clamp(0, 1)
        return F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)


def load_simswap(checkpoint: str | Path, recognizer: FaceRecognizer | RecognizerEnsemble | None = None,
                 arcface_checkpoint: str | None = None, weights_dir: str | None = None) -> SimSwap:
    """A frozen, eval-mode :class:`SimSwap` with the official generator loaded strictly.

    Args:
        checkpoint: the official ``latest_net_G.pth`` (224 model).
        recognizer: identity extractor to use; default ``arcface-r100`` built from ``arcface_checkpoint``.
        arcface_checkpoint: an arcface_torch IResNet-100 ``backbone.pth``.
        weights_dir: folder searched for weight files.

    Raises:
        WeightsNotFoundError: a missing file.
        WeightsError: unreadable files or mismatching keys/shapes.
    """
    gen = SimSwapGenerator()
    load_strict(gen, read_simswap_checkpoint(checkpoint), str(checkpoint))
    if recognizer is None:
        from nullswap.recognizers.registry import create_recognizer

        recognizer = create_recognizer("arcface-r100", weights_dir=weights_dir, checkpoint=arcface_checkpoint)
    return freeze(SimSwap(gen, recognizer))


@register_manipulator("simswap", "SimSwap 224 face swapper (official latest_net_G.pth + ArcFace r100, user-supplied)")
def _simswap(checkpoint: str | Path | None = None, arcface_checkpoint: str | None = None, pretrained: bool = True,
             recognizer: FaceRecognizer | RecognizerEnsemble | None = None, weights_dir: str | None = None,
             **gen_kwargs: Any) -> SimSwap:
    """SimSwap with user-supplied official weights; ``pretrained=False`` builds a random one (needs ``recognizer``).

    Raises:
        WeightsNotFoundError: no generator checkpoint given or found.
        InputError: ``pretrained=False`` without a recognizer.
    """
    if not pretrained:
        if recognizer is None:
            raise InputError("simswap(pretrained=False): expected a recognizer module, got None")
        check_keywords("manipulator", "simswap", SimSwapGenerator, gen_kwargs)
        return SimSwap(SimSwapGenerator(**gen_kwargs), recognizer)
    unused_model_kwargs("simswap", gen_kwargs)
    if checkpoint is None and weights_dir is not None and (Path(weights_dir) / GENERATOR_CHECKPOINT).is_file():
        checkpoint = Path(weights_dir) / GENERATOR_CHECKPOINT
    if checkpoint is None:
        raise WeightsNotFoundError(
            "simswap: expected the official SimSwap generator checkpoint (checkpoints/people/latest_net_G.pth from "
            "github.com/neuralchen/SimSwap) and an ArcFace IResNet-100 backbone, got none; they are not "
            "redistributed here: pass create_manipulator('simswap', checkpoint=..., arcface_checkpoint=...)"
        )
    return load_simswap(checkpoint, recognizer, arcface_checkpoint, weights_dir)


__all__ = [
    "ResnetBlockAdain",
    "SimSwap",
    "SimSwapGenerator",
    "load_simswap",
    "official_key_shapes",
    "read_simswap_checkpoint",
]
