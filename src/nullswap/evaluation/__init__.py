"""The evaluation harness: the papers' protocols for any protector (quality, identification, robustness, swap)."""

from nullswap.evaluation.harness import EvalSet, evaluate, load_eval_set
from nullswap.evaluation.results import ResultSet

__all__ = ["EvalSet", "ResultSet", "evaluate", "load_eval_set"]
