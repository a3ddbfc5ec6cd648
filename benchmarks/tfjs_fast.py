"""Interleaved A/B of the TF.js interpreter: the fast plan vs the plain node-by-node path, per human recognizer.

Usage: python benchmarks/tfjs_fast.py [--batches 2,12] [--repeat 9] [--threads 1] [--models a,b]
Both paths run on the same module and the same random crops, alternating call by call, so load on the machine hits
both alike; the ratio of the medians (fast / plain) is the number to read, absolute times are indicative only.
"""

from __future__ import annotations

import argparse
import logging
import platform
import time

import torch

from nullswap.recognizers import create_recognizer

log = logging.getLogger("benchmarks.tfjs_fast")
MODELS = "human-mobilefacenet,human-mobileface,human-faceres"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batches", default="2,12")
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--models", default=MODELS)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    log.info("host: %s, torch %s, threads %d, repeat %d (interleaved)", platform.machine(), torch.__version__,
             args.threads, args.repeat)
    log.info("%-22s %5s %11s %11s %8s %12s", "recognizer", "batch", "plain ms", "fast ms", "ratio", "max|diff|")
    for name in args.models.split(","):
        m = create_recognizer(name)
        for b in (int(v) for v in args.batches.split(",")):
            x = torch.rand(b, 3, *m.input_size)
            times: dict[bool, list[float]] = {False: [], True: []}
            with torch.inference_mode():
                outs = {}
                for fast in (False, True):  # warm-up, and the outputs to compare
                    m.net.fast = fast
                    outs[fast] = m.embed(x)
                for _ in range(args.repeat):
                    for fast in (False, True):
                        m.net.fast = fast
                        t0 = time.perf_counter()
                        m.embed(x)
                        times[fast].append(time.perf_counter() - t0)
            med = {k: sorted(v)[len(v) // 2] * 1000 for k, v in times.items()}
            diff = float((outs[False] - outs[True]).abs().max())
            log.info("%-22s %5d %11.1f %11.1f %8.3f %12.2e", name, b, med[False], med[True], med[True] / med[False],
                     diff)
        m.net.fast = True


if __name__ == "__main__":
    main()
