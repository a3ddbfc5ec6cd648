"""What a ``protected`` verdict says about the recognizers that are not verifiers, on held-out probes.

Usage: python benchmarks/verdict_coverage.py [--probes 200] [--split test] [--threads 2]

``nullswap protect`` calls a face ``protected`` when every verifier (:func:`nullswap.verdict.choose_verifiers`:
arcface-mbf and, unseen by NullSwap, human-mobilefacenet) has its cosine to the clean face below its LFW best-accuracy
threshold. This script runs the protector ``nullswap protect`` builds for ``auto``
(:class:`~nullswap.protection.PhotoProtector`: the packaged model's ``meta.auto`` recipe, one pass + refinement) and its
verification set on held-out crops and prints, among the probes the verifiers call protected, the share below threshold
on each other recognizer measured here, next to the share over all probes: how far the verdict's claim carries to a
recognizer it did not ask. Crops are the protector's 128-px crops (each recognizer aligns them to its own template), as
in ``benchmarks/refine_variants.py``, not whole photos.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from nullswap.protection import PhotoProtector
from nullswap.verdict import choose_verifiers
from refine_variants import MEASURED, probe_arguments, probe_setup


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    probe_arguments(ap)
    ap.set_defaults(probes=200, split="test", threads=2)
    args = ap.parse_args()
    x, ev, thr, clean = probe_setup(args)
    pp = PhotoProtector("auto", verify=False, device="cpu")  # what `nullswap protect` runs, without its verifier
    prot, seen = pp.protector, list(pp.seen or [])
    recipe = {k: pp.settings.get(k) for k in ("refine", "psnr_floor", "refine_blur", "refine_chroma")}
    verifiers = choose_verifiers(seen)
    t = time.time()
    y = torch.cat([prot.protect(x[i:i + 16], generator=torch.Generator().manual_seed(i)) for i in range(0, len(x), 16)])
    dt = (time.time() - t) / len(x)
    psnr = float((-10 * torch.log10((y - x).pow(2).mean((1, 2, 3)))).mean())
    with torch.no_grad():
        below = {n: F.cosine_similarity(e, c, dim=1) < thr[n] for n, e, c in zip(MEASURED, ev(y), clean, strict=True)}
    protected = torch.stack([below[v] for v in verifiers if v in below]).all(0)
    share = float(protected.float().mean()) * 100
    print(f"{len(x)} {args.split} probes, auto {recipe}: {psnr:.2f} dB, {dt:.2f} s/crop; verifiers {verifiers} "
          f"(seen: {seen}); verdict protected on {int(protected.sum())} ({share:.1f} %)")
    print("recognizer | seen | below threshold, all probes | below threshold, probes called protected")
    for n in MEASURED:
        role = "verifier" if n in verifiers else ("seen" if n in seen else "unseen")
        cond = float(below[n][protected].float().mean()) * 100 if bool(protected.any()) else float("nan")
        print(f"{n:20s} {role:8s} {float(below[n].float().mean()) * 100:5.1f} % {cond:5.1f} %")
    every = torch.stack(list(below.values())).all(0)
    print(f"below threshold on all {len(MEASURED)}: {float(every.float().mean()) * 100:.1f} % of probes")


if __name__ == "__main__":
    main()
