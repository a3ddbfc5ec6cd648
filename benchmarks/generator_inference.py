"""Interleaved comparison of the NullSwap one pass at inference: as loaded (plain), the fused copy (batch norm folded,
channels-last), the fused copy in bfloat16 (where the CPU has it natively) and onnxruntime (``backend="ort"``,
:mod:`nullswap.protectors.nullswap.ort_generator`).

Usage: python benchmarks/generator_inference.py [--checkpoint DIR ...] [--batches 1,6] [--repeat 15] [--threads 2]
All run on the same crops, alternating call by call, so load on the machine hits all alike; the ratios of the
medians to plain are the numbers to read, absolute times are indicative only. Without ``--checkpoint`` the
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
from nullswap.protectors.nullswap.inference import native_bf16
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
    variants = {"plain": {"fuse": False}, "fused": {}}
    if native_bf16():
        variants["fused bf16"] = {"precision": "bf16"}
    variants["ort"] = {"backend": "ort"}
    log.info("%-28s %8s %5s " + " ".join(["%11s"] * len(variants)) + " %s", "checkpoint", "params", "batch",
             *[f"{k} ms" for k in variants], "(ratio to plain; max|diff| to plain)")
    for ck in args.checkpoint or [None]:
        prots = {k: create_protector("nullswap", checkpoint=ck, psnr_floor=None, **kw) for k, kw in variants.items()}
        plain = prots["plain"]
        size = plain.input_size
        for b in (int(v) for v in args.batches.split(",")):
            x = torch.rand(b, 3, *size, generator=torch.Generator().manual_seed(b))
            times: dict[str, list[float]] = {k: [] for k in prots}
            out = {}
            for i in range(args.repeat + 2):
                for name, prot in prots.items():
                    t = time.perf_counter()
                    out[name] = prot.protect(x, generator=torch.Generator().manual_seed(0))
                    if i >= 2:  # two warm-up rounds
                        times[name].append(time.perf_counter() - t)
            med = {k: 1000 * statistics.median(v) for k, v in times.items()}
            cells = [f"{med[k]:.1f}" if k == "plain" else
                     f"{med[k]:.1f} ({med[k] / med['plain']:.2f}x; {float((out[k] - out['plain']).abs().max()):.0e})"
                     for k in prots]
            log.info("%-28s %8d %5d %s", (ck or "packaged")[-28:], count_parameters(plain.generator), b,
                     "  ".join(cells))


if __name__ == "__main__":
    main()
