"""Face-verification metrics: pair scores, best threshold, ROC AUC, TAR at a FAR, the ten-fold protocol.

This module scores a verifier with the "unrestricted" ten-fold protocol of Huang, Ramesh, Berg and Learned-Miller,
*Labeled Faces in the Wild: A Database for Studying Face Recognition in Unconstrained Environments*, University of
Massachusetts, Amherst, Technical Report 07-49, 2007 (LFW). The pairs file itself is read by
:mod:`nullswap.datasets.lfw_pairs`; :mod:`nullswap.verification` re-exports both. Pure Python + numpy.

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

import logging
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from nullswap.errors import InputError, NullswapError

if TYPE_CHECKING:
    from nullswap.datasets.lfw_pairs import LFWPair

__all__ = [
    "FAR_LEVELS",
    "MissingEmbeddingError",
    "MissingPolicy",
    "PairScores",
    "VerificationResult",
    "best_threshold",
    "far_key",
    "pair_scores",
    "roc_auc",
    "tar_at_far",
    "ten_fold_verification",
]

logger = logging.getLogger(__name__)

MissingPolicy = Literal["min", "worst", "nan", "raise"]
_POLICIES: tuple[str, ...] = ("min", "worst", "nan", "raise")


class MissingEmbeddingError(NullswapError, LookupError):
    """An image referenced by a pair has no embedding and the missing policy is ``"raise"``."""

    def __init__(self, keys: Sequence[Hashable]) -> None:
        self.keys = list(keys)
        shown = ", ".join(repr(k) for k in self.keys[:5]) + (", ..." if len(self.keys) > 5 else "")
        super().__init__(f"{len(self.keys)} image(s) referenced by the pairs have no embedding: {shown}")


# ----------------------------------------------------------------------------------------------------------------------
# scores from embeddings
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairScores:
    """Cosine similarities of pairs, with the record of which pairs lacked an embedding.

    Attributes:
        scores: ``(P,)`` float64 cosine similarities (missing pairs filled according to ``policy``).
        missing: ``(P,)`` bool, ``True`` where at least one image of the pair had no embedding.
        policy: the missing policy that filled ``scores``.

    """

    scores: np.ndarray
    missing: np.ndarray
    policy: str

    @property
    def n_missing(self) -> int:
        """Number of pairs with at least one missing embedding."""
        return int(self.missing.sum())


def _as_vector(value: Any, what: object) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1 or arr.size == 0:
        raise InputError(f"embedding of {what!r}: expected a vector (D,) or (1, D), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"embedding of {what!r} has non-finite values")
    return arr


def pair_scores(
    embeddings: Mapping[Hashable, Any],
    pairs: Sequence[LFWPair],
    *,
    key: Callable[[str, int], Hashable] | None = None,
    matrix: Any = None,
    missing: MissingPolicy = "min",
    min_score: float = -1.0,
    max_score: float = 1.0,
) -> PairScores:
    """Cosine similarity of each pair from an embedding lookup.

    Embeddings need not be normalised (they are L2-normalised here). An image is *missing* when its key is absent
    from ``embeddings`` or maps to ``None`` (for example, no face was detected). Missing-embedding policies:

    * ``"min"`` (default, common practice): score the pair ``min_score`` (the lowest cosine, -1). A matched pair then
      counts as a false rejection, so a detection failure counts against the model; a mismatched pair is rejected
      (correctly) at any threshold above ``min_score``.
    * ``"worst"``: always wrong: matched pairs get ``min_score`` and mismatched pairs ``max_score``.
    * ``"nan"``: leave NaN; the caller must drop them (``scores[~missing]``) before :func:`ten_fold_verification`,
      which refuses NaN.
    * ``"raise"``: raise :class:`MissingEmbeddingError` listing the missing keys.

    The number of missing pairs is returned (``PairScores.n_missing``) and logged as a warning when non-zero.

    Args:
        embeddings: maps an image key to its embedding (numpy array, torch tensor or sequence of floats, shape
            ``(D,)`` or ``(1, D)``), or, with ``matrix``, to a row index into ``matrix``; ``None`` marks a missing one.
        pairs: the pairs to score.
        key: ``key(name, idx)`` gives an image's key in ``embeddings``; default ``(name, idx)``. For path keys use
            ``key=lambda n, i: lfw_image_path(root, n, i)``.
        matrix: optional ``(N, D)`` array or tensor of embeddings; ``embeddings`` then maps keys to row indices.
        missing: the missing-embedding policy above.
        min_score: score used for a missing pair under ``"min"`` / ``"worst"``.
        max_score: score used for a missing mismatched pair under ``"worst"``.

    Returns:
        :class:`PairScores`.

    Raises:
        InputError: for an unknown policy, embeddings of different lengths, a zero or non-finite embedding, or a row
            index out of range.
        MissingEmbeddingError: under ``missing="raise"``.

    """
    if missing not in _POLICIES:
        raise InputError(f"missing: expected one of {_POLICIES}, got {missing!r}")
    key_fn: Callable[[str, int], Hashable] = key if key is not None else (lambda n, i: (n, i))
    table: np.ndarray | None = None
    if matrix is not None:
        table = matrix.detach().cpu().numpy() if hasattr(matrix, "detach") else np.asarray(matrix)
        table = np.asarray(table, dtype=np.float64)
        if table.ndim != 2:
            raise InputError(f"matrix: expected shape (N, D), got {table.shape}")

    cache: dict[Hashable, np.ndarray | None] = {}

    def lookup(name: str, idx: int) -> np.ndarray | None:
        k = key_fn(name, idx)
        if k in cache:
            return cache[k]
        value = embeddings.get(k)
        if value is None:
            vec = None
        elif table is not None:
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 0 <= value < len(table):
                raise InputError(f"embedding index of {k!r}: expected an int in [0, {len(table)}), got {value!r}")
            vec = _as_vector(table[int(value)], k)
        else:
            vec = _as_vector(value, k)
        if vec is not None:
            norm = float(np.linalg.norm(vec))
            if norm == 0.0:
                raise InputError(f"embedding of {k!r} is all zeros; cosine similarity is undefined")
            vec = vec / norm
        cache[k] = vec
        return vec

    n = len(pairs)
    scores = np.full(n, np.nan, dtype=np.float64)
    miss = np.zeros(n, dtype=bool)
    a_rows: list[np.ndarray] = []
    b_rows: list[np.ndarray] = []
    ok_idx: list[int] = []
    missing_keys: list[Hashable] = []
    for i, p in enumerate(pairs):
        a, b = lookup(p.name1, p.idx1), lookup(p.name2, p.idx2)
        if a is None or b is None:
            miss[i] = True
            missing_keys += [key_fn(n_, i_) for (n_, i_), v in zip(p.keys, (a, b), strict=True) if v is None]
            continue
        a_rows.append(a)
        b_rows.append(b)
        ok_idx.append(i)
    if a_rows:
        dims = {v.shape[0] for v in a_rows + b_rows}
        if len(dims) != 1:
            raise InputError(f"embeddings have different lengths: {sorted(dims)}")
        A, B = np.stack(a_rows), np.stack(b_rows)
        scores[np.asarray(ok_idx)] = np.clip(np.einsum("pd,pd->p", A, B), -1.0, 1.0)

    if miss.any():
        distinct = list(dict.fromkeys(missing_keys))
        if missing == "raise":
            raise MissingEmbeddingError(distinct)
        logger.warning(
            "%d of %d pairs have a missing embedding (%d distinct images); policy %r",
            int(miss.sum()),
            n,
            len(distinct),
            missing,
        )
        if missing == "min":
            scores[miss] = min_score
        elif missing == "worst":
            same = np.fromiter((p.same for p in pairs), dtype=bool, count=n)
            scores[miss & same] = min_score
            scores[miss & ~same] = max_score
    return PairScores(scores=scores, missing=miss, policy=missing)


# ----------------------------------------------------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------------------------------------------------


def _check_scores_labels(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(scores, "detach"):
        scores = scores.detach().cpu().numpy()
    if hasattr(labels, "detach"):
        labels = labels.detach().cpu().numpy()
    s = np.asarray(scores, dtype=np.float64)
    y_raw = np.asarray(labels)
    if s.ndim != 1:
        raise InputError(f"scores: expected shape (P,), got {s.shape}")
    if y_raw.shape != s.shape:
        raise InputError(f"labels: expected shape {s.shape} like scores, got {y_raw.shape}")
    if y_raw.dtype != bool and y_raw.size and not np.isin(y_raw, (0, 1)).all():
        raise InputError("labels: expected booleans (or 0/1), got other values")
    y = y_raw.astype(bool)
    if s.size == 0:
        raise InputError("scores: expected at least one pair, got none")
    if not np.all(np.isfinite(s)):
        raise InputError(
            f"scores: {int((~np.isfinite(s)).sum())} non-finite value(s); drop pairs with missing embeddings "
            "(pair_scores(..., missing='nan').missing) or fill them (missing='min')"
        )
    return s, y


def _candidate_threshold(u: np.ndarray, c: int) -> float:
    """Threshold that rejects the ``c`` lowest unique scores ``u[:c]`` and accepts the rest."""
    m = len(u)
    pad = float(u[-1] - u[0]) / (m - 1) if m > 1 else 1.0
    if c == 0:
        return float(u[0] - pad)
    if c == m:
        return float(u[-1] + pad)
    lo, hi = float(u[c - 1]), float(u[c])
    t = lo + (hi - lo) / 2.0
    return t if lo <= t < hi else lo  # adjacent floats: fall back to the lower one (still "lo rejected, hi accepted")


def best_threshold(scores: Any, labels: Any) -> tuple[float, float]:
    """The accuracy-maximising threshold over all candidate thresholds, in ``O(P log P)``.

    Candidates are the midpoints of the sorted unique scores plus one below the minimum and one above the maximum;
    a pair is predicted same iff ``score > threshold``; ties between candidates go to the lowest threshold.

    Args:
        scores: ``(P,)`` similarities.
        labels: ``(P,)`` bool, ``True`` = same person.

    Returns:
        ``(threshold, accuracy)`` on these pairs.

    """
    s, y = _check_scores_labels(scores, labels)
    u, inv = np.unique(s, return_inverse=True)  # sorted unique scores
    pos = np.bincount(inv[y], minlength=len(u))
    neg = np.bincount(inv[~y], minlength=len(u))
    # rejecting the c lowest unique scores (c = 0..m): correct = true negatives + true positives
    cum_pos = np.concatenate(([0], np.cumsum(pos)))
    cum_neg = np.concatenate(([0], np.cumsum(neg)))
    correct = cum_neg + (int(y.sum()) - cum_pos)
    c = int(np.argmax(correct))  # first maximum = lowest threshold
    return _candidate_threshold(u, c), float(correct[c]) / len(s)


def roc_auc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve: the Mann-Whitney U statistic ``P(s+ > s-) + 0.5 P(s+ = s-)``.

    Computed from average ranks in ``O(P log P)``; equals ``sklearn.metrics.roc_auc_score``. Kept rather than
    torchmetrics' ``binary_auroc``, which agrees to ~1e-7 only (it builds the ROC curve in float32 from integer
    counts) and treats scores outside [0, 1] as logits (a sigmoid that merges large scores into ties).

    Raises:
        InputError: when there are no matched or no mismatched pairs.

    """
    s, y = _check_scores_labels(scores, labels)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise InputError(f"AUC needs both classes, got {n_pos} matched and {n_neg} mismatched pairs")
    _, inv, counts = np.unique(s, return_inverse=True, return_counts=True)
    start = np.concatenate(([0], np.cumsum(counts)[:-1]))  # 0-based first rank of each unique value
    avg_rank = start + (counts + 1) / 2.0  # 1-based average rank of tied values
    rank_sum = float(avg_rank[inv][y].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def tar_at_far(scores: Any, labels: Any, far: float) -> tuple[float, float, float]:
    """True accept rate at a target false accept rate, on all pairs (no folds).

    The threshold is the ``(k+1)``-th largest mismatched score with ``k = floor(far * n_mismatched)``, so at most
    ``k`` mismatched pairs score above it (fewer with ties). On LFW's 3,000 mismatched pairs, FAR=1e-3 rests on the
    3 highest impostor scores: a noisy figure.

    Args:
        scores: ``(P,)`` similarities.
        labels: ``(P,)`` bool.
        far: target false accept rate in ``(0, 1)``.

    Returns:
        ``(tar, threshold, far_achieved)``.

    """
    s, y = _check_scores_labels(scores, labels)
    if not 0.0 < far < 1.0:
        raise InputError(f"far: expected a rate in (0, 1), got {far}")
    neg = np.sort(s[~y])[::-1]
    if len(neg) == 0 or not y.any():
        raise InputError(f"TAR@FAR needs both classes, got {int(y.sum())} matched and {len(neg)} mismatched pairs")
    k = int(math.floor(far * len(neg) + 1e-9))
    t = float(neg[k]) if k < len(neg) else float(np.nextafter(s.min(), -np.inf))
    return float((s[y] > t).mean()), t, float((s[~y] > t).mean())


#: False accept rates at which :func:`ten_fold_verification` reports a threshold (keys of ``far_thresholds``).
FAR_LEVELS: tuple[float, ...] = (1e-2, 1e-3)


def far_key(far: float) -> str:
    """The key of a FAR level in ``far_thresholds`` and ``thresholds.json``: ``1e-2`` -> ``"1e-02"``."""
    return f"{far:.0e}"


@dataclass
class VerificationResult:
    """Result of :func:`ten_fold_verification`.

    Attributes:
        fold_accuracies: test accuracy of each fold, at the threshold fitted on the other folds.
        fold_thresholds: the threshold fitted for each fold (on the other folds).
        mean_accuracy: mean of ``fold_accuracies``.
        std_accuracy: **population** standard deviation (``ddof=0``) of ``fold_accuracies``.
        mean_threshold: mean of ``fold_thresholds``.
        auc: ROC AUC over all pairs (Mann-Whitney, ties count 0.5).
        best_threshold: accuracy-maximising threshold fitted on all pairs: the LFW-calibrated verification
            threshold (predict same iff ``score > best_threshold``).
        best_threshold_accuracy: accuracy on all pairs at ``best_threshold`` (an optimistic, training figure).
        n_pairs: number of pairs.
        n_matched: number of matched (same-person) pairs.
        n_mismatched: number of mismatched pairs.
        n_folds: number of folds.
        n_missing: pairs whose score was filled in for a missing embedding (as passed by the caller).
        far_target: the FAR of ``tar_at_far`` (``None`` when not computed).
        tar_at_far: TAR at ``far_target`` over all pairs.
        tar_threshold: threshold giving ``tar_at_far``.
        far_achieved: the FAR actually obtained at ``tar_threshold``.
        far_thresholds: ``{"1e-02": t, "1e-03": t}``: the threshold at each FAR of :data:`FAR_LEVELS` on the pooled
            scores of all folds (the ``(k+1)``-th highest mismatched score, see :func:`tar_at_far`).
        std_ddof: the ``ddof`` of ``std_accuracy`` (always 0).

    """

    fold_accuracies: list[float]
    fold_thresholds: list[float]
    mean_accuracy: float
    std_accuracy: float
    mean_threshold: float
    auc: float
    best_threshold: float
    best_threshold_accuracy: float
    n_pairs: int
    n_matched: int
    n_mismatched: int
    n_folds: int
    n_missing: int = 0
    far_target: float | None = None
    tar_at_far: float | None = None
    tar_threshold: float | None = None
    far_achieved: float | None = None
    far_thresholds: dict[str, float] = field(default_factory=dict)
    std_ddof: int = field(default=0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (plain Python floats, ints, lists, dicts and ``None``)."""
        return {k: (list(map(float, v)) if isinstance(v, list) else v) for k, v in asdict(self).items()}

    def summary(self) -> str:
        """One line, e.g. ``"accuracy 0.9950 ± 0.0030 (population std, 10 folds), AUC 0.9990, threshold 0.4123"``."""
        text = (
            f"accuracy {self.mean_accuracy:.4f} ± {self.std_accuracy:.4f} (population std, {self.n_folds} folds), "
            f"AUC {self.auc:.4f}, threshold {self.best_threshold:.4f}"
        )
        if self.tar_at_far is not None:
            text += f", TAR {self.tar_at_far:.4f} @ FAR {self.far_target:g}"
        if self.n_missing:
            text += f", {self.n_missing} pairs with missing embeddings"
        return text


def ten_fold_verification(
    scores: Any,
    labels: Any,
    folds: Any,
    *,
    far: float | None = 1e-3,
    n_missing: int = 0,
) -> VerificationResult:
    """The LFW unrestricted verification protocol (Huang et al. 2007): k-fold threshold cross-validation.

    For each fold ``k``, the accuracy-maximising threshold is chosen on the pairs of all other folds
    (:func:`best_threshold`) and the accuracy measured on fold ``k``. Reports the per-fold accuracies, their mean and
    population standard deviation, the mean threshold, the ROC AUC over all pairs, TAR at ``far`` over all pairs, and
    the best threshold fitted on all pairs (the verification threshold to use elsewhere). Higher score = more similar.

    Args:
        scores: ``(P,)`` similarities (e.g. cosine), finite.
        labels: ``(P,)`` bool (or 0/1), ``True`` = same person.
        folds: ``(P,)`` integer fold id of each pair (any integers; at least two distinct).
        far: target FAR for the TAR figure; ``None`` to skip it.
        n_missing: recorded as is in the result (from :attr:`PairScores.n_missing`).

    Returns:
        :class:`VerificationResult`.

    Raises:
        InputError: for mismatched shapes, non-finite scores, non-integer fold ids, fewer than two folds, or a class
            absent from the pairs.

    """
    s, y = _check_scores_labels(scores, labels)
    if hasattr(folds, "detach"):
        folds = folds.detach().cpu().numpy()
    f = np.asarray(folds)
    if f.shape != s.shape:
        raise InputError(f"folds: expected shape {s.shape} like scores, got {f.shape}")
    if not np.issubdtype(f.dtype, np.integer):
        raise InputError(f"folds: expected integer fold ids, got dtype {f.dtype}")
    fold_ids = np.unique(f)
    if len(fold_ids) < 2:
        raise InputError(f"folds: expected at least two distinct folds, got {fold_ids.tolist()}")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise InputError(f"verification needs both classes, got {n_pos} matched and {n_neg} mismatched pairs")

    accs: list[float] = []
    thrs: list[float] = []
    for k in fold_ids:
        test = f == k
        t, _ = best_threshold(s[~test], y[~test])
        accs.append(float(((s[test] > t) == y[test]).mean()))
        thrs.append(t)
    acc_arr = np.asarray(accs)
    best_t, best_acc = best_threshold(s, y)
    result = VerificationResult(
        fold_accuracies=accs,
        fold_thresholds=thrs,
        mean_accuracy=float(acc_arr.mean()),
        std_accuracy=float(acc_arr.std(ddof=0)),
        mean_threshold=float(np.mean(thrs)),
        auc=roc_auc(s, y),
        best_threshold=best_t,
        best_threshold_accuracy=best_acc,
        n_pairs=len(s),
        n_matched=n_pos,
        n_mismatched=n_neg,
        n_folds=len(fold_ids),
        n_missing=int(n_missing),
    )
    if far is not None:
        tar, tar_t, far_got = tar_at_far(s, y, far)
        result.far_target, result.tar_at_far = float(far), tar
        result.tar_threshold, result.far_achieved = tar_t, far_got
    result.far_thresholds = {far_key(level): tar_at_far(s, y, level)[1] for level in FAR_LEVELS}
    logger.info("LFW verification: %s", result.summary())
    return result
