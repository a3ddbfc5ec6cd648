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


def identity_cosines(
    ensemble: nn.Module,
    clean: torch.Tensor,
    protected: torch.Tensor,
    clean_emb: Sequence[torch.Tensor] | None = None,
    indices: Sequence[int] | None = None,
) -> list[torch.Tensor]:
    """Per-image cosine ``(e_s . e'_s) / (||e_s|| ||e'_s||)`` per recognizer, a list of ``(B,)`` tensors (Eq. 12).

    Args and errors as :func:`identity_losses`; ``indices`` restricts the recognizers to those positions of the
    ensemble (``clean_emb``, when given, still holds every recognizer's embeddings).
    """
    check_same_shape(clean, protected, ("clean", "protected"))
    ref = list(clean_emb) if clean_emb is not None else clean_embeddings(ensemble, clean)
    if indices is not None:
        ref = [ref[i] for i in indices]
        prot = list(ensemble(protected, indices=indices))
    else:
        prot = list(ensemble(protected))
    if len(prot) != len(ref):
        raise InputError(f"identity loss: expected {len(ref)} embeddings per recognizer list, got {len(prot)}")
    return [F.cosine_similarity(p.float(), r.float().to(p.device), dim=1, eps=1e-8)
            for p, r in zip(prot, ref, strict=True)]


def threshold_target(threshold: float, margin: float) -> float:
    """The cosine a threshold-aware identity term aims at: ``t - margin * (1 - t)``.

    Choice (not in the paper): the margin is relative to the recognizer's own cosine range above its threshold, so
    recognizers with compressed scales (dlib's ResNet-29: LFW threshold 0.906) and wide ones (MobileFaceNet: 0.283)
    get comparable targets (0.859 and -0.075 at ``margin=0.5``).
    """
    return float(threshold) - float(margin) * (1.0 - float(threshold))


def threshold_hinge(cosines: torch.Tensor, target: float) -> torch.Tensor:
    """Threshold-aware identity term: ``mean_b relu(cos_b - target) / (1 - target)``.

    Faces already below ``target`` contribute nothing (no reward for pushing further), so the perturbation budget is
    spent on the faces a recognizer still verifies; dividing by ``1 - target`` puts every recognizer on ``[0, ~1]``.
    """
    return torch.relu(cosines - target).mean() / max(1.0 - target, 1e-6)


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
    return [c.mean() for c in identity_cosines(ensemble, clean, protected, clean_emb)]


__all__ = ["clean_embeddings", "identity_cosines", "identity_losses", "threshold_hinge", "threshold_target"]
