"""The project's identity-injection face swapper (``"swapper-celeba"``), SimSwap's design at CPU scale.

SimSwap (Chen et al. 2020, simswap.txt, Sec. 3) swaps faces with an encoder -> ID-injection module -> decoder
generator: the target's features pass through residual blocks whose AdaIN statistics are regressed from the source's
recognizer embedding (ApplyStyle, Eq. 1-2), and it trains with an identity loss (cosine between the recognizer
embedding of the output and the injected embedding, Eq. 4), a reconstruction loss when source and target are the same
image (Eq. 5), an adversarial (hinge) loss and the weak feature matching loss on the discriminator's last layers
(Eq. 3).

:class:`IdentitySwapper` follows that design with small widths on ``protector-128`` crops. Choice: its identity
extractor is ``mobilefacenet-casia`` (offline, 128-d, fed through a :class:`RecognizerEnsemble` from the
protector-128 crop) rather than SimSwap's ArcFace IResNet-100, whose weights this project cannot ship.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nullswap.errors import InputError
from nullswap.manipulators.autoencoder import (
    config_from_dict,
    encoder_widths,
    freeze,
    load_strict,
    make_decoder,
    make_encoder,
)
from nullswap.manipulators.base import FaceSwapper, register_manipulator, unused_model_kwargs
from nullswap.manipulators.checkpoint import ASSETS_DIR, read_manipulator, save_manipulator
from nullswap.recognizers.base import FaceRecognizer
from nullswap.recognizers.ensemble import RecognizerEnsemble

log = logging.getLogger(__name__)

#: ``config.json`` format of a swapper checkpoint (its :class:`SwapGenerator`).
FORMAT = "swap-generator"


class InstanceNorm(nn.Module):
    """Parameter-free instance normalisation (SimSwap ``fs_networks.InstanceNorm``)."""

    def __init__(self, epsilon: float = 1e-8) -> None:
        super().__init__()
        self.epsilon = epsilon

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / sqrt(var + eps)`` over the spatial dimensions."""
        x = x - x.mean((2, 3), keepdim=True)
        return x * torch.rsqrt(x.pow(2).mean((2, 3), keepdim=True) + self.epsilon)


