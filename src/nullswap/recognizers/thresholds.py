"""LFW-calibrated verification thresholds of the offline recognizers (shipped with the package).

A pair of faces is "the same person" for a recognizer when the cosine similarity of their embeddings is at least the
threshold. The values are the best thresholds over LFW's 6,000 pairs (see ``thresholds.json`` for how they were
measured); a protected face whose similarity to its clean original falls below the threshold is no longer verified
as the same person by that recognizer.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from nullswap.errors import UnknownModelError


@cache
def verification_thresholds() -> dict[str, float]:
    """``{recognizer name: cosine threshold}`` for every recognizer with a measured threshold."""
    data = json.loads(resources.files("nullswap.recognizers").joinpath("thresholds.json").read_text("utf-8"))
    return {k: float(v) for k, v in data.items() if not k.startswith("_")}


def verification_threshold(name: str) -> float:
    """The LFW-calibrated threshold of recognizer ``name``.

    Raises:
        UnknownModelError: no threshold was measured for it (user-supplied weights: run
            ``nullswap recognizers verify --lfw`` to calibrate).
    """
    t = verification_thresholds()
    if name not in t:
        raise UnknownModelError("calibrated recognizer", name, list(t))
    return t[name]


__all__ = ["verification_threshold", "verification_thresholds"]
