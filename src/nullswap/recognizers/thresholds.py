"""LFW-calibrated verification thresholds of the offline recognizers (shipped with the package).

A pair of faces is "the same person" for a recognizer when the cosine similarity of their embeddings is above the
threshold. Three operating points per recognizer, all from ``nullswap recognizers verify --lfw`` on LFW's 6,000
``pairs.txt`` pairs (MTCNN landmarks, each model's own alignment template; see ``thresholds.json`` for when and how):

* ``"best"``: the accuracy-maximising threshold over all pairs (the "LFW-calibrated" threshold used so far);
* ``"far_1e-02"`` / ``"far_1e-03"``: the thresholds at a false accept rate of 1e-2 / 1e-3 on the 3,000 mismatched
  pairs (pooled scores of the ten folds). These are usually *higher* than the best-accuracy threshold (a stricter
  system), so dodging them is easier; protection success rates are reported at all three, so the reader sees how
  the verdict depends on the operating point.

A protected face whose similarity to its clean original (or to another clean photo of the same person) falls below
a threshold is no longer verified as that person by that recognizer at that operating point.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from nullswap.errors import InputError, UnknownModelError

#: Operating points stored per recognizer, in report order.
THRESHOLD_LEVELS: tuple[str, ...] = ("best", "far_1e-02", "far_1e-03")


@cache
def _table() -> dict[str, Any]:
    return json.loads(resources.files("nullswap.recognizers").joinpath("thresholds.json").read_text("utf-8"))


def _check_level(level: str) -> None:
    if level not in THRESHOLD_LEVELS:
        raise InputError(f"threshold level: expected one of {THRESHOLD_LEVELS}, got {level!r}")


def verification_thresholds(level: str = "best") -> dict[str, float]:
    """``{recognizer name: cosine threshold}`` at ``level`` for every recognizer measured at that level.

    Raises:
        InputError: unknown ``level``.
    """
    _check_level(level)
    out: dict[str, float] = {}
    for k, v in _table().items():
        if k.startswith("_"):
            continue
        if isinstance(v, dict):
            if level in v:
                out[k] = float(v[level])
        elif level == "best":  # a plain number is a best-accuracy threshold
            out[k] = float(v)
    return out


def verification_threshold(name: str, level: str = "best") -> float:
    """The LFW-calibrated threshold of recognizer ``name`` at ``level``.

    Raises:
        InputError: unknown ``level``.
        UnknownModelError: no threshold was measured for it (user-supplied weights: run
            ``nullswap recognizers verify --lfw`` to calibrate).
    """
    t = verification_thresholds(level)
    if name not in t:
        raise UnknownModelError("calibrated recognizer", name, list(t))
    return t[name]


def thresholds_provenance() -> str:
    """How the shipped thresholds were measured (command, data, date, machine)."""
    return str(_table().get("_provenance", ""))


__all__ = ["THRESHOLD_LEVELS", "thresholds_provenance", "verification_threshold", "verification_thresholds"]