class ApplyStyle(nn.Module):
    """SimSwap's AdaIN modulation: ``x * (1 + gamma(z)) + beta(z)`` with ``[gamma, beta] = linear(z)``."""

    def __init__(self, latent_size: int, channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(latent_size, channels * 2)

    def forward(self, x: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """Modulate ``x (B,C,H,W)`` with ``latent (B,latent_size)``."""
        style = self.linear(latent).view(-1, 2, x.size(1), 1, 1)
        return x * (style[:, 0] + 1.0) + style[:, 1]


class AdaINResBlock(nn.Module):
    """SimSwap's ``ResnetBlock_Adain``: two (reflect-pad, conv, IN, ApplyStyle) stages, ReLU between, residual."""

    def __init__(self, dim: int, latent_size: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), InstanceNorm())
        self.style1 = ApplyStyle(latent_size, dim)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), InstanceNorm())
        self.style2 = ApplyStyle(latent_size, dim)

    def forward(self, x: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """Residual update of ``x`` styled by ``latent``."""
        y = self.act1(self.style1(self.conv1(x), latent))
        y = self.style2(self.conv2(y), latent)
        return x + y


@dataclass(frozen=True)
class SwapperConfig:
    """Architecture of :class:`SwapGenerator` / :class:`IdentitySwapper`.

    Attributes:
        image_size: crop side (template ``protector-<image_size>``).
        channels: stem width.
        n_down: stride-2 stages.
        max_channels: width cap.
        n_blocks: AdaIN residual blocks (SimSwap: 9).
        latent_dim: identity embedding size (mobilefacenet-casia: 128; SimSwap's ArcFace: 512).
        identity_recognizer: registry name of the identity extractor.
    """

    image_size: int = 128
    channels: int = 16
    n_down: int = 2
    max_channels: int = 64
    n_blocks: int = 4
    latent_dim: int = 128
    identity_recognizer: str = "mobilefacenet-casia"

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> SwapperConfig:
        """Build from a mapping, rejecting unknown keys.

        Raises:
            InputError: unknown keys or an unsupported image size.
        """
        return config_from_dict(cls, d, "swapper")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON)."""
        return asdict(self)


class SwapGenerator(nn.Module):
    """Encoder -> ``n_blocks`` AdaIN residual blocks styled by the source identity -> decoder (SimSwap Fig. 2).

    ``forward(target, latent)``: target crops in [0,1], latent ``(B, latent_dim)`` (L2-normalised embedding);
    returns crops in [0,1].
    """

    def __init__(self, config: SwapperConfig) -> None:
        super().__init__()
        c = config
        width = encoder_widths(c.channels, c.n_down, c.max_channels)[-1]
        self.latent_dim = c.latent_dim
        self.encoder = make_encoder(c.channels, c.n_down, c.max_channels)
        self.blocks = nn.ModuleList([AdaINResBlock(width, c.latent_dim) for _ in range(c.n_blocks)])
        self.decoder = make_decoder(c.channels, c.n_down, c.max_channels)

    def forward(self, target: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """Swapped crops in [0,1].

        Raises:
            InputError: a latent that is not ``(B, latent_dim)``.
        """
        if latent.ndim != 2 or latent.shape != (target.shape[0], self.latent_dim):
            raise InputError(
                f"swap latent: expected shape ({target.shape[0]}, {self.latent_dim}), got {tuple(latent.shape)}"
            )
        h = self.encoder(target * 2 - 1)
        for blk in self.blocks:
            h = blk(h, latent.to(h.dtype))
        return (self.decoder(h) + 1) / 2


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator (SimSwap uses pix2pixHD's); returns every layer's features, logits last.

    Choice: one scale, ``n_layers`` stride-2 conv + LeakyReLU stages (no normalisation), 1-channel 3x3 head.
    """

    def __init__(self, channels: int = 16, n_layers: int = 3, max_channels: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for i in range(n_layers):
            c_out = min(channels * 2**i, max_channels)
            layers.append(nn.Sequential(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)))
            c_in = c_out
        layers.append(nn.Conv2d(c_in, 1, 3, padding=1))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features of every stage for images in [0,1]; the last entry is the patch logits."""
        h = x * 2 - 1
        out = []
        for layer in self.layers:
            h = layer(h)
            out.append(h)
        return out


def _single(recognizer: FaceRecognizer | RecognizerEnsemble | str, template: str) -> RecognizerEnsemble:
    if isinstance(recognizer, RecognizerEnsemble):
        if len(recognizer) != 1:
            raise InputError(f"swapper identity network: expected one recognizer, got {len(recognizer)}")
        return recognizer
    return RecognizerEnsemble([recognizer], source_template=template)


class IdentitySwapper(FaceSwapper):
    """Identity-injection face swapper on ``protector-<size>`` crops (SimSwap's design, see module docstring).

    Args:
        config: :class:`SwapperConfig` (or its dict).
        recognizer: identity extractor: a recognizer module, a one-recognizer :class:`RecognizerEnsemble` fed from
            this template, or a registry name (default ``config.identity_recognizer``).
        generator: an existing :class:`SwapGenerator` to share (e.g. the one a recipe trains).
    """

    name = "swapper-celeba"

    def __init__(
        self,
        config: SwapperConfig | dict[str, Any] | None = None,
        recognizer: FaceRecognizer | RecognizerEnsemble | str | None = None,
        generator: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.config = config if isinstance(config, SwapperConfig) else SwapperConfig.from_dict(config)
        self.template = f"protector-{self.config.image_size}"
        self.id_net = _single(recognizer if recognizer is not None else self.config.identity_recognizer,
                              self.template)
        freeze(self.id_net)
        dim = int(self.id_net.recognizers[0].embedding_dim)
        if dim != self.config.latent_dim:
            raise InputError(f"swapper: expected a {self.config.latent_dim}-d identity recognizer, got {dim}-d")
        self.generator = generator if generator is not None else SwapGenerator(self.config)

    def train(self, mode: bool = True) -> IdentitySwapper:
        """Train/eval mode for the generator; the identity network stays in eval mode."""
        super().train(mode)
        self.id_net.eval()
        return self

    def identity(self, source: torch.Tensor) -> torch.Tensor:
        """L2-normalised identity embeddings ``(B, latent_dim)`` of source crops (differentiable in ``source``)."""
        self.check_input(source)
        return F.normalize(self.id_net(source)[0], dim=1)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """Target crops ``x`` with the identity ``condition`` (``(B, latent_dim)`` embedding) injected.

        Raises:
            InputError: bad crops or a missing/misshapen condition.
        """
        self.check_input(x)
        if condition is None:
            raise InputError(
                f"{self.name}: expected condition=(B,{self.config.latent_dim}) identity embedding, got None"
            )
        return self.generator(x, condition)


def save_swapper(folder: str | Path, generator: nn.Module, config: SwapperConfig, meta: dict[str, Any] | None = None
                 ) -> Path:
    """Write a swapper checkpoint: the :class:`SwapGenerator` (format ``"swap-generator"``); returns the folder."""
    return save_manipulator(folder, generator, FORMAT, config.to_dict(), meta)


def load_swapper(folder: str | Path, recognizer: FaceRecognizer | RecognizerEnsemble | str | None = None
                 ) -> IdentitySwapper:
    """Load a :func:`save_swapper` folder (strict keys) into a frozen, eval-mode :class:`IdentitySwapper`.

    Raises:
        WeightsNotFoundError: missing folder/files.
        WeightsError: mismatching keys or shapes.
    """
    state, cfg, _ = read_manipulator(folder, FORMAT, "swapper")
    config = SwapperConfig.from_dict(cfg)
    gen = SwapGenerator(config)
    load_strict(gen, state, str(folder))
    return freeze(IdentitySwapper(config, recognizer=recognizer, generator=gen))


@register_manipulator("swapper-celeba", "identity-injection face swapper (SimSwap design) trained on CelebA, 128 px")
def _swapper_celeba(checkpoint: str | Path | None = None, pretrained: bool = True,
                    recognizer: FaceRecognizer | RecognizerEnsemble | str | None = None, **config: Any
                    ) -> IdentitySwapper:
    """The shipped (or a given) trained swapper; ``pretrained=False`` builds an untrained one from ``config``."""
    if not pretrained:
        return IdentitySwapper(config or None, recognizer=recognizer)
    unused_model_kwargs("swapper-celeba", config)
    return load_swapper(checkpoint or ASSETS_DIR / "swapper-celeba", recognizer=recognizer)


__all__ = [
    "AdaINResBlock",
    "ApplyStyle",
    "IdentitySwapper",
    "InstanceNorm",
    "PatchDiscriminator",
    "SwapGenerator",
    "SwapperConfig",
    "load_swapper",
    "save_swapper",
]
