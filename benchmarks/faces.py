"""Time detect + align + paste-back per 1-megapixel photo on CPU.

Usage: python benchmarks/faces.py [--photos DIR] [--detector mtcnn|yunet] [--repeat N]
Reads ../shared/data/photos by default; every photo is resized to ~1 MP first so numbers are per megapixel.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from nullswap.faces import align_faces, create_detector, paste_back, read_image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--photos", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared/data/photos")
    ap.add_argument("--detector", default="mtcnn")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    if not args.photos.is_dir():
        raise SystemExit(f"no photos at {args.photos} (needs ../shared/data/photos or --photos DIR)")
    torch.set_num_threads(args.threads)
    det = create_detector(args.detector)
    imgs = []
    for p in sorted(args.photos.iterdir()):
        if p.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        t = read_image(p).tensor
        s = math.sqrt(1e6 / (t.shape[1] * t.shape[2]))
        imgs.append(F.interpolate(t[None], scale_factor=s, mode="bilinear", antialias=True)[0].clamp(0, 1))
    times = {"detect": [], "align": [], "paste": []}
    nfaces = 0
    for _ in range(args.repeat):
        for img in imgs:
            t0 = time.perf_counter()
            d = det.detect(img)[0]
            t1 = time.perf_counter()
            crops, M = align_faces(img, d.landmarks, "protector-256")
            t2 = time.perf_counter()
            paste_back(img, crops, M, "protector-256")
            t3 = time.perf_counter()
            times["detect"].append(t1 - t0)
            times["align"].append(t2 - t1)
            times["paste"].append(t3 - t2)
            nfaces += len(d)
    n = len(times["detect"])
    print(f"host: {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {args.threads}")
    print(f"{len(imgs)} photos resized to ~1.0 MP, {nfaces // args.repeat} faces, {args.repeat} repeats, "
          f"detector {args.detector}")
    for k, v in times.items():
        print(f"  {k:7s} {1000 * sum(v) / n:8.1f} ms/photo (median {1000 * sorted(v)[n // 2]:.1f})")
    total = sum(sum(v) for v in times.values()) / n
    print(f"  total   {1000 * total:8.1f} ms per 1-MP photo")


if __name__ == "__main__":
    main()
