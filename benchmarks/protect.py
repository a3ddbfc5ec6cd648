"""End-to-end `nullswap protect` cost per 1-megapixel photo on CPU: nullswap (one pass) vs pgd (50 steps), and ratio.

Usage: python benchmarks/protect.py [--photo ../shared/data/photos/obama1.jpg] [--checkpoint DIR] [--threads N]
The photo is resized to 1 MP; each method runs detect + align + protect + paste-back (models built once, first call
excluded as warm-up); both are measured in the same run so the ratio is comparable.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from nullswap.faces.io import read_image
from nullswap.protection import PhotoProtector


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--photo", default=str(Path(__file__).resolve().parents[2] / "shared/data/photos/obama1.jpg"))
    ap.add_argument("--checkpoint", default=None, help="NullSwap checkpoint (default: the packaged one)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    img = read_image(args.photo).tensor
    h, w = img.shape[1:]
    s = (1_000_000 / (h * w)) ** 0.5
    img = torch.nn.functional.interpolate(img[None], size=(round(h * s), round(w * s)), mode="bilinear",
                                          antialias=True, align_corners=False)[0].clamp(0, 1)
    print(f"host: {platform.machine()}, torch {torch.__version__}, threads {args.threads}, "
          f"photo {Path(args.photo).name} resized to {img.shape[2]}x{img.shape[1]} "
          f"({img.shape[1] * img.shape[2] / 1e6:.2f} MP)")
    times = {}
    for method in ("nullswap", "pgd"):
        pp = PhotoProtector(method, checkpoint=args.checkpoint if method == "nullswap" else None, seed=0,
                            device="cpu")
        pp.protect_tensor(img)  # warm-up
        t = time.perf_counter()
        for _ in range(args.repeat):
            out = pp.protect_tensor(img)
        times[method] = (time.perf_counter() - t) / args.repeat
        print(f"{method:9s} ({pp.settings['strength']}): {times[method]:7.2f} s/photo, faces {len(out.faces)}")
    print(f"pgd / nullswap time ratio: {times['pgd'] / times['nullswap']:.1f}x")


if __name__ == "__main__":
    main()
