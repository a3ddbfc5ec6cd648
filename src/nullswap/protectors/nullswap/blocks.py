"""The building blocks of the NullSwap network (nullswap.txt, Sec. 3.2): ConvBlock, SEResBlock and DeConvBlock."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nullswap.errors import InputError

__all__ = ["ConvBlock", "DeConvBlock", "SEResBlock", "SqueezeExcitation"]


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
