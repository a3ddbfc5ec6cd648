"""Interleaved A/B of the NullSwap generator at inference: the fused copy (batch norm folded, channels-last) vs plain.

Usage: python benchmarks/generator_inference.py [--checkpoint DIR ...] [--batches 1,6] [--repeat 15] [--threads 2]
Both run on the same crops, alternating call by call, so load on the machine hits both alike; the ratio of the
medians (fused / plain) is the number to read, absolute times are indicative only. Without ``--checkpoint`` the
packaged default model is measured.
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import time

import torch

from nullswap.protectors.base import create_protector
from nullswap.protectors.nullswap.networks import count_parameters

log = logging.getLogger("benchmarks.generator_inference")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoint", action="append", default=None, help="export folder(s); default: packaged model")
    ap.add_argument("--batches", default="1,6")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    log.info("host: %s, torch %s, threads %d, repeat %d (interleaved)", platform.machine(), torch.__version__,
             args.threads, args.repeat)
    log.info("%-34s %9s %5s %10s %10s %7s %10s", "checkpoint", "params", "batch", "plain ms", "fused ms", "ratio",
             "max|diff|")
    for ck in args.checkpoint or [None]:
        plain = create_protector("nullswap", checkpoint=ck, fuse=False, psnr_floor=None)
        fused = create_protector("nullswap", checkpoint=ck, fuse=True, psnr_floor=None)
        size = plain.input_size
        for b in (int(v) for v in args.batches.split(",")):
            x = torch.rand(b, 3, *size, generator=torch.Generator().manual_seed(b))
            times: dict[str, list[float]] = {"plain": [], "fused": []}
            out = {}
            for i in range(args.repeat + 2):
                for name, prot in (("plain", plain), ("fused", fused)):
                    t = time.perf_counter()
                    out[name] = prot.protect(x, generator=torch.Generator().manual_seed(0))
                    if i >= 2:  # two warm-up rounds
                        times[name].append(time.perf_counter() - t)
            mp, mf = (1000 * statistics.median(times[k]) for k in ("plain", "fused"))
            diff = float((out["plain"] - out["fused"]).abs().max())
            log.info("%-34s %9d %5d %10.1f %10.1f %7.2f %10.1e", (ck or "packaged")[-34:],
                     count_parameters(plain.generator), b, mp, mf, mf / mp, diff)


if __name__ == "__main__":
    main()
