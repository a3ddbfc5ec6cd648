"""The LFW face-verification protocol, independent of any model (a facade over its two halves).

The pairs file lives in :mod:`nullswap.datasets.lfw_pairs`, the scores and metrics in
:mod:`nullswap.metrics.verification`; every name stays importable from here.

This module reads the standard LFW ``pairs.txt`` and scores a verifier with the "unrestricted" ten-fold protocol of
Huang, Ramesh, Berg and Learned-Miller, *Labeled Faces in the Wild: A Database for Studying Face Recognition in
Unconstrained Environments*, University of Massachusetts, Amherst, Technical Report 07-49, 2007 (LFW).

Conventions used throughout:

* A score is a similarity (for example a cosine): **higher means more likely the same person**.
* A pair is predicted "same" iff ``score > threshold`` (strictly greater).
* Candidate thresholds are the midpoints between consecutive sorted unique scores, plus one threshold below the
  minimum (accept everything) and one above the maximum (reject everything), each one average gap beyond the
  extreme score. Among equally accurate candidates the **lowest** threshold wins (as ``np.argmax`` over an increasing
  threshold grid does in the usual LFW evaluation scripts).
* The standard deviation of the ten fold accuracies is the **population** standard deviation (``ddof=0``, numpy's
  ``np.std`` default, as in the FaceNet / InsightFace LFW scripts). Some papers report the sample one (``ddof=1``),
  which is larger by a factor ``sqrt(10/9)`` for ten folds.

Typical use (the model code lives elsewhere)::

    folds = read_lfw_pairs(lfw_root / "meta" / "pairs.txt")
    pairs, labels, fold_ids = flatten_folds(folds)
    emb = {key: embedding for key in unique_images(pairs)}        # keys are (name, idx); None where no face
    scored = pair_scores(emb, pairs, missing="min")
    result = ten_fold_verification(scored.scores, labels, fold_ids, n_missing=scored.n_missing)
    result.best_threshold                                           # the LFW-calibrated verification threshold
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
