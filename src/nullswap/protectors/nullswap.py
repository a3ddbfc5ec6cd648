"""The NullSwap identity-cloaking network (nullswap.txt, Sec. 3.2, Figure 2) and its :class:`Protector` wrapper.

Architecture (``H`` = input size, ``/4`` = ``H/4``):

* **ID Extraction**: ConvBlock (3x3, stride 2) + 2x2 max-pool (``/4``) + ``L`` SEResBlocks (width ``id_channels``).
* **Perturbation Block**: ConvBlock + ``M`` SEResBlocks (width ``perturb_channels``), plus the adaptive random noise of
  Eq. 1, ``beta * (alpha * N(0, 1) + eta)``, added to the deterministic perturbation.
* **Feature Block**: 3 ConvBlocks (strides 1, 2, 2 -> ``/4``) + ``N`` SEResBlocks (width ``feature_channels``).
* **Cloaking Block**: ``concat(gamma * perturbation, features)`` -> SEResBlock -> DeConvBlock (``/2``) -> ConvBlock
  -> DeConvBlock (``/1``); then ``concat(input image)`` -> 2 ConvBlocks -> 3x3 conv to a 3-channel residual ``r``.
* **Output mapping** (Choice, the paper does not give one): ``I' = sigmoid(logit(I) + s * r)``, computed so that it is
  bit-exactly the identity at ``r = 0`` (see :func:`_logit_residual`). The output is always in ``[0, 1]``, the network
  starts as the identity (PSNR stays high from the first step), and ``s`` (``perturbation_scale``) is a meaningful
  strength knob: ``s = 0`` returns the input, larger ``s`` pushes further along the learned perturbation direction.

Widths are not given by the paper. Choice: ``id_channels=128``, ``perturb_channels=64``, ``feature_channels=64``,
``cloak_channels=64`` (the last DeConvBlock halves it to 32 for the full-resolution stage), SE reduction 16 (Hu et al.),
bottleneck expansion 4 (He et al.); all exposed in :class:`NullSwapConfig`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from nullswap.checks import check_image_batch
from nullswap.errors import InputError, WeightsError, WeightsNotFoundError
from nullswap.protectors.base import STRENGTH_SCALES, Protector, register_protector, strength_scale

log = logging.getLogger(__name__)

Strength = Literal["low", "mid", "high"]

# ``strength`` -> ``perturbation_scale``: :data:`nullswap.protectors.base.STRENGTH_SCALES` (re-exported here).

MODEL_FILENAME = "model.safetensors"
CONFIG_FILENAME = "config.json"
FORMAT = "nullswap-generator"
FORMAT_VERSION = 1
#: Folder of the packaged default weights (``model.safetensors`` + ``config.json``), if shipped.
DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "assets" / "nullswap-default"

_LOGIT_EPS = 1e-3


# ----------------------------------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------------------------------


class ConvBlock(nn.Sequential):
    """ConvBlock of Sec. 3.2: a convolution, batch normalisation and ReLU.

    Args:
        in_ch: input channels.
        out_ch: output channels.
        kernel_size: odd kernel size ("same" padding).
        stride: convolution stride.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation channel gate (Hu et al. 2018): ``x * sigmoid(W2 relu(W1 avgpool(x)))``."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Channel-gated ``x``."""
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class SEResBlock(nn.Module):
    """SEResBlock of Sec. 3.2: a ResNet bottleneck block (He et al. 2016) with squeeze-and-excitation (Hu et al.).

    ``relu(SE(bn(conv1x1(relu(bn(conv3x3(relu(bn(conv1x1(x))))))))) + shortcut(x))``; the shortcut is the identity,
    or a 1x1 conv + BN projection when channels or stride change (SE-ResNet layout).

    Args:
        in_ch: input channels.
        out_ch: output channels.
        stride: stride of the 3x3 convolution.
        expansion: bottleneck expansion (inner width ``out_ch // expansion``, at least 4).
        reduction: SE reduction ratio.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, expansion: int = 4, reduction: int = 16) -> None:
        super().__init__()
        mid = max(out_ch // expansion, 4)
        self.conv1 = nn.Conv2d(in_ch, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.se = SqueezeExcitation(out_ch, reduction)
        self.shortcut: nn.Module = nn.Identity()
        if in_ch != out_ch or stride != 1:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Bottleneck + SE + shortcut, then ReLU."""
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.se(self.bn3(self.conv3(y)))
        return F.relu(y + self.shortcut(x))


