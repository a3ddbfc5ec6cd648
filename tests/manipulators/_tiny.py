"""Tiny random recognizers for fast manipulator tests."""

import torch
from torch import nn

from nullswap.recognizers.base import FaceRecognizer, RecognizerInfo


class TinyRecognizer(FaceRecognizer):
    def __init__(self, seed: int, dim: int = 16) -> None:
        super().__init__(RecognizerInfo(f"tiny-{seed}", dim, (112, 112), "arcface-112", "x*2-1"))
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.AvgPool2d(4), nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                                 nn.LazyLinear(dim))
        self.net(torch.zeros(1, 3, 112, 112))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1)
