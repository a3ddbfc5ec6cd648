"""Moved to :mod:`nullswap.evaluation.perturbations`; this alias stays only for training runs started before the move.

A ``nullswap train`` process imports ``nullswap.robustness`` lazily at its first validation, so a run launched with
the old code needs this name while it lives. Delete the module once no such run is live; new code imports
:mod:`nullswap.evaluation.perturbations`.
"""

from nullswap.evaluation.perturbations import (  # noqa: F401
    PERTURBATIONS,
    Perturbation,
    apply_perturbation,
    get_perturbation,
    list_perturbations,
)
