"""NullSwap losses: DLW (Eqs. 2-7), reconstruction (8-9), adversarial (10-11), identity (12) and total (13)."""

from nullswap.losses.adversarial import discriminator_loss, generator_adversarial_loss
from nullswap.losses.dlw import DynamicLossWeighting, IdentityLossAggregator
from nullswap.losses.identity import clean_embeddings, identity_losses
from nullswap.losses.nullswap import DEFAULT_DLW, DEFAULT_LAMBDAS, NullSwapLoss
from nullswap.losses.reconstruction import mse_loss, perceptual_loss

__all__ = [
    "DEFAULT_DLW",
    "DEFAULT_LAMBDAS",
    "DynamicLossWeighting",
    "IdentityLossAggregator",
    "NullSwapLoss",
    "clean_embeddings",
    "discriminator_loss",
    "generator_adversarial_loss",
    "identity_losses",
    "mse_loss",
    "perceptual_loss",
]
