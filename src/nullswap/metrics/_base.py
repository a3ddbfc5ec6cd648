"""Shared helpers of the metric classes: a running mean over images and a running fraction of successes."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class _MeanMetric(Metric):
    """Mean of per-image values over every image seen (sum and count states, summed across processes)."""

    is_differentiable = False
    full_state_update = False

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def _accumulate(self, values: torch.Tensor) -> None:
        values = values.detach().reshape(-1)
        self.total += values.to(torch.float64).sum().to(self.total.device)
        self.count += values.numel()

    def compute(self) -> torch.Tensor:
        """Mean over all images accumulated so far (NaN before any update)."""
        if int(self.count) == 0:
            return torch.tensor(float("nan"), dtype=torch.float64)
        return self.total / self.count
