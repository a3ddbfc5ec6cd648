"""Losses of the retentive proactive defense (retentive-defense.txt, Sec. 3.2, Eq. 2-8).

``x_adv = x + P(x)`` (Eq. 2) with ``||P(x)||_2 < eps`` (Eq. 3); the generator PG minimises
``L = lambda_mag (L_pix + lambda_feat L_feat) + lambda_adv L_adv`` (Eq. 4-8) where ``L_adv = ||x_adv - G(x_adv)||_2``
makes the manipulation an identity map on protected images (an "invalid attack").

The ``||.||_2`` distance helper :func:`l2_distance` is shared with the ID-Guard and ARS losses.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nullswap.checks import check_same_shape
from nullswap.errors import InputError

#: Added under the square root of :func:`l2_distance` (the norm is not differentiable at 0, where every
#: perturbation generator starts).
L2_EPS = 1e-8


def l2_distance(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image ``||a - b||_2`` (optionally ``||(a - b) * mask||_2``), as the papers' ``||.||_2`` terms, batch mean.

    Choice: the norm is divided by ``sqrt(numel)`` of one image (a root-mean-square), so loss weights do not depend on
    the resolution (the papers train at 256 and 128 px), and ``L2_EPS`` is added under the root so the gradient is
    finite where ``a = b``.

    Args:
        a: ``(B, ...)`` tensor.
        b: same shape.
        mask: optional weights broadcastable to ``a`` (Eq. 4-5, 7 of ID-Guard multiply both sides by the mask, which
            equals masking the difference).

    Returns:
        Scalar: mean over the batch of the per-image RMS distance.

    Raises:
        InputError: shapes differ or an empty batch.
    """
    check_same_shape(a, b, ("a", "b"))
    if a.shape[0] == 0:
        raise InputError("l2_distance: expected a non-empty batch, got 0 images")
    d = a - b
    if mask is not None:
        d = d * mask
    ms = d.flatten(1).pow(2).mean(1)
    return torch.sqrt(ms + L2_EPS).mean()


def project_l2(p: torch.Tensor, eps: float) -> torch.Tensor:
    """Scale each perturbation so that its RMS norm is at most ``eps`` (the constraint of Eq. 3).

    ``P <- P * min(1, eps / rms(P))``; a perturbation inside the ball is left unchanged.

    Choice: the paper writes ``||P(x)||_2 < eps`` with ``eps = 0.05`` next to PGD's ``eps = 0.05``; an unnormalised
    L2 norm of 0.05 over a whole image would be invisible (and useless), so the bound is read per pixel (RMS), on
    the [0, 1] image scale.

    Raises:
        InputError: ``eps`` not positive.
    """
    if not eps > 0:
        raise InputError(f"eps: expected a positive number, got {eps!r}")
    rms = p.flatten(1).pow(2).mean(1).add(1e-12).sqrt()
    factor = (eps / rms).clamp(max=1.0)
    return p * factor.view(-1, *([1] * (p.ndim - 1)))


class RetentiveLoss(nn.Module):
    """Eq. 4-8 of the retentive defense.

    Args:
        lambda_mag: weight of the magnitude loss ``L_mag`` (Eq. 8).
        lambda_feat: weight of the perceptual term inside ``L_mag`` (Eq. 6).
        lambda_adv: weight of ``L_adv`` (Eq. 8).

    The paper gives none of the three values (Choice: 1, 1, 10 by default; see ``configs/retentive.yaml``).
    """

    def __init__(self, lambda_mag: float = 1.0, lambda_feat: float = 1.0, lambda_adv: float = 10.0) -> None:
        super().__init__()
        for name, v in (("lambda_mag", lambda_mag), ("lambda_feat", lambda_feat), ("lambda_adv", lambda_adv)):
            if not isinstance(v, int | float) or isinstance(v, bool) or v < 0:
                raise InputError(f"{name}: expected a number >= 0, got {v!r}")
        self.lambda_mag = float(lambda_mag)
        self.lambda_feat = float(lambda_feat)
        self.lambda_adv = float(lambda_adv)

    def forward(
        self,
        x: torch.Tensor,
        x_adv: torch.Tensor,
        out_adv: torch.Tensor,
        perceptual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss (Eq. 8) and its terms.

        Args:
            x: clean images ``(B,3,H,W)`` in [0,1].
            x_adv: ``x + P(x)`` (Eq. 2).
            out_adv: ``G(x_adv)``.
            perceptual: ``F``-distance ``(x, y) -> (B,)`` of Eq. 5 (``None`` or ``lambda_feat == 0`` skips it).

        Returns:
            ``(loss, logs)``.
        """
        l_pix = l2_distance(x, x_adv)  # Eq. 4
        if perceptual is not None and self.lambda_feat > 0:
            l_feat = perceptual(x, x_adv).mean()  # Eq. 5
        else:
            l_feat = torch.zeros((), device=x.device, dtype=x_adv.dtype)
        l_mag = l_pix + self.lambda_feat * l_feat  # Eq. 6
        l_adv = l2_distance(x_adv, out_adv)  # Eq. 7
        loss = self.lambda_mag * l_mag + self.lambda_adv * l_adv  # Eq. 8
        logs = {"loss/total": float(loss.detach()), "loss/pix": float(l_pix.detach()),
                "loss/feat": float(l_feat.detach()), "loss/adv": float(l_adv.detach())}
        return loss, logs


__all__ = ["L2_EPS", "RetentiveLoss", "l2_distance", "project_l2"]
