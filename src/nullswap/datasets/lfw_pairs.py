"""The LFW ``pairs.txt`` file: its pairs, folds and images (the data side of :mod:`nullswap.metrics.verification`).

Reads the standard LFW ``pairs.txt`` of the "unrestricted" ten-fold protocol of Huang, Ramesh, Berg and
Learned-Miller, *Labeled Faces in the Wild: A Database for Studying Face Recognition in Unconstrained Environments*,
University of Massachusetts, Amherst, Technical Report 07-49, 2007 (LFW). Pure Python + numpy: no model, no torch.
:mod:`nullswap.verification` re-exports everything here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nullswap.errors import InputError, NullswapError

__all__ = [
    "LFWPair",
    "PairsFileError",
    "flatten_folds",
    "lfw_image_path",
    "read_lfw_pairs",
    "unique_images",
]

logger = logging.getLogger(__name__)

_BAD_NAME = re.compile(r"[/\\\x00]")


class PairsFileError(NullswapError, ValueError):
    """A pairs file is malformed; ``line`` is the 1-based line number (0 when the problem is the file as a whole)."""

    def __init__(self, path: object, line: int, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        where = f"line {line}" if line > 0 else "whole file"
        super().__init__(f"malformed LFW pairs file {str(path)!r}, {where}: {reason}")


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
