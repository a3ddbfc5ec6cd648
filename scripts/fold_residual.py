"""Fold a residual factor into an exported NullSwap checkpoint (how the shipped models v6-v8 were made).

Usage: python scripts/fold_residual.py SRC_DIR FACTOR OUT_DIR [--keep-cap]

SRC_DIR is a NullSwap checkpoint folder (model.safetensors + config.json, e.g. a run's export); the folded model at
strength 1 computes SRC at strength FACTOR (nullswap.protectors.nullswap.folding). The output's meta records the factor;
the script prints the largest difference between the two on random crops as a check.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from nullswap.protectors.nullswap.checkpoint import load_nullswap, save_nullswap
from nullswap.protectors.nullswap.folding import fold_residual_factor


def main() -> None:
    """Parse the arguments, fold, save and print the check."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("factor", type=float)
    ap.add_argument("out", type=Path)
    ap.add_argument("--keep-cap", action="store_true", help="keep max_delta as trained")
    a = ap.parse_args()
    g, _, meta = load_nullswap(a.src)
    folded, cfg = fold_residual_factor(g, a.factor, keep_cap=a.keep_cap)
    heads = " and ".join(f"{n} weight and bias" for n in ("to_residual", "detail_out")[: len(folded.residual_heads())])
    note = f"the trained step's output residual ({heads}) multiplied by {a.factor:g}" + (
        ", max_delta kept at the trained model's (the per-pixel cap of the one pass's soft clamp and of the "
        "refinement steps unchanged)" if a.keep_cap else
        f" and max_delta too: this model at strength 1.0 computes the trained step at strength {a.factor:g}")
    meta = dict(meta) | {"residual_factor": {"factor": a.factor, "max_delta_kept": a.keep_cap, "note": note}}
    save_nullswap(a.out, folded, cfg, meta)
    src, _, _ = load_nullswap(a.src)
    out, _, _ = load_nullswap(a.out)
    x = torch.rand(4, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ya = src.eval()(x, generator=torch.Generator().manual_seed(0), perturbation_scale=a.factor)
        yb = out.eval()(x, generator=torch.Generator().manual_seed(0))
    print(json.dumps({"out": str(a.out), "factor": a.factor, "keep_cap": a.keep_cap, "max_delta": cfg.max_delta,
                      "max_abs_diff_vs_scaled": float((ya - yb).abs().max())}))


if __name__ == "__main__":
    main()
