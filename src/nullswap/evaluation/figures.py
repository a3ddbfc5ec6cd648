"""Figures of an evaluation: a comparison grid and robustness curves (PNG)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image

from nullswap.evaluation.results import ResultSet

log = logging.getLogger(__name__)


def comparison_grid(clean: torch.Tensor, protected: dict[str, torch.Tensor], path: str | Path, n: int = 4,
                    amplify: float = 10.0) -> Path:
    """A grid of clean crops, protected crops and amplified perturbations.

    Rows: clean, then for each protector its protected crops and the perturbation amplified ``amplify`` times around
    mid-grey. Columns: the first ``n`` probes.
    """
    n = min(n, clean.shape[0])
    rows = [clean[:n]]
    for p in protected.values():
        rows.append(p[:n])
        rows.append(((p[:n] - clean[:n]) * amplify + 0.5).clamp(0, 1))
    grid = make_grid(torch.cat(rows), nrow=n, padding=2, pad_value=1.0)
    save_image(grid, str(path))
    return Path(path)


def robustness_curves(rs: ResultSet, path: str | Path, metric: str = "top1") -> Path | None:
    """One panel per perturbation: ``metric`` against level, a line per protector and recognizer.

    Returns:
        The written path, or ``None`` when there are no robustness records or matplotlib (the ``[eval]`` extra) is
        not installed (logged).
    """
    recs = [r for r in rs.records if r.protocol == "robustness" and r.metric == metric]
    if not recs:
        return None
    try:
        import matplotlib
    except ImportError:
        log.warning("robustness curves: expected matplotlib (the [eval] extra: pip install 'nullswap[eval]'), got "
                    "none installed; %s not written", path)
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    perts = list(dict.fromkeys(r.perturbation for r in recs))
    fig, axes = plt.subplots(1, len(perts), figsize=(3.2 * len(perts), 3.0), squeeze=False)
    for ax, pert in zip(axes[0], perts, strict=True):
        sub = [r for r in recs if r.perturbation == pert]
        for key in dict.fromkeys((r.protector, r.recognizer) for r in sub):
            pts = [r for r in sub if (r.protector, r.recognizer) == key]
            ax.plot([r.level for r in pts], [r.value for r in pts], marker="o", label=f"{key[0]} / {key[1]}")
        ax.set_title(pert)
        ax.set_xlabel("level")
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel(metric)
    axes[0][-1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


__all__ = ["comparison_grid", "robustness_curves"]
