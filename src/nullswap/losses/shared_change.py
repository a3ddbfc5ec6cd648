"""The change shared by every face: the part of a generator's perturbation that does not depend on the face.

Not in the NullSwap paper. Added for issue 12 (invisibility), from a measurement of the shipped one pass (v7, 64 CelebA
validation crops aligned to ``protector-128``, ``python benchmarks/universality.py --png DIR``): the mean of the 64
changes holds 18 % of their energy (mean cosine of a change with the mean 0.42), and shown 20x it is a drawn face: brow
furrows, an arch over the nose, nasolabial lines and a green/magenta mouth region, in the template's coordinates. On a
real face this canonical drawing lands beside the face's own nose and folds and reads as a second outline and as
forehead wrinkles (``docs/img/group-v7-vs-lines4x-2x.png``), while alone, scaled to the whole change's RMS, it pushes 0
/ 8 / 20 / 6 % of those probes below the training recognizers' thresholds (arcface-mbf / mobilefacenet-casia / dlib-
resnet29 / faceplugin-512) against the whole change's 3 / 41 / 69 / 47 %. The term charges that shared part so the
generator keeps the change that follows each face.

For a batch of changes ``d_b = I'_b - I_b`` (``B >= 2``) the squared norm of their expected value is estimated without
the bias of the batch mean (``E|mean_b d_b|^2 = |m|^2 + E|d - m|^2 / B``) by the mean inner product of distinct pairs:

``S = (B^2 |mean_b d_b|^2 - sum_b |d_b|^2) / (B (B - 1))`` per pixel and channel, ``= mean_{b != c} <d_b, d_c> / P``,

clamped at 0 for the loss (a negative estimate is sampling noise: a generator that sees one face at a time cannot
make its changes anti-correlated on purpose).
"""

from __future__ import annotations

import torch

from nullswap.checks import check_image_batch, check_same_shape
from nullswap.errors import InputError


def _changes(clean: torch.Tensor, protected: torch.Tensor) -> torch.Tensor:
    check_image_batch(clean, "clean")
    check_same_shape(clean, protected, ("clean", "protected"))
    if clean.shape[0] < 2:
        raise InputError(f"clean: expected a batch of >= 2 images (the shared change needs pairs), got "
                         f"{clean.shape[0]}")
    return (protected.float() - clean.float()).flatten(1)


def shared_change_energy(clean: torch.Tensor, protected: torch.Tensor) -> torch.Tensor:
    """Unbiased estimate of ``|E[d]|^2`` per pixel and channel, ``mean_{b != c} <d_b, d_c> / P`` (may be < 0).

    Args:
        clean: ``I_s``, RGB ``(B,3,H,W)`` in [0,1], ``B >= 2``.
        protected: ``I'_s``, the same shape (gradients flow to it).

    Raises:
        InputError: bad batches or ``B < 2``.
    """
    d = _changes(clean, protected)
    b, p = d.shape
    total = d.sum(0)
    return (total.pow(2).sum() - d.pow(2).sum()) / (b * (b - 1) * p)


def shared_change_loss(clean: torch.Tensor, protected: torch.Tensor) -> torch.Tensor:
    """:func:`shared_change_energy` clamped at 0: the loss term (``loss.lambda_shared`` of the NullSwap recipe)."""
    return shared_change_energy(clean, protected).clamp_min(0)


def shared_change_share(clean: torch.Tensor, protected: torch.Tensor) -> float:
    """Diagnostic: the shared change's share of the changes' mean energy, ``S / mean_b |d_b|^2`` (0 when no change)."""
    with torch.no_grad():
        d = _changes(clean, protected)
        energy = float(d.pow(2).mean())
        return float(shared_change_energy(clean, protected)) / energy if energy > 0 else 0.0


__all__ = ["shared_change_energy", "shared_change_loss", "shared_change_share"]
