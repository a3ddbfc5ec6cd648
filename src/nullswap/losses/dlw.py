"""Dynamic Loss Weighting (DLW), nullswap.txt Sec. 3.3, Eqs. (2)-(7), and the Table 5 ablation strategies.

DLW weights ``c`` identity losses (one per face recognizer) from their recent history:

* Eq. (6): ``sigma_i^2(t_b)``, the population variance (``1/k``) of the last ``k`` values of ``L_i``;
* Eq. (7): ``Delta_i = max((L_i(t_b-1) - L_i(t_b)) / (L_i(t_b-1) + eps_p), -1)``, the relative progress;
* Eq. (5): ``beta(t_e) = min(beta_init + gamma * min(t_e, t_e*), beta*)``;
* Eq. (4): ``w_i = max(1 / max(alpha * sigma_i^2 + beta(t_e) * (1 + Delta_i), eps_d), eps_w)``;
* Eq. (3): ``w^_i = c * w_i / sum_j w_j`` (the weights sum to ``c``);
* Eq. (2): ``L_id = sum_i w^_i * L_i``.

The weights are computed from detached loss values (plain floats) and applied to the current, differentiable losses,
so no gradient flows through the weights. The history is part of :meth:`DynamicLossWeighting.state_dict` (JSON), so a
resumed run computes exactly the weights an uninterrupted one would.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, Literal

import torch

from nullswap.errors import InputError

log = logging.getLogger(__name__)

Strategy = Literal["dlw", "average", "single"]


def _num(v: object, name: str, *, positive: bool = False, nonneg: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise InputError(f"{name}: expected a finite number, got {v!r}")
    if positive and v <= 0:
        raise InputError(f"{name}: expected a number > 0, got {v!r}")
    if nonneg and v < 0:
        raise InputError(f"{name}: expected a number >= 0, got {v!r}")
    return float(v)


class DynamicLossWeighting:
    """Dynamic Loss Weighting of Sec. 3.3 (Eqs. 2-7).

    Args:
        num_losses: ``c``, the number of losses (recognizers).
        alpha: Eq. 4 regularisation factor on the variance (paper: 3).
        beta_init: Eq. 5 initial beta (paper: 0.5).
        beta_max: Eq. 5 ``beta*`` (paper: 2).
        gamma: Eq. 5 per-epoch increment (paper: 0.1).
        k: Eq. 6 window length (paper: 30).
        eps_d: Eq. 4 denominator floor (paper: 1e-6).
        eps_w: Eq. 4 weight floor (paper: 1e-6).
        eps_p: Eq. 7 denominator epsilon. Choice: the paper does not give it; defaults to ``eps_d``.
        te_max: Eq. 5 ``t_e*``. Choice: the paper does not give it; defaults to ``(beta* - beta_init) / gamma``
            (15 epochs with the paper's values), the epoch at which beta reaches ``beta*`` by itself, so both caps
            agree.

    Choices where the paper is silent:

    * While fewer than ``k`` values exist (the first ``k - 1`` iterations), Eq. 6 is taken over the available history
      (population variance ``1/n`` of ``n < k`` values; 0 for a single value).
    * At the first iteration there is no ``L_i(t_b - 1)``: ``Delta_i = 0``.
    * ``t_b`` counts calls to :meth:`update` (one per optimisation iteration, or per micro-batch with gradient
      accumulation); it does not reset at epoch boundaries (the window slides across epochs).
    """

    def __init__(
        self,
        num_losses: int,
        alpha: float = 3.0,
        beta_init: float = 0.5,
        beta_max: float = 2.0,
        gamma: float = 0.1,
        k: int = 30,
        eps_d: float = 1e-6,
        eps_w: float = 1e-6,
        eps_p: float | None = None,
        te_max: float | None = None,
    ) -> None:
        if isinstance(num_losses, bool) or not isinstance(num_losses, int) or num_losses < 1:
            raise InputError(f"num_losses: expected an int >= 1, got {num_losses!r}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InputError(f"k: expected an int >= 1, got {k!r}")
        self.num_losses = num_losses
        self.alpha = _num(alpha, "alpha", nonneg=True)
        self.beta_init = _num(beta_init, "beta_init", nonneg=True)
        self.beta_max = _num(beta_max, "beta_max", nonneg=True)
        self.gamma = _num(gamma, "gamma", nonneg=True)
        self.k = k
        self.eps_d = _num(eps_d, "eps_d", positive=True)
        self.eps_w = _num(eps_w, "eps_w", positive=True)
        self.eps_p = self.eps_d if eps_p is None else _num(eps_p, "eps_p", nonneg=True)
        if te_max is None:
            te_max = (self.beta_max - self.beta_init) / self.gamma if self.gamma > 0 else 0.0
        self.te_max = _num(te_max, "te_max", nonneg=True)
        #: last ``max(k, 2)`` loss vectors, oldest first (``history[-1]`` is ``L(t_b)`` after :meth:`update`).
        self.history: list[list[float]] = []
        #: number of :meth:`update` calls so far (``t_b``).
        self.step = 0
        self.last_weights: list[float] = [1.0] * num_losses

    # --- the equations --------------------------------------------------------------------------------------------

    def beta(self, epoch: float) -> float:
        """Eq. 5: ``beta(t_e) = min(beta_init + gamma * min(t_e, t_e*), beta*)``."""
        return min(self.beta_init + self.gamma * min(float(epoch), self.te_max), self.beta_max)

    def variances(self) -> list[float]:
        """Eq. 6: population variance of each loss over the last ``k`` values (fewer while the history is short)."""
        window = self.history[-self.k :]
        n = len(window)
        if n == 0:
            return [0.0] * self.num_losses
        out = []
        for i in range(self.num_losses):
            vals = [row[i] for row in window]
            mean = sum(vals) / n
            out.append(sum((v - mean) ** 2 for v in vals) / n)
        return out

    def progress(self) -> list[float]:
        """Eq. 7: ``Delta_i = max((L_i(t_b-1) - L_i(t_b)) / (L_i(t_b-1) + eps_p), -1)`` (0 without a previous value)."""
        if len(self.history) < 2:
            return [0.0] * self.num_losses
        prev, cur = self.history[-2], self.history[-1]
        out = []
        for p, c in zip(prev, cur, strict=True):
            den = p + self.eps_p
            d = (p - c) / den if den != 0 else 0.0
            out.append(max(d, -1.0))
        return out

    def raw_weights(self, epoch: float) -> list[float]:
        """Eq. 4: ``w_i = max(1 / max(alpha * sigma_i^2 + beta(t_e) * (1 + Delta_i), eps_d), eps_w)``."""
        b = self.beta(epoch)
        return [
            max(1.0 / max(self.alpha * s2 + b * (1.0 + d), self.eps_d), self.eps_w)
            for s2, d in zip(self.variances(), self.progress(), strict=True)
        ]

    def normalized_weights(self, epoch: float) -> list[float]:
        """Eq. 3: ``w^_i = c * w_i / sum_j w_j`` (sum to ``c``)."""
        w = self.raw_weights(epoch)
        total = sum(w)
        return [self.num_losses * wi / total for wi in w]

    # --- use ------------------------------------------------------------------------------------------------------

    def update(self, values: Sequence[float], epoch: float) -> list[float]:
        """Record the current loss values ``L_i(t_b)`` and return the normalised weights ``w^_i(t_e, t_b)``.

        Args:
            values: ``c`` finite floats (detached loss values of this iteration).
            epoch: current epoch ``t_e`` (0-based).

        Raises:
            InputError: wrong count or non-finite values.
        """
        vals = [float(v) for v in values]
        if len(vals) != self.num_losses:
            raise InputError(f"DLW values: expected {self.num_losses} losses, got {len(vals)}")
        if not all(math.isfinite(v) for v in vals):
            raise InputError(f"DLW values: expected finite losses, got {vals}")
        self.history.append(vals)
        del self.history[: max(0, len(self.history) - max(self.k, 2))]
        self.step += 1
        self.last_weights = self.normalized_weights(epoch)
        return list(self.last_weights)

    def __call__(self, losses: Sequence[torch.Tensor], epoch: float) -> tuple[torch.Tensor, list[float]]:
        """Eq. 2: ``L_id = sum_i w^_i * L_i`` with weights from the detached values of ``losses`` (updates state).

        Returns:
            ``(L_id, weights)``.
        """
        weights = self.update([float(v.detach()) for v in losses], epoch)
        total = sum(w * v for w, v in zip(weights, losses, strict=True))
        return total, weights  # type: ignore[return-value]

    # --- state ----------------------------------------------------------------------------------------------------

    def hparams(self) -> dict[str, Any]:
        """The constructor arguments."""
        return {"num_losses": self.num_losses, "alpha": self.alpha, "beta_init": self.beta_init,
                "beta_max": self.beta_max, "gamma": self.gamma, "k": self.k, "eps_d": self.eps_d,
                "eps_w": self.eps_w, "eps_p": self.eps_p, "te_max": self.te_max}

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: history, step, last weights and hyper-parameters."""
        return {"history": [list(r) for r in self.history], "step": self.step,
                "last_weights": list(self.last_weights), "hparams": self.hparams()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output.

        Raises:
            InputError: a history whose rows do not have ``c`` values.
        """
        hist = [[float(v) for v in row] for row in state.get("history", [])]
        if any(len(r) != self.num_losses for r in hist):
            raise InputError(f"DLW state: expected history rows of {self.num_losses} losses, got "
                             f"{sorted({len(r) for r in hist})}")
        hp = state.get("hparams")
        if hp and hp != self.hparams():
            log.warning("DLW state was saved with hyper-parameters %s, now %s; keeping the current ones", hp,
                        self.hparams())
        self.history = hist[-max(self.k, 2) :]
        self.step = int(state.get("step", len(hist)))
        self.last_weights = [float(v) for v in state.get("last_weights", [1.0] * self.num_losses)]


class IdentityLossAggregator:
    """Combines the per-recognizer identity losses (Table 5 ablation).

    Args:
        num_losses: ``c``.
        strategy: ``"dlw"`` (Eqs. 2-7), ``"average"`` or ``"single"``.
        index: the recognizer used by ``"single"``.
        **dlw_kwargs: :class:`DynamicLossWeighting` arguments (``"dlw"`` only).

    Choice: so that only the weighting differs between strategies and not the scale, ``"average"`` uses ``w^_i = 1``
    (Eq. 3 with equal ``w_i``: weights summing to ``c`` like DLW's), and ``"single"`` uses weight 1 on ``index`` and 0
    elsewhere.
    """

    def __init__(self, num_losses: int, strategy: Strategy = "dlw", index: int = 0, **dlw_kwargs: Any) -> None:
        if strategy not in ("dlw", "average", "single"):
            raise InputError(f"strategy: expected 'dlw', 'average' or 'single', got {strategy!r}")
        if isinstance(num_losses, bool) or not isinstance(num_losses, int) or num_losses < 1:
            raise InputError(f"num_losses: expected an int >= 1, got {num_losses!r}")
        if strategy == "single" and (isinstance(index, bool) or not isinstance(index, int)
                                     or not 0 <= index < num_losses):
            raise InputError(f"index: expected an int in [0, {num_losses - 1}], got {index!r}")
        self.num_losses = num_losses
        self.strategy = strategy
        self.index = index
        self.dlw = DynamicLossWeighting(num_losses, **dlw_kwargs) if strategy == "dlw" else None

    def weights(self, values: Sequence[float], epoch: float) -> list[float]:
        """Weights for this iteration (updates DLW's history)."""
        if self.dlw is not None:
            return self.dlw.update(values, epoch)
        if len(values) != self.num_losses:
            raise InputError(f"identity losses: expected {self.num_losses}, got {len(values)}")
        if self.strategy == "average":
            return [1.0] * self.num_losses
        return [1.0 if i == self.index else 0.0 for i in range(self.num_losses)]

    def __call__(self, losses: Sequence[torch.Tensor], epoch: float,
                 values: Sequence[float] | None = None) -> tuple[torch.Tensor, list[float]]:
        """``L_id = sum_i w^_i L_i`` (Eq. 2 for ``"dlw"``).

        Args:
            losses: the differentiable per-recognizer losses.
            epoch: current epoch.
            values: the loss values DLW records (default: ``losses`` detached); e.g. averaged across ranks.

        Returns:
            ``(L_id, weights)``.
        """
        vals = [float(v.detach()) for v in losses] if values is None else [float(v) for v in values]
        w = self.weights(vals, epoch)
        total = sum(wi * li for wi, li in zip(w, losses, strict=True))
        return total, w  # type: ignore[return-value]

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        out: dict[str, Any] = {"strategy": self.strategy, "index": self.index}
        if self.dlw is not None:
            out.update(self.dlw.state_dict())
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output.

        Raises:
            InputError: the state was saved with another strategy.
        """
        if state.get("strategy", self.strategy) != self.strategy:
            raise InputError(f"identity loss state: expected strategy {self.strategy!r}, got {state['strategy']!r}")
        if self.dlw is not None:
            self.dlw.load_state_dict(state)


__all__ = ["DynamicLossWeighting", "IdentityLossAggregator", "Strategy"]
