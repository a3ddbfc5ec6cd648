"""Adversarial losses of NullSwap (nullswap.txt, Eqs. 10-11), on discriminator logits.

``D(.) = sigmoid(logit)``; both losses are written with ``binary_cross_entropy_with_logits`` (log-sum-exp stable).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 10 (standard GAN form): ``L_dis = -E log D(I_s) - E log(1 - D(I'_s))``.

    Eq. 10 as printed reads ``-E log D(I_s) + E log(1 - D(I'_s))``; the ``+`` is a sign typo (minimising it would push
    ``D(I'_s)`` *up*, i.e. the discriminator would call protected images real, contradicting Eq. 11's adversary). We
    implement the standard discriminator loss of Goodfellow et al. 2014.

    Args:
        real_logits: logits of clean images ``I_s``.
        fake_logits: logits of protected images ``I'_s`` (normally detached from the generator).
    """
    real = F.binary_cross_entropy_with_logits(real_logits.float(), torch.ones_like(real_logits, dtype=torch.float32))
    fake = F.binary_cross_entropy_with_logits(fake_logits.float(), torch.zeros_like(fake_logits, dtype=torch.float32))
    return real + fake


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 11: ``L_D = -E log D(I'_s)`` (non-saturating generator loss)."""
    return F.binary_cross_entropy_with_logits(fake_logits.float(), torch.ones_like(fake_logits, dtype=torch.float32))


__all__ = ["discriminator_loss", "generator_adversarial_loss"]
