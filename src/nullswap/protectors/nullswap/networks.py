"""The NullSwap generator of Figure 2 (nullswap.txt, Sec. 3.2, Eq. 1) and the discriminator of Sec. 3.4.

See :mod:`nullswap.protectors.nullswap` for the architecture and the Choices the paper leaves open.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nullswap.checks import check_image_batch
from nullswap.protectors.nullswap.blocks import ConvBlock, DeConvBlock, SEResBlock
from nullswap.protectors.nullswap.config import NullSwapConfig, _check_size

__all__ = ["NullSwapDiscriminator", "NullSwapGenerator", "count_parameters", "unwrap_module"]

_LOGIT_EPS = 1e-3


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
        # Full-resolution detail branch (Choice, issue 12; see NullSwapConfig.detail_channels): on the same input as
        # the reconstruction (cloak features + image), its own residual summed with the reconstruction's. The output
        # convolution starts at zero (weight and bias): the branch adds nothing until training moves it, and its
        # weight's gradient is non-zero from the first step (its input activations are not zero).
        self.detail: nn.Module | None = None
        self.detail_out: nn.Conv2d | None = None
        if c.detail_channels > 0:
            d = c.detail_channels
            self.detail = nn.Sequential(
                ConvBlock(half + 3, d), *[SEResBlock(d, d, **se) for _ in range(c.detail_blocks)]
            )
            self.detail_out = nn.Conv2d(d, 3, 3, padding=1)
            nn.init.zeros_(self.detail_out.weight)
            nn.init.zeros_(self.detail_out.bias)

    def residual_heads(self) -> list[nn.Conv2d]:
        """The convolutions whose outputs sum to the residual (scaling their weights and biases scales it)."""
        heads = [self.to_residual]
        if self.detail_out is not None:
            heads.append(self.detail_out)
        return heads

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
        return self._finish(x, pert + self.random_noise(pert, generator, noise_scale), float(perturbation_scale))

    def noise_shape(self, x_shape: Sequence[int]) -> tuple[int, int, int, int]:
        """Shape of Eq. 1's noise for an input of shape ``(B, 3, H, W)``: ``(B, perturb_channels, H/4, W/4)``."""
        b, _, h, w = (int(v) for v in x_shape)
        return (b, self.config.perturb_channels, h // 4, w // 4)

    def one_pass(self, x: torch.Tensor, noise: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """The forward pass with Eq. 1's noise term and the residual factor given as tensors (for graph export).

        ``forward(x, generator=g, noise_scale=s, perturbation_scale=p)`` equals
        ``one_pass(x, random_noise(like, g, s), torch.tensor([p]))`` for ``p > 0`` (``like`` of
        :meth:`noise_shape`): no checks and no branch on the values, so :mod:`torch.onnx` can trace it once
        (:mod:`nullswap.protectors.nullswap.ort_generator`).
        """
        return self._finish(x, self.perturbation(self.id_extraction(x)) + noise, scale)

    def _finish(self, x: torch.Tensor, pert: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
        """Cloaking Block, reconstruction and the output mapping from the noisy perturbation features."""
        h = self.cloak(torch.cat([self.gamma * pert, self.features(x)], dim=1))
        hx = torch.cat([h, x.to(h.dtype)], dim=1)
        r = self.to_residual(self.reconstruct(hx))
        if self.detail is not None and self.detail_out is not None:
            r = r + self.detail_out(self.detail(hx))
        y = _logit_residual(x, scale * r.to(x.dtype))
        if self.config.max_delta > 0 and (isinstance(scale, torch.Tensor) or scale > 0):
            # a soft per-pixel cap: |y - x| < max_delta / 255 (times the residual factor)
            cap = self.config.max_delta / 255.0 * scale
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
    while not isinstance(m, NullSwapGenerator | NullSwapDiscriminator) and isinstance(
        getattr(m, "module", None), nn.Module
    ):
        m = m.module
    return m
