"""CPU forward time for a batch of 16 aligned faces and the parameter count of every offline recognizer.

Usage: python benchmarks/recognizers.py [--batch 16] [--repeat 5] [--models a,b]
Inputs are random crops of each model's own size (timing does not depend on content); weights are the real ones.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from nullswap.recognizers import create_recognizer, list_recognizers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--models", default=None)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = args.models.split(",") if args.models else list_recognizers(offline_only=True)
    print(f"host: {platform.machine()}, torch {torch.__version__}, threads {args.threads}, batch {args.batch}")
    print(f"{'recognizer':22s} {'params':>12s} {'input':>9s} {'ms/batch':>10s} {'ms/face':>8s}")
    for name in names:
        m = create_recognizer(name)
        n = sum(p.numel() for p in m.parameters()) + sum(b.numel() for b in m.buffers())
        x = torch.rand(args.batch, 3, *m.input_size)
        with torch.inference_mode():
            m(x)  # warm-up
            ts = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                m(x)
                ts.append(time.perf_counter() - t0)
        med = sorted(ts)[len(ts) // 2]
        print(f"{name:22s} {n:12,d} {m.input_size[0]:>4d}x{m.input_size[1]:<4d} {1000 * med:10.1f} "
              f"{1000 * med / args.batch:8.2f}")


if __name__ == "__main__":
    main()
