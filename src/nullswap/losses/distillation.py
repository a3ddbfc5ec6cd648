"""Distillation of a per-image protector into the one pass: the squared distance to the teacher's output.

Not in the NullSwap paper. Added for issue 12: the one-pass generator underfits (its cosines on training faces equal
those on held-out faces) while ``auto``'s ten refinement steps from its output protect far more and transfer better;
the teacher's output ``T(x)`` on each training crop (:mod:`nullswap.datasets.teacher_targets`) gives the generator a
dense target for the direction of its change instead of only the identity term's gradient. The loss is

``L_distill = mean_{b in M} mean_pixels (G(x_b) - T(x_b))^2``

over the images ``M`` of the batch that have a target (0 when none has), so its weight does not depend on how many
crops of a batch are covered. The NullSwap recipe divides it by the PSNR floor's MSE budget like the other quality
terms (``loss.lambda_distill``).
"""

from __future__ import annotations

import torch

from nullswap.checks import check_image_batch, check_same_shape
from nullswap.errors import InputError


def distillation_loss(protected: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared distance of ``protected`` to the teacher's ``target`` over the images in ``mask``.

    Args:
        protected: the generator's output ``G(x)``, RGB ``(B,3,H,W)`` in [0,1] (gradients flow to it).
        target: the teacher's output ``T(x)``, the same shape (no gradient).
        mask: ``(B,)`` bool, the images that have a target; ``None`` = all.

    Returns:
        A scalar; 0 (still attached to ``protected``) when the mask is empty.

    Raises:
        InputError: bad batches, or a mask that is not ``(B,)`` bool.
    """
    check_image_batch(protected, "protected")
    check_same_shape(protected, target, ("protected", "target"))
    per_image = (protected.float() - target.detach().float()).flatten(1).pow(2).mean(1)
    if mask is None:
        return per_image.mean()
    if mask.dtype != torch.bool or tuple(mask.shape) != (protected.shape[0],):
        raise InputError(f"mask: expected a ({protected.shape[0]},) bool tensor, got {tuple(mask.shape)} {mask.dtype}")
    if not bool(mask.any()):
        return per_image.sum() * 0.0
    return per_image[mask].mean()


__all__ = ["distillation_loss"]
