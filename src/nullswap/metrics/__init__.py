"""Evaluation metrics: image quality, identity cloaking and manipulation disruption.

Function / class pairs in the torchmetrics style: each function returns per-image values ``(B,)`` (or a rate), each
class subclasses :class:`torchmetrics.Metric`, accumulates over ``update`` calls and returns the mean from
``compute()``. See ``docs/metrics.md`` for the exact definitions and their paper sources.
"""

from nullswap.metrics.disruption import (
    DefenseSuccessRate,
    L2Disruption,
    L2Face,
    SuccessRate,
    SuccessRateMask,
    defense_success,
    defense_success_rate,
    face_region_mask,
    l2_disruption,
    l2_face,
    l2_mask,
    manipulation_mask,
    success_rate,
    success_rate_mask,
)
from nullswap.metrics.identity import (
    CosineSimilarity,
    IdentificationAccuracy,
    ProtectionSuccessRate,
    cosine_similarity,
    identification_accuracy,
    protection_success_rate,
)
from nullswap.metrics.quality import (
    PSNR,
    SSIM,
    L2Distance,
    PerceptualMetric,
    l2_distance,
    mean_squared_error,
    perceptual_distance,
    psnr,
    ssim,
)

__all__ = [
    "PSNR",
    "SSIM",
    "CosineSimilarity",
    "DefenseSuccessRate",
    "IdentificationAccuracy",
    "L2Disruption",
    "L2Distance",
    "L2Face",
    "PerceptualMetric",
    "ProtectionSuccessRate",
    "SuccessRate",
    "SuccessRateMask",
    "cosine_similarity",
    "defense_success",
    "defense_success_rate",
    "face_region_mask",
    "identification_accuracy",
    "l2_disruption",
    "l2_distance",
    "l2_face",
    "l2_mask",
    "manipulation_mask",
    "mean_squared_error",
    "perceptual_distance",
    "protection_success_rate",
    "psnr",
    "ssim",
    "success_rate",
    "success_rate_mask",
]
