"""Reconstruction losses of NullSwap (nullswap.txt, Eqs. 8-9)."""

from __future__ import annotations

import torch
from torch import nn

from nullswap.checks import check_same_shape
from nullswap.errors import InputError

MSE_FORMS = ("l2", "mse")


def mse_loss(clean: torch.Tensor, protected: torch.Tensor, form: str = "mse") -> torch.Tensor:
    """Eq. 8, ``L_MSE = ||I_s - I'_s||_2`` between ``I_s`` and ``I'_s``.

    Args:
        clean: ``I_s``.
        protected: ``I'_s``.
        form: ``"mse"`` (default): the mean squared difference the text names. ``"l2"``: the L2 norm Eq. 8 writes,
            per image, divided by ``sqrt(C*H*W)`` so that ``lambda_MSE`` does not depend on image size (the per-image
            root-mean-square difference), averaged over the batch.

    Choice: the paper writes a norm but calls it the MSE loss, and does not say on which value range. Measured on
    ``configs/nullswap-cpu-small.yaml`` ([0,1] images, the paper's lambdas): with ``"l2"`` the norm's constant
    gradient wins and the generator collapses to the identity map (RMS 0.01 -> 0.0008 and cosine back to 1.0 within
    25 steps); with ``"mse"`` the identity term wins (PSNR 42 dB -> 29.8 dB between steps 60 and 80). The squared
    form is the default; the CPU config raises ``lambda_mse`` to hold PSNR (see that config).
    """
    check_same_shape(clean, protected, ("clean", "protected"))
    if form not in MSE_FORMS:
        raise InputError(f"mse form: expected one of {MSE_FORMS}, got {form!r}")
    d = (protected.float() - clean.float()).flatten(1)
    if form == "mse":
        return d.pow(2).mean()
    return (d.pow(2).mean(1) + 1e-12).sqrt().mean()


def perceptual_loss(perceptual: nn.Module, clean: torch.Tensor, protected: torch.Tensor) -> torch.Tensor:
    """Eq. 9, ``L_LPIPS = sum_l ||phi_l(I_s) - phi_l(I'_s)||_2^2``, via an injected perceptual distance.

    Args:
        perceptual: a module ``(x, y) -> (B,)`` on [0,1] images (e.g.
            :func:`nullswap.metrics.perceptual.create_perceptual`).
        clean: ``I_s``.
        protected: ``I'_s`` (gradients flow to it).

    Returns:
        The batch mean of the distances.
    """
    check_same_shape(clean, protected, ("clean", "protected"))
    return perceptual(clean.float(), protected.float()).float().mean()


#: ITU-R BT.601 chroma rows (Cb, Cr) of the RGB -> YCbCr matrix (offsets dropped: applied to differences).
_CHROMA = torch.tensor([[-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def chroma_loss(clean: torch.Tensor, protected: torch.Tensor) -> torch.Tensor:
    """Mean squared chroma (BT.601 Cb, Cr) of the change ``I'_s - I_s``, over pixels and images.

    Not in the paper. Choice, from the shipped model's look on whole photos: its 128-px residual, upsampled onto large
    faces, showed as coloured streaks; low-frequency colour changes are far more visible than luminance changes of
    the same energy, so the colour part of the change is penalised separately from the RGB MSE.
    """
    check_same_shape(clean, protected, ("clean", "protected"))
    d = protected.float() - clean.float()
    c = torch.einsum("kc,bchw->bkhw", _CHROMA.to(d.device, d.dtype), d)
    return c.pow(2).mean()


__all__ = ["chroma_loss", "mse_loss", "perceptual_loss"]
