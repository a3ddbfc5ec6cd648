"""The LFW face-verification protocol, independent of any model.

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

import logging
import math
import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from nullswap.errors import InputError, NullswapError

__all__ = [
    "LFWPair",
    "MissingEmbeddingError",
    "MissingPolicy",
    "PairScores",
    "PairsFileError",
    "VerificationResult",
    "best_threshold",
    "flatten_folds",
    "lfw_image_path",
    "pair_scores",
    "read_lfw_pairs",
    "roc_auc",
    "tar_at_far",
    "ten_fold_verification",
    "unique_images",
]

logger = logging.getLogger(__name__)

MissingPolicy = Literal["min", "worst", "nan", "raise"]
_POLICIES: tuple[str, ...] = ("min", "worst", "nan", "raise")
_BAD_NAME = re.compile(r"[/\\\x00]")


# ----------------------------------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------------------------------


class PairsFileError(NullswapError, ValueError):
    """A pairs file is malformed; ``line`` is the 1-based line number (0 when the problem is the file as a whole)."""

    def __init__(self, path: object, line: int, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        where = f"line {line}" if line > 0 else "whole file"
        super().__init__(f"malformed LFW pairs file {str(path)!r}, {where}: {reason}")


class MissingEmbeddingError(NullswapError, LookupError):
    """An image referenced by a pair has no embedding and the missing policy is ``"raise"``."""

    def __init__(self, keys: Sequence[Hashable]) -> None:
        self.keys = list(keys)
        shown = ", ".join(repr(k) for k in self.keys[:5]) + (", ..." if len(self.keys) > 5 else "")
        super().__init__(f"{len(self.keys)} image(s) referenced by the pairs have no embedding: {shown}")


# ----------------------------------------------------------------------------------------------------------------------
# pairs.txt
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LFWPair:
    """One verification pair of ``pairs.txt``.

    Attributes:
        name1: identity folder of the first image, e.g. ``"Abel_Pacheco"``.
        idx1: 1-based image number of the first image within its identity.
        name2: identity of the second image (equal to ``name1`` for a matched pair).
        idx2: image number of the second image.
        same: ``True`` for a matched pair (same person), ``False`` for a mismatched one.
        fold: 0-based fold index.
        line: 1-based line number in the pairs file (0 when built by hand).

    """

    name1: str
    idx1: int
    name2: str
    idx2: int
    same: bool
    fold: int = 0
    line: int = 0

    @property
    def keys(self) -> tuple[tuple[str, int], tuple[str, int]]:
        """The two images as ``(name, idx)`` keys, the default embedding keys of :func:`pair_scores`."""
        return (self.name1, self.idx1), (self.name2, self.idx2)

    def paths(self, root: str | Path) -> tuple[Path, Path]:
        """The two image paths under an LFW root (see :func:`lfw_image_path`)."""
        return lfw_image_path(root, self.name1, self.idx1), lfw_image_path(root, self.name2, self.idx2)


def lfw_image_path(root: str | Path, name: str, idx: int) -> Path:
    """Path of one LFW image: ``<root>/images/<name>/<name>_<idx:04d>.jpg``.

    Args:
        root: the LFW folder that holds ``images/`` (and ``meta/pairs.txt``).
        name: identity, e.g. ``"Abel_Pacheco"``.
        idx: 1-based image number.

    Raises:
        InputError: for a name that could escape the identity folder or a non-positive index.

    """
    if not name or _BAD_NAME.search(name) or name in (".", ".."):
        raise InputError(f"LFW identity name must be a plain folder name, got {name!r}")
    if isinstance(idx, bool) or not isinstance(idx, int | np.integer) or idx < 1:
        raise InputError(f"LFW image number must be a positive int, got {idx!r}")
    return Path(root) / "images" / name / f"{name}_{int(idx):04d}.jpg"


def _parse_index(tok: str, path: object, line: int, what: str) -> int:
    try:
        value = int(tok)
    except ValueError:
        raise PairsFileError(path, line, f"{what} must be an integer, got {tok!r}") from None
    if value < 1:
        raise PairsFileError(path, line, f"{what} must be >= 1, got {value}")
    return value


def _check_name(tok: str, path: object, line: int) -> str:
    if _BAD_NAME.search(tok) or tok in (".", ".."):
        raise PairsFileError(path, line, f"identity name must be a plain folder name, got {tok!r}")
    return tok


def read_lfw_pairs(pairs_txt: str | Path) -> list[list[LFWPair]]:
    """Read an LFW pairs file into folds of pairs.

    The format (Huang et al. 2007): a header ``"<n_folds> <n>"`` (``pairs.txt``: ``"10 300"``) or ``"<n>"`` (one
    fold, as in ``pairsDevTrain.txt`` / ``pairsDevTest.txt``), then per fold ``n`` matched lines ``"Name i j"``
    followed by ``n`` mismatched lines ``"Name1 i Name2 j"``, fields separated by whitespace. Blank lines are ignored.

    Args:
        pairs_txt: path of the pairs file.

    Returns:
        ``n_folds`` lists of ``2 n`` :class:`LFWPair` each, matched pairs first, in file order.

    Raises:
        PairsFileError: naming the line for a bad header, a wrong number of fields, a matched line where a mismatched
            one is due (or the reverse), a non-integer or non-positive image number, a mismatched pair naming the same
            person twice, too few pair lines, or extra lines after the last fold.
        FileNotFoundError: when the file does not exist.

    """
    path = Path(pairs_txt)
    text = path.read_text(encoding="utf-8")
    lines = [(i + 1, ln.split()) for i, ln in enumerate(text.splitlines())]
    lines = [(no, toks) for no, toks in lines if toks]
    if not lines:
        raise PairsFileError(path, 0, "the file is empty; expected a header '<n_folds> <pairs per class>'")

    head_no, head = lines[0]
    if len(head) not in (1, 2) or not all(t.isdigit() for t in head):
        raise PairsFileError(path, head_no, f"expected a header '<n_folds> <pairs per class>' or '<n>', got {head}")
    n_folds, per_class = (1, int(head[0])) if len(head) == 1 else (int(head[0]), int(head[1]))
    if n_folds < 1 or per_class < 1:
        raise PairsFileError(path, head_no, f"header numbers must be positive, got {' '.join(head)}")

    body = lines[1:]
    expected = n_folds * 2 * per_class
    if len(body) < expected:
        last = body[-1][0] if body else head_no
        raise PairsFileError(
            path,
            last,
            f"header promises {n_folds} fold(s) x {per_class} matched + {per_class} mismatched = {expected} pairs, "
            f"but the file ends after {len(body)}",
        )
    if len(body) > expected:
        extra_no, extra = body[expected]
        raise PairsFileError(path, extra_no, f"extra line after the {expected} pairs the header promises: {extra}")

    folds: list[list[LFWPair]] = []
    for k in range(n_folds):
        fold: list[LFWPair] = []
        for j in range(2 * per_class):
            no, toks = body[k * 2 * per_class + j]
            matched = j < per_class
            where = f"fold {k + 1}, {'matched' if matched else 'mismatched'} pair {j % per_class + 1} of {per_class}"
            if matched:
                if len(toks) != 3:
                    raise PairsFileError(path, no, f"expected a matched pair 'Name i j' ({where}), got {toks}")
                name = _check_name(toks[0], path, no)
                i1 = _parse_index(toks[1], path, no, "first image number")
                i2 = _parse_index(toks[2], path, no, "second image number")
                fold.append(LFWPair(name, i1, name, i2, True, k, no))
            else:
                if len(toks) != 4:
                    raise PairsFileError(
                        path, no, f"expected a mismatched pair 'Name1 i Name2 j' ({where}), got {toks}"
                    )
                n1 = _check_name(toks[0], path, no)
                n2 = _check_name(toks[2], path, no)
                if n1 == n2:
                    raise PairsFileError(path, no, f"mismatched pair names the same person twice ({where}): {n1!r}")
                i1 = _parse_index(toks[1], path, no, "first image number")
                i2 = _parse_index(toks[3], path, no, "second image number")
                fold.append(LFWPair(n1, i1, n2, i2, False, k, no))
        folds.append(fold)
    logger.debug("read %d fold(s) x %d pairs from %s", n_folds, 2 * per_class, path)
    return folds


def flatten_folds(folds: Sequence[Sequence[LFWPair]]) -> tuple[list[LFWPair], np.ndarray, np.ndarray]:
    """Flatten folds into the arrays :func:`ten_fold_verification` takes.

    Returns:
        ``(pairs, labels, fold_ids)``: the pairs in fold order, ``labels`` ``(P,)`` bool (``True`` = same person) and
        ``fold_ids`` ``(P,)`` int64 (the position of the pair's fold in ``folds``).

    """
    pairs = [p for fold in folds for p in fold]
    labels = np.fromiter((p.same for p in pairs), dtype=bool, count=len(pairs))
    fold_ids = np.repeat(np.arange(len(folds), dtype=np.int64), [len(f) for f in folds])
    return pairs, labels, fold_ids


def unique_images(pairs: Iterable[LFWPair] | Iterable[Iterable[LFWPair]]) -> list[tuple[str, int]]:
    """The distinct ``(name, idx)`` images referenced by pairs (or by folds of pairs), sorted.

    Embed each of these once, then score the pairs with :func:`pair_scores` (``pairs.txt``: 7,701 images).
    """
    seen: set[tuple[str, int]] = set()
    for item in pairs:
        for p in [item] if isinstance(item, LFWPair) else item:
            seen.update(p.keys)
    return sorted(seen)


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

    Computed from average ranks in ``O(P log P)``; equals ``sklearn.metrics.roc_auc_score``.

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
