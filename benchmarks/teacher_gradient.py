"""What the refinement steps add to the one pass, against the first step's gradient (issue 12, session 16).

Usage: python benchmarks/teacher_gradient.py --targets T-0.safetensors [--config CONFIG] [--n 32] [--threads 1]

The teacher targets (``nullswap teacher``: the packaged model's ``auto`` output on training crops) give ``T(x)``; the
one pass ``y0`` is recomputed with the teacher's seeds (batch of 8 targets in file order, seeded ``seed + first
index``, as ``make_teacher_targets`` ran them; the script prints how close ``auto`` recomputed on the first batch comes
to the stored ``T``). Printed per crop statistics of ``R = T - y0`` (the per-image part of the refinement): its
cosine with the first step's direction (minus the gradient of the training ensemble's mean cosine at ``y0``, colour
halved as ``auto``'s steps), with the blurred copy's, its size and cosine against the one pass's own change
``y0 - x``. Needs the config's training crops (``../shared/data/celeba``) and the targets file.
"""

from __future__ import annotations

import argparse
import statistics as st
import sys

import torch
import torch.nn.functional as F

from nullswap.datasets.teacher_targets import load_teacher_targets
from nullswap.protectors import create_protector
from nullswap.protectors.nullswap.protector import blurred_copy, shape_gradient
from nullswap.train import load_config
from nullswap.train.trainer import build_datasets


def main() -> None:
    """Run the probe and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", required=True, help="a teacher targets file made with the packaged model's auto")
    ap.add_argument("--config", default="configs/nullswap-cpu-wide-masked-fine-chroma.yaml")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t = load_teacher_targets(a.targets)
    d = t.teacher
    if d.get("checkpoint") != "packaged nullswap-default" or int(d.get("refine", 0)) < 1:
        sys.exit(f"expected targets of the packaged model with refinement steps, got {d}")
    cfg = load_config(a.config, [])
    seed = int(cfg.get("seed", 0))
    train = build_datasets(cfg)["train"]
    floor = float(d["psnr_floor"])
    one = create_protector("nullswap", psnr_floor=floor)
    auto = create_protector("nullswap", psnr_floor=floor, refine=int(d["refine"]),
                            refine_blur=float(d.get("refine_blur", 0.0)),
                            refine_chroma=float(d.get("refine_chroma", 1.0)))
    ens = auto._refine_ensemble(torch.device("cpu"))
    chroma = float(d.get("refine_chroma", 1.0))
    blur = float(d.get("refine_blur", 0.0)) or 1.0

    def cos(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.cosine_similarity(u.flatten(1), v.flatten(1), dim=1)

    rows: list[list[float]] = []
    for start in range(0, min(a.n, len(t)), 8):
        rows_i = list(range(start, min(start + 8, len(t), a.n)))
        idx = t.indices[rows_i].tolist()
        x = train.tensor(idx)
        y0 = one.protect(x, generator=torch.Generator().manual_seed(seed + idx[0]))
        target = (x + t.change(rows_i)).clamp(0, 1)
        if start == 0:
            ya = auto.protect(x, generator=torch.Generator().manual_seed(seed + idx[0]))
            print(f"teacher reproduced on the first batch: max |auto - T| = {float((ya - target).abs().max()):.2e}")
        with torch.no_grad():
            clean = [e.detach() for e in ens(x)]
        dirs = []
        for blurred in (False, True):
            y = y0.clone().requires_grad_(True)
            seen = blurred_copy(y, blur) if blurred else y
            sim = torch.stack([F.cosine_similarity(e, c, dim=1) for e, c in zip(ens(seen), clean, strict=True)])
            (g,) = torch.autograd.grad(sim.mean(0).sum(), y)
            dirs.append(-shape_gradient(g, chroma))
        r, d0 = target - y0, y0 - x
        stats = [cos(r, dirs[0]), cos(r, dirs[1]), cos(r, dirs[0] + dirs[1]), cos(d0, dirs[0]),
                 r.flatten(1).norm(dim=1) / d0.flatten(1).norm(dim=1), cos(r, d0)]
        rows += torch.stack(stats, 1).tolist()
    names = ["cos(R, first step)", "cos(R, blurred copy's step)", "cos(R, sum of both)", "cos(one pass change, step)",
             "|R| / |one pass change|", "cos(R, one pass change)"]
    print(f"{len(rows)} crops of {a.targets} (teacher: {d.get('checkpoint')}, refine {d.get('refine')})")
    for j, name in enumerate(names):
        v = [row[j] for row in rows]
        print(f"{name:30s} mean {st.mean(v):.3f}  median {st.median(v):.3f}  min {min(v):.3f}  max {max(v):.3f}")


if __name__ == "__main__":
    main()
