"""Shared set-up of the loss tests."""

from __future__ import annotations

import pytest
import torch


class _MeanColour(torch.nn.Module):
    """A one-recognizer 'ensemble' whose embedding is the crop's mean colour (enough for the identity term to run)."""

    names = ["a"]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x.mean((2, 3))]


@pytest.fixture
def extra_term_case():
    """``(clean, protected, constructor kwargs, call kwargs)`` for checking one added term of the NullSwap loss.

    The floor is 40 dB, so a term divided by the budget is divided by ``1e-4``.
    """
    g = torch.Generator().manual_seed(2)
    clean = torch.rand(2, 3, 16, 16, generator=g) * 0.8 + 0.1
    prot = clean + (torch.rand(2, 3, 16, 16, generator=g) - 0.5) * 0.02
    kw = dict(lambda_lpips=0.0, lambda_d=0.0, strategy="average", psnr_floor=40.0)
    args = dict(ensemble=_MeanColour(), perceptual=None, fake_logits=None, epoch=0.0)
    return clean, prot, kw, args
