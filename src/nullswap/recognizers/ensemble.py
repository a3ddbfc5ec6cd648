"""Feeding several recognizers from one protector crop, differentiably.

Every recognizer has its own alignment template and input size; a protector works on ``protector-256`` crops. The
:class:`RecognizerEnsemble` re-warps the crop into each recognizer's template with a fixed similarity transform
(:func:`nullswap.faces.alignment.rewarp`, a differentiable ``grid_sample``) and returns one embedding per recognizer.
This is how NullSwap's identity loss (Eq. 12) and the PGD/FGSM baselines see the recognizers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nullswap.faces.alignment import template_to_template, warp_affine
from nullswap.faces.templates import get_template
from nullswap.recognizers.base import FaceRecognizer
from nullswap.recognizers.registry import create_recognizer


class RecognizerEnsemble(nn.Module):
    """Recognizers fed from crops aligned to ``source_template``.

    Args:
        recognizers: recognizer modules, or registry names (built pretrained, frozen, eval mode).
        source_template: template of the crops passed to :meth:`forward`.
        weights_dir: folder searched first for weight files (names only).

    Calling it returns a list of L2-normalised embeddings ``(B, D_i)``, one per recognizer, in order.
    The recognizers' parameters are frozen; gradients flow to the input.
    """

    def __init__(
        self,
        recognizers: Sequence[FaceRecognizer | str],
        source_template: str = "protector-256",
        weights_dir: str | None = None,
    ) -> None:
        super().__init__()
        mods = [create_recognizer(r, weights_dir=weights_dir) if isinstance(r, str) else r for r in recognizers]
        for m in mods:
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)
        self.recognizers = nn.ModuleList(mods)
        self.source_template = source_template
        for i, m in enumerate(mods):
            self.register_buffer(f"_M{i}", template_to_template(source_template, m.template), persistent=False)

    @property
    def names(self) -> list[str]:
        """Recognizer names, in order."""
        return [m.name for m in self.recognizers]

    def __len__(self) -> int:
        return len(self.recognizers)

    def train(self, mode: bool = True) -> RecognizerEnsemble:
        """Recognizers always stay in eval mode (frozen BN statistics)."""
        super().train(mode)
        for m in self.recognizers:
            m.eval()
        return self

    def crops_for(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """``x`` (source-template crops) re-aligned for recognizer ``i``."""
        m = self.recognizers[i]
        M = getattr(self, f"_M{i}").to(x.device, x.dtype)
        return warp_affine(x, M, get_template(m.template).size)

    def forward(self, x: torch.Tensor, indices: Sequence[int] | None = None) -> list[torch.Tensor]:
        """Embeddings of ``x`` for every recognizer, or only for those at ``indices`` (in that order)."""
        which = range(len(self.recognizers)) if indices is None else indices
        return [self.recognizers[i](self.crops_for(i, x)) for i in which]


__all__ = ["RecognizerEnsemble"]
