"""Identity loss of NullSwap (nullswap.txt, Eq. 12): cosine similarity of clean and protected embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nullswap.checks import check_same_shape
from nullswap.errors import InputError


def clean_embeddings(ensemble: nn.Module, clean: torch.Tensor) -> list[torch.Tensor]:
    """Embeddings ``e_s`` of the clean crops, computed under ``no_grad`` and detached (the fixed targets of Eq. 12)."""
    with torch.no_grad():
        return [e.detach() for e in ensemble(clean)]


def identity_losses(
    ensemble: nn.Module,
    clean: torch.Tensor,
    protected: torch.Tensor,
    clean_emb: Sequence[torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """Eq. 12 per recognizer: ``L_i = mean_batch (e_s . e'_s) / (||e_s|| ||e'_s||)``.

    Args:
        ensemble: a :class:`~nullswap.recognizers.ensemble.RecognizerEnsemble` (any module returning a list of
            ``(B, D_i)`` embeddings works).
        clean: clean crops ``I_s`` ``(B,3,H,W)``.
        protected: protected crops ``I'_s``, same shape; gradients flow to it.
        clean_emb: precomputed clean embeddings (default: :func:`clean_embeddings`).

    Returns:
        One scalar per recognizer (lower = identity better cloaked).

    Raises:
        InputError: shape mismatch or an ensemble returning a different number of embeddings.
    """
    check_same_shape(clean, protected, ("clean", "protected"))
    ref = list(clean_emb) if clean_emb is not None else clean_embeddings(ensemble, clean)
    prot = list(ensemble(protected))
    if len(prot) != len(ref):
        raise InputError(f"identity loss: expected {len(ref)} embeddings per recognizer list, got {len(prot)}")
    return [F.cosine_similarity(p.float(), r.float(), dim=1, eps=1e-8).mean() for p, r in zip(prot, ref, strict=True)]


__all__ = ["clean_embeddings", "identity_losses"]
