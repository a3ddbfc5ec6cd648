"""The LFW face-verification protocol, independent of any model (a facade over its two halves).

The pairs file lives in :mod:`nullswap.datasets.lfw_pairs`, the scores and metrics (conventions, the ten-fold
protocol of Huang et al. 2007, typical use) in :mod:`nullswap.metrics.verification`; every name stays importable
from here.
"""

from __future__ import annotations

from nullswap.datasets.lfw_pairs import (
    LFWPair,
    PairsFileError,
    flatten_folds,
    lfw_image_path,
    read_lfw_pairs,
    unique_images,
)
from nullswap.metrics.verification import (
    FAR_LEVELS,
    MissingEmbeddingError,
    MissingPolicy,
    PairScores,
    VerificationResult,
    best_threshold,
    far_key,
    pair_scores,
    roc_auc,
    tar_at_far,
    ten_fold_verification,
)

__all__ = [
    "FAR_LEVELS",
    "LFWPair",
    "MissingEmbeddingError",
    "MissingPolicy",
    "PairScores",
    "PairsFileError",
    "VerificationResult",
    "best_threshold",
    "far_key",
    "flatten_folds",
    "lfw_image_path",
    "pair_scores",
    "read_lfw_pairs",
    "roc_auc",
    "tar_at_far",
    "ten_fold_verification",
    "unique_images",
]
