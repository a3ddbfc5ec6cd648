"""Dynamic task weighting of ID-Guard (id-guard.txt, Sec. III-C): MGDA min-norm (S-I) and KPI x prior (S-II).

* **S-I** follows Sener & Koltun (ref. [27]) / MGDA (ref. [28]): the weights ``lambda`` are the convex combination of
  the task gradients with minimum norm, ``min_{lambda in simplex} || sum_k lambda_k g_k ||_2``. For two tasks the
  solution has the closed form ``lambda_1 = clip(<g_2 - g_1, g_2> / ||g_1 - g_2||^2, 0, 1)``; for more tasks the
  Frank-Wolfe solver of Sener & Koltun is used (:func:`min_norm_weights`).
* **S-II** (Eq. 10-11): ``lambda_k^t = alpha_k * beta_k^t`` with ``beta_k^t = -(1 - K_k^t) log K_k^t`` where ``K_k`` is
  the KPI of task ``k`` (Eq. 11), see :func:`kpi_weights`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from nullswap.errors import InputError

log = logging.getLogger(__name__)


def _min_norm_pair(g11: float, g12: float, g22: float) -> tuple[float, float]:
    """Closed-form min-norm point of the segment between two vectors from their Gram entries.

    Returns ``(gamma, cost)``: ``gamma * v1 + (1 - gamma) * v2`` has the minimum norm, ``cost`` its squared norm.
    """
    if g12 >= g11:  # v1 is the min-norm point
        return 1.0, g11
    if g12 >= g22:  # v2 is
        return 0.0, g22
    denom = g11 + g22 - 2 * g12
    gamma = (g22 - g12) / denom if denom > 0 else 0.5
    return gamma, g22 + gamma * (g12 - g22)


def min_norm_weights(grads: Sequence[torch.Tensor], max_iter: int = 250, tol: float = 1e-6) -> torch.Tensor:
    """MGDA-UB min-norm weights (Sener & Koltun 2018, Alg. 2) used as ID-Guard's strategy S-I (Sec. III-C).

    Solves ``min_{lambda >= 0, sum lambda = 1} || sum_k lambda_k g_k ||_2^2`` exactly for two tasks (closed form) and
    with Frank-Wolfe iterations for more.

    Args:
        grads: one gradient tensor per task (any shape; flattened).
        max_iter: Frank-Wolfe iterations (``K > 2`` tasks).
        tol: stop when the step changes ``lambda`` by less than this.

    Returns:
        ``(K,)`` float64 weights on the simplex (CPU).

    Raises:
        InputError: no gradients, or gradients of different sizes.
    """
    if len(grads) == 0:
        raise InputError("grads: expected at least one task gradient, got none")
    flat = [g.detach().reshape(-1).double() for g in grads]
    if len({f.numel() for f in flat}) != 1:
        raise InputError(f"grads: expected gradients of one size, got sizes {[f.numel() for f in flat]}")
    k = len(flat)
    if k == 1:
        return torch.ones(1, dtype=torch.float64)
    G = torch.stack(flat)
    gram = (G @ G.T).cpu()
    if k == 2:
        gamma, _ = _min_norm_pair(float(gram[0, 0]), float(gram[0, 1]), float(gram[1, 1]))
        return torch.tensor([gamma, 1.0 - gamma], dtype=torch.float64)
    # Choice (Sener & Koltun's solver): start at the best pair, then Frank-Wolfe towards the steepest vertex.
    best, sol = float("inf"), torch.full((k,), 1.0 / k, dtype=torch.float64)
    for i in range(k):
        for j in range(i + 1, k):
            gamma, cost = _min_norm_pair(float(gram[i, i]), float(gram[i, j]), float(gram[j, j]))
            if cost < best:
                best = cost
                sol = torch.zeros(k, dtype=torch.float64)
                sol[i], sol[j] = gamma, 1.0 - gamma
    for _ in range(max_iter):
        grad_dir = gram @ sol
        t = int(torch.argmin(grad_dir))
        v1v1 = float(sol @ gram @ sol)
        v1v2 = float(sol @ gram[:, t])
        v2v2 = float(gram[t, t])
        gamma, _ = _min_norm_pair(v1v1, v1v2, v2v2)
        new = gamma * sol
        new[t] += 1.0 - gamma
        if float((new - sol).abs().sum()) < tol:
            sol = new
            break
        sol = new
    return sol


def kpi_weights(kpi: Sequence[float] | torch.Tensor, prior: Sequence[float] | torch.Tensor,
                eps: float = 1e-6) -> torch.Tensor:
    """ID-Guard strategy S-II weights, Eq. 10-11: ``lambda_k = alpha_k * (-(1 - K_k) log K_k)``.

    Args:
        kpi: ``K_k`` per task, the attack-performance indicator (ID-Guard uses the L2 distance; higher = easier task).
            Choice: clamped to ``[eps, 1 - eps]`` so that ``beta`` stays finite and positive (the paper's L2 KPIs lie
            in (0, 1) on its [-1, 1] scale).
        prior: ``alpha_k = 10^n`` order-of-magnitude prior per task.
        eps: clamp margin.

    Returns:
        ``(K,)`` float64 weights (not normalised, as Eq. 10).

    Raises:
        InputError: lengths differ or a prior is not positive.
    """
    k = torch.as_tensor(kpi, dtype=torch.float64).reshape(-1)
    a = torch.as_tensor(prior, dtype=torch.float64).reshape(-1)
    if k.numel() != a.numel():
        raise InputError(f"kpi/prior: expected one prior per task ({k.numel()}), got {a.numel()}")
    if (a <= 0).any():
        raise InputError(f"prior: expected positive alpha_k, got {a.tolist()}")
    kc = k.clamp(eps, 1 - eps)
    return a * (-(1 - kc) * torch.log(kc))


__all__ = ["kpi_weights", "min_norm_weights"]