class DeConvBlock(nn.Module):
    """DeConvBlock of Sec. 3.2: upsampling, batch normalisation and ReLU.

    Choice: the paper lists only "upsampling, BN, ReLU"; a x2 interpolation (bilinear by default, no checkerboard
    artefacts unlike transposed convolutions) followed by a 3x3 convolution that also sets the channel count.

    Args:
        in_ch: input channels.
        out_ch: output channels.
        mode: ``"bilinear"`` or ``"nearest"``.
    """

    def __init__(self, in_ch: int, out_ch: int, mode: str = "bilinear") -> None:
        super().__init__()
        if mode not in ("bilinear", "nearest"):
            raise InputError(f"upsample mode: expected 'bilinear' or 'nearest', got {mode!r}")
        self.mode = mode
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x2 upsampling, conv, BN, ReLU."""
        kw: dict[str, Any] = {"align_corners": False} if self.mode == "bilinear" else {}
        x = F.interpolate(x, scale_factor=2.0, mode=self.mode, **kw)
        return F.relu(self.bn(self.conv(x)))


# ----------------------------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class NullSwapConfig:
    """Hyper-parameters of :class:`NullSwapGenerator` / :class:`NullSwapDiscriminator`.

    ``L``, ``M``, ``N`` and ``image_size`` are the paper's (Sec. 4.1); the widths and initial values are Choices.

    Attributes:
        L: SEResBlocks in the ID Extraction module.
        M: SEResBlocks in the Perturbation Block.
        N: SEResBlocks in the Feature Block, and ConvBlocks of the discriminator.
        image_size: training/inference crop size (a multiple of 8, at least 64).
        id_channels: width of the ID Extraction module.
        perturb_channels: width of the Perturbation Block (= channels of the perturbation and the noise).
        feature_channels: width of the Feature Block.
        cloak_channels: width of the Cloaking Block (halved after its second DeConvBlock).
        disc_channels: width of the first discriminator ConvBlock (doubled per block, capped at 8x).
        se_reduction: SE reduction ratio.
        expansion: bottleneck expansion.
        upsample: DeConvBlock interpolation, ``"bilinear"`` or ``"nearest"``.
        noise_size: side of the learnable noise map ``eta`` (Eq. 1); ``0`` means ``image_size // 4``. It is
            bilinearly resized to the perturbation's size when they differ.
        alpha_init: initial ``alpha`` of Eq. 1.
        beta_init: initial ``beta`` of Eq. 1.
        gamma_init: initial ``gamma`` (the Cloaking Block's perturbation weight).
        residual_init_std: std of the normal init of the residual head's weights; 0 keeps PyTorch's default init.
        max_delta: bound on each pixel's change, in 1/255 units, at ``perturbation_scale`` 1 (scaled with it); the
            change ``d`` becomes ``c * tanh(d / c)``. 0 = no bound (the paper has none). Choice, from whole-photo
            viewing: a PSNR floor bounds the *mean* change but lets the cloak concentrate into strong streaks on
            eyes, nose and lips, which an upsampled residual makes visible on large faces; a smooth per-pixel cap
            keeps the budget spread out. Differentiable, so training sees the same bound.
    """

    L: int = 4
    M: int = 3
    N: int = 5
    image_size: int = 256
    id_channels: int = 128
    perturb_channels: int = 64
    feature_channels: int = 64
    cloak_channels: int = 64
    disc_channels: int = 32
    se_reduction: int = 16
    expansion: int = 4
    upsample: str = "bilinear"
    noise_size: int = 0
    alpha_init: float = 1.0
    beta_init: float = 0.1
    gamma_init: float = 1.0
    residual_init_std: float = 0.01
    max_delta: float = 0.0

    def __post_init__(self) -> None:
        for name in ("L", "M", "N"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise InputError(f"{name}: expected an int >= 0, got {v!r}")
        for name in ("id_channels", "perturb_channels", "feature_channels", "cloak_channels", "disc_channels",
                     "se_reduction", "expansion"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"{name}: expected an int >= 1, got {v!r}")
        if self.cloak_channels < 2:
            raise InputError(f"cloak_channels: expected an int >= 2, got {self.cloak_channels!r}")
        _check_size(self.image_size, "image_size")
        if self.upsample not in ("bilinear", "nearest"):
            raise InputError(f"upsample: expected 'bilinear' or 'nearest', got {self.upsample!r}")
        if isinstance(self.noise_size, bool) or not isinstance(self.noise_size, int) or self.noise_size < 0:
            raise InputError(f"noise_size: expected an int >= 0, got {self.noise_size!r}")
        if isinstance(self.max_delta, bool) or not isinstance(self.max_delta, int | float) or self.max_delta < 0:
            raise InputError(f"max_delta: expected a number >= 0 (1/255 units), got {self.max_delta!r}")

    @property
    def eta_size(self) -> int:
        """Side of the learnable noise map ``eta``."""
        return self.noise_size or self.image_size // 4

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> NullSwapConfig:
        """Build from a dict (missing keys take defaults).

        Raises:
            InputError: unknown keys or invalid values.
        """
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"nullswap model config: expected keys among {sorted(known)}, got unknown {unknown}")
        return cls(**d)


def _check_size(size: object, name: str) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 64 or size % 8:
        raise InputError(f"{name}: expected a multiple of 8 that is at least 64, got {size!r}")


# ----------------------------------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------------------------------


def _logit_residual(x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Output mapping (Choice): ``clamp(x + sigmoid(z + r) - sigmoid(z), 0, 1)``, ``z = logit(clamp(x, eps, 1-eps))``.

    Equals ``sigmoid(logit(x) + r)`` up to ``eps = 1e-3``, is bit-exactly ``x`` at ``r = 0`` and always in ``[0, 1]``.
    The residual moves a pixel along the logistic curve, so saturated pixels change little.
    """
    z = torch.logit(x.clamp(_LOGIT_EPS, 1 - _LOGIT_EPS))
    return (x + (torch.sigmoid(z + r) - torch.sigmoid(z))).clamp(0, 1)


class NullSwapGenerator(nn.Module):
    """The NullSwap network of Figure 2 (Sec. 3.2): ``I_s -> I'_s``.

    Args:
        config: hyper-parameters (default: the paper's block counts, widths as documented in the module).

    Attributes:
        alpha, beta: learnable scalars of Eq. 1.
        eta: learnable noise map of Eq. 1, ``(1, perturb_channels, eta_size, eta_size)``.
        gamma: learnable scalar weighting the perturbation in the Cloaking Block.
    """

    def __init__(self, config: NullSwapConfig | None = None) -> None:
        super().__init__()
        c = config or NullSwapConfig()
        self.config = c
        se = {"expansion": c.expansion, "reduction": c.se_reduction}
        # ID Extraction: ConvBlock + max-pool + L SEResBlocks (H/4).
        self.id_extraction = nn.Sequential(
            ConvBlock(3, c.id_channels, 3, stride=2),
            nn.MaxPool2d(2),
            *[SEResBlock(c.id_channels, c.id_channels, **se) for _ in range(c.L)],
        )
        # Perturbation Block: ConvBlock + M SEResBlocks (H/4).
        self.perturbation = nn.Sequential(
            ConvBlock(c.id_channels, c.perturb_channels),
            *[SEResBlock(c.perturb_channels, c.perturb_channels, **se) for _ in range(c.M)],
        )
        # Eq. 1 parameters.
        self.alpha = nn.Parameter(torch.tensor(float(c.alpha_init)))
        self.beta = nn.Parameter(torch.tensor(float(c.beta_init)))
        # Choice: eta starts as a standard-normal map (a "learnable noise"), drawn from torch's global RNG.
        self.eta = nn.Parameter(torch.randn(1, c.perturb_channels, c.eta_size, c.eta_size))
        # Feature Block: 3 ConvBlocks (Choice: strides 1, 2, 2 so it matches the perturbation's H/4) + N SEResBlocks.
        fc = c.feature_channels
        self.features = nn.Sequential(
            ConvBlock(3, max(fc // 2, 1), 3, stride=1),
            ConvBlock(max(fc // 2, 1), fc, 3, stride=2),
            ConvBlock(fc, fc, 3, stride=2),
            *[SEResBlock(fc, fc, **se) for _ in range(c.N)],
        )
        # Cloaking Block: gamma * perturbation, concat features, SEResBlock, DeConv, ConvBlock, DeConv.
        self.gamma = nn.Parameter(torch.tensor(float(c.gamma_init)))
        cc, half = c.cloak_channels, c.cloak_channels // 2
        self.cloak = nn.Sequential(
            SEResBlock(c.perturb_channels + fc, cc, **se),
            DeConvBlock(cc, cc, c.upsample),
            ConvBlock(cc, cc),
            DeConvBlock(cc, half, c.upsample),
        )
        # Image-level reconstruction: concat input image, 3 ConvBlocks (Choice: the last is a plain conv -> residual).
        self.reconstruct = nn.Sequential(ConvBlock(half + 3, half), ConvBlock(half, half))
        self.to_residual = nn.Conv2d(half, 3, 3, padding=1)
        # Choice: residual-head init std ``residual_init_std`` (0 -> PyTorch default). Starting exactly at the identity
        # would start at the maximum of the Eq. 12 cosine, where its gradient vanishes; a small non-zero start lets
        # the identity loss act from the first step while the output stays close to the input.
        if c.residual_init_std > 0:
            nn.init.normal_(self.to_residual.weight, std=c.residual_init_std)
        nn.init.zeros_(self.to_residual.bias)

    def random_noise(
        self,
        like: torch.Tensor,
        generator: torch.Generator | None = None,
        noise_scale: float = 1.0,
    ) -> torch.Tensor:
        """Adaptive random noise of Eq. 1: ``beta * (alpha * noise_scale * N(0, 1) + eta)``, shaped like ``like``.

        The standard-normal sample is drawn with ``generator`` (on its own device, then moved), so a seeded generator
        gives the same noise on any device; ``eta`` is resized bilinearly to ``like``'s spatial size when needed.
        """
        shape = tuple(like.shape)
        if generator is not None:
            z = torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32)
            z = z.to(like.device, like.dtype)
        else:
            z = torch.randn(shape, device=like.device, dtype=like.dtype)
        eta = self.eta
        if tuple(eta.shape[-2:]) != shape[-2:]:
            eta = F.interpolate(eta, size=shape[-2:], mode="bilinear", align_corners=False)
        return self.beta * (self.alpha * (noise_scale * z) + eta.to(like.dtype))

    def forward(
        self,
        x: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        noise_scale: float = 1.0,
        perturbation_scale: float = 1.0,
    ) -> torch.Tensor:
        """Identity-cloaked images ``I'_s`` (Sec. 3.2).

        Args:
            x: RGB ``(B,3,H,W)`` in [0,1], ``H`` and ``W`` multiples of 8 and at least 64.
            generator: random source of Eq. 1's ``N(0,1)`` (seeded -> repeatable); ``None`` uses the global RNG.
            noise_scale: factor on the ``N(0,1)`` term of Eq. 1 (0 gives a deterministic cloak).
            perturbation_scale: factor on the output residual (see :func:`_logit_residual`); 0 returns ``x``.

        Returns:
            ``(B,3,H,W)`` in [0,1].

        Raises:
            InputError: bad batch or spatial size.
        """
        check_image_batch(x, "nullswap generator input")
        _check_size(int(x.shape[-2]), "input height")
        _check_size(int(x.shape[-1]), "input width")
        pert = self.perturbation(self.id_extraction(x))
        pert = pert + self.random_noise(pert, generator, noise_scale)
        feat = self.features(x)
        h = self.cloak(torch.cat([self.gamma * pert, feat], dim=1))
        h = self.reconstruct(torch.cat([h, x.to(h.dtype)], dim=1))
        r = self.to_residual(h)
        y = _logit_residual(x, perturbation_scale * r.to(x.dtype))
        cap = self.config.max_delta / 255.0 * float(perturbation_scale)
        if cap > 0:
            y = (x + cap * torch.tanh((y - x) / cap)).clamp(0, 1)
        return y


class NullSwapDiscriminator(nn.Module):
    """The discriminator of Sec. 3.4: ``N`` ConvBlocks (stride 2) and a head giving one logit per image.

    Choice: widths ``disc_channels * 2**i`` capped at 8x; head = global average pool + linear layer.
    """

    def __init__(self, config: NullSwapConfig | None = None) -> None:
        super().__init__()
        c = config or NullSwapConfig()
        blocks: list[nn.Module] = []
        ch_in = 3
        ch = c.disc_channels
        for i in range(max(c.N, 1)):
            ch = c.disc_channels * min(2**i, 8)
            blocks.append(ConvBlock(ch_in, ch, 3, stride=2))
            ch_in = ch
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B,)`` of ``D(x)`` (real = clean image)."""
        h = F.adaptive_avg_pool2d(self.blocks(x), 1).flatten(1)
        return self.head(h).squeeze(1)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


def unwrap_module(m: nn.Module) -> nn.Module:
    """The plain module inside DDP / Fabric wrappers (follows ``.module`` while the module is not a NullSwap net)."""
    while not isinstance(m, NullSwapGenerator | NullSwapDiscriminator) and isinstance(getattr(m, "module", None),
                                                                                       nn.Module):
        m = m.module
    return m


# ----------------------------------------------------------------------------------------------------------------------
# Checkpoint IO
# ----------------------------------------------------------------------------------------------------------------------


def _resolve(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix == ".safetensors":
        return p, p.with_name(CONFIG_FILENAME)
    if p.name == CONFIG_FILENAME:
        return p.with_name(MODEL_FILENAME), p
    return p / MODEL_FILENAME, p / CONFIG_FILENAME


def save_nullswap(
    path: str | Path,
    generator: nn.Module,
    config: NullSwapConfig,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a generator checkpoint: ``model.safetensors`` and ``config.json``.

    Args:
        path: a folder (created) or a ``*.safetensors`` file path (``config.json`` goes beside it).
        generator: the generator (DDP/Fabric wrappers are unwrapped).
        config: its config.
        extra: JSON-serialisable metadata (training step, recognizers, ...); non-JSON values are stored as strings.

    Returns:
        The path of the weights file.
    """
    from safetensors.torch import save_file

    model_path, config_path = _resolve(path)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    gen = unwrap_module(generator)
    tensors = {k: v.detach().cpu().contiguous() for k, v in gen.state_dict().items()}
    save_file(tensors, str(model_path), metadata={"format": FORMAT})
    doc = {"format": FORMAT, "version": FORMAT_VERSION, "config": config.to_dict(), "meta": dict(extra or {})}
    config_path.write_text(json.dumps(doc, indent=2, default=str))
    log.info("saved NullSwap generator (%d parameters) to %s", count_parameters(gen), model_path)
    return model_path


def load_nullswap(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[NullSwapGenerator, NullSwapConfig, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_nullswap` (strict keys and shapes), in eval mode.

    Args:
        path: the folder, its ``model.safetensors`` or its ``config.json``.
        map_location: device of the returned generator.

    Returns:
        ``(generator, config, meta)``.

    Raises:
        WeightsNotFoundError: a file is missing.
        WeightsError: unreadable files, wrong format, or weights that do not match the config.
    """
    from safetensors.torch import load_file

    model_path, config_path = _resolve(path)
    for f in (model_path, config_path):
        if not f.is_file():
            raise WeightsNotFoundError(f"NullSwap checkpoint {str(path)!r}: expected {f.name} at {str(f)!r}, not found")
    try:
        doc = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise WeightsError(f"NullSwap checkpoint {str(config_path)!r}: expected JSON, got unreadable file: {e}") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or "config" not in doc:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise WeightsError(f"NullSwap checkpoint {str(config_path)!r}: expected format {FORMAT!r}, got {got!r}")
    try:
        config = NullSwapConfig.from_dict(doc["config"])
    except InputError as e:
        raise WeightsError(f"NullSwap checkpoint {str(config_path)!r}: invalid config: {e}") from e
    try:
        tensors = load_file(str(model_path))
    except Exception as e:  # safetensors raises its own error types
        raise WeightsError(f"NullSwap checkpoint {str(model_path)!r}: expected safetensors, cannot read: {e}") from e
    gen = NullSwapGenerator(config)
    expected = gen.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise WeightsError(
            f"NullSwap checkpoint {str(model_path)!r}: expected the keys of the config's generator, got "
            f"{len(missing)} missing (e.g. {missing[:3]}) and {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    bad = [k for k, v in tensors.items() if tuple(v.shape) != tuple(expected[k].shape)]
    if bad:
        k = bad[0]
        raise WeightsError(
            f"NullSwap checkpoint {str(model_path)!r}: expected {k} of shape {tuple(expected[k].shape)}, "
            f"got {tuple(tensors[k].shape)} ({len(bad)} mismatched tensors)"
        )
    gen.load_state_dict(tensors, strict=True)
    gen.to(map_location).eval()
    return gen, config, dict(doc.get("meta") or {})


# ----------------------------------------------------------------------------------------------------------------------
# Protector
# ----------------------------------------------------------------------------------------------------------------------


class NullSwapProtector(Protector):
    """NullSwap as a :class:`Protector`: runs the generator on aligned crops.

    Args:
        generator: a :class:`NullSwapGenerator` (or a wrapper of one; its train/eval mode is left as it is).
        config: the generator's config (sets the crop size).
        strength: ``"low"``, ``"mid"`` or ``"high"`` (or a number): the factor on the generator's output residual,
            see :data:`STRENGTH_SCALES`.
        noise_scale: factor on Eq. 1's random term at inference.
        psnr_floor: quality guard in dB (``None``: off). Each crop's change is scaled down, if needed, so its PSNR
            against the input is at least this; ``strength="high"`` lowers the floor by 4 dB. The factory takes it
            from the checkpoint's training loss (``psnr_floor``) by default, so inference keeps the promise
            training made even where batch-norm running statistics make eval-mode outputs differ from training's.
        refine: ``K`` identity-targeted signed-gradient steps after the one pass ("one pass plus a few steps"):
            starting from the generator's output, ``y <- y - a * sign(grad mean_k cos(E_k(y), E_k(x)))`` on
            ``refine_recognizers``, each step projected back into the same budget: ``|y - x| <= cap`` per pixel
            (the model's ``max_delta`` at this strength, else 8/255), the PSNR floor, and [0, 1]. Step size
            ``a = min(2.5 cap / K, cap / 2)`` (Madry-lab convention, capped). 0 = the generator alone. Not in the
            paper; Choice (issue 12): a few attack steps on top of a learned cloak cost a fraction of PGD-50.
        refine_recognizers: the ensemble the refinement attacks (names or a built
            :class:`~nullswap.recognizers.ensemble.RecognizerEnsemble`); the factory passes the checkpoint's training
            recognizers.

    The crop size is ``config.image_size`` (template ``protector-128`` for 128, else ``protector-256``).
    """

    name = "nullswap"

    def __init__(
        self,
        generator: nn.Module,
        config: NullSwapConfig,
        strength: str | float = "mid",
        noise_scale: float = 1.0,
        psnr_floor: float | None = None,
        refine: int = 0,
        refine_recognizers: Any = None,
    ) -> None:
        super().__init__()
        if isinstance(refine, bool) or not isinstance(refine, int) or refine < 0:
            raise InputError(f"refine: expected an int >= 0 (attack steps), got {refine!r}")
        if refine and not refine_recognizers:
            raise InputError("refine: expected refine_recognizers (the ensemble to attack) with refine > 0, got none")
        self.refine = refine
        #: the last :meth:`protect` call's guard: crops seen, crops whose change was scaled down, smallest factor
        self.guard_stats: dict[str, float] = {"crops": 0, "rescaled": 0, "min_scale": 1.0}
        self._refine_spec = refine_recognizers
        self._refine_ens: nn.Module | None = None
        self.generator = generator
        self.psnr_floor = None if psnr_floor is None else float(psnr_floor) - (4.0 if strength == "high" else 0.0)
        self.config = config
        self.strength = strength
        self.perturbation_scale = strength_scale(strength)
        self.noise_scale = float(noise_scale)
        self.template = "protector-128" if config.image_size == 128 else "protector-256"

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the crops: the generator's ``image_size``."""
        return (self.config.image_size, self.config.image_size)

    @torch.no_grad()
    def protect(self, faces: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Protected crops (same shape, device and dtype as ``faces``, in [0,1]); seeded ``generator`` -> repeatable."""
        self.check_input(faces)
        if faces.shape[0] == 0:
            return faces.clone()
        p = next(self.generator.parameters())
        x = faces.to(p.device, torch.float32)
        y = self.generator(x, generator=generator, noise_scale=self.noise_scale,
                           perturbation_scale=self.perturbation_scale)
        y = self._guard(x, y)
        if self.refine:
            y = self._refine_steps(x, y)
        return y.to(faces.device, faces.dtype).clamp(0, 1)

    def _guard(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The PSNR-floor guard (identity when ``psnr_floor`` is ``None``); records :attr:`guard_stats`."""
        if self.psnr_floor is None:
            self.guard_stats = {"crops": int(x.shape[0]), "rescaled": 0, "min_scale": 1.0}
            return y
        r = y - x
        mse = r.pow(2).mean((1, 2, 3), keepdim=True).clamp_min(1e-20)
        cap = 10.0 ** (-self.psnr_floor / 10.0)
        scale = (cap / mse).sqrt().clamp(max=1.0)
        self.guard_stats = {"crops": int(x.shape[0]), "rescaled": int((scale < 1).sum()),
                            "min_scale": float(scale.min()) if scale.numel() else 1.0}
        return (x + r * scale).clamp(0, 1)

    def _refine_ensemble(self, device: torch.device) -> nn.Module:
        if self._refine_ens is None:
            from nullswap.recognizers.ensemble import RecognizerEnsemble

            spec = self._refine_spec
            self._refine_ens = spec if isinstance(spec, nn.Module) else RecognizerEnsemble(
                list(spec), source_template=self.template)
        return self._refine_ens.to(device)

    def _refine_steps(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``refine`` projected signed-gradient steps from ``y`` (see the class docstring)."""
        ens = self._refine_ensemble(x.device)
        cap = (self.config.max_delta or 8.0) / 255.0 * max(float(self.perturbation_scale), 1e-6)
        alpha = min(2.5 * cap / self.refine, cap / 2)
        with torch.no_grad():
            clean = [e.detach() for e in ens(x)]
        with torch.enable_grad():
            for _ in range(self.refine):
                y = y.detach().requires_grad_(True)
                sim = torch.stack([F.cosine_similarity(e, c, dim=1) for e, c in zip(ens(y), clean, strict=True)])
                (g,) = torch.autograd.grad(sim.mean(0).sum(), y)
                with torch.no_grad():
                    y = y - alpha * g.sign()
                    y = torch.min(torch.max(y, x - cap), x + cap).clamp(0, 1)
                    y = self._guard(x, y)
        return y.detach()


@register_protector("nullswap", "NullSwap identity-cloaking generator (Wang et al.), needs trained weights")
def _make_nullswap(
    checkpoint: str | None = None,
    strength: str | float = "mid",
    device: str | torch.device | None = None,
    noise_scale: float = 1.0,
    psnr_floor: float | str | None = "auto",
    refine: int = 0,
    refine_recognizers: Any = None,
    **_: object,
) -> NullSwapProtector:
    """Factory: load ``checkpoint`` (or the packaged default) into a :class:`NullSwapProtector` in eval mode.

    Raises:
        WeightsNotFoundError: no checkpoint given and no packaged default at :data:`DEFAULT_WEIGHTS_DIR`.
    """
    if checkpoint is None:
        if not (DEFAULT_WEIGHTS_DIR / MODEL_FILENAME).is_file():
            raise WeightsNotFoundError(
                "nullswap: expected a trained checkpoint (pass checkpoint=<folder with model.safetensors and "
                f"config.json>, e.g. a training run's export/ folder), got none, and no packaged default at "
                f"{str(DEFAULT_WEIGHTS_DIR)!r}"
            )
        from nullswap.hub import get_weight_spec, resolve

        # verified against the sha256 recorded in the hub (nullswap.hub.registry "nullswap-default")
        checkpoint = str(resolve(get_weight_spec("nullswap-default")).parent)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    gen, config, meta = load_nullswap(checkpoint, map_location=dev)
    if psnr_floor == "auto":  # the floor the model was trained with, if any
        loss = meta.get("loss") if isinstance(meta.get("loss"), dict) else (meta.get("extra") or {}).get("loss", {})
        psnr_floor = (loss or {}).get("psnr_floor")
    if refine and refine_recognizers is None:  # attack what the generator was trained against
        refine_recognizers = list(meta.get("recognizers") or [])
    prot = NullSwapProtector(gen, config, strength=strength, noise_scale=noise_scale,
                             psnr_floor=None if psnr_floor is None else float(psnr_floor), refine=int(refine),
                             refine_recognizers=refine_recognizers)
    return prot.eval()


__all__ = [
    "DEFAULT_WEIGHTS_DIR",
    "STRENGTH_SCALES",
    "ConvBlock",
    "DeConvBlock",
    "NullSwapConfig",
    "NullSwapDiscriminator",
    "NullSwapGenerator",
    "NullSwapProtector",
    "SEResBlock",
    "SqueezeExcitation",
    "count_parameters",
    "load_nullswap",
    "save_nullswap",
    "strength_scale",
    "unwrap_module",
]
