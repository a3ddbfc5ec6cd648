"""CPU seconds per 256x256 protector crop for identity-targeted PGD (and FGSM) against dlib-resnet29 +
mobilefacenet-casia.

Usage: python benchmarks/attacks.py [--steps 50] [--eps 8/255] [--batches 1,8] [--threads N] [--random-weights]
Inputs are random 256x256 crops (timing does not depend on content). Real weights are used when available,
otherwise (or with --random-weights) random-weight recognizers of the same architectures.
"""

from __future__ import annotations

import argparse
import logging
import platform
import time
from fractions import Fraction

import torch

from nullswap.attacks import DEFAULT_RECOGNIZERS, fgsm, pgd
from nullswap.errors import WeightsError
from nullswap.recognizers import create_recognizer
from nullswap.recognizers.ensemble import RecognizerEnsemble


def _ensemble(random_weights: bool) -> tuple[RecognizerEnsemble, str]:
    if not random_weights:
        try:
            return RecognizerEnsemble(list(DEFAULT_RECOGNIZERS)), "real"
        except WeightsError as e:
            logging.warning("real weights unavailable (%s); using random weights", e)
    return RecognizerEnsemble([create_recognizer(n, pretrained=False) for n in DEFAULT_RECOGNIZERS]), "random"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--eps", default="8/255")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--random-weights", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    eps = float(Fraction(args.eps))
    ens, kind = _ensemble(args.random_weights)
    print(f"host: {platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"recognizers {'+'.join(ens.names)} ({kind} weights), eps {args.eps}")
    print(f"{'attack':10s} {'batch':>5s} {'s/batch':>9s} {'s/crop':>8s}")
    g = torch.Generator().manual_seed(0)
    for b in (int(v) for v in args.batches.split(",")):
        x = torch.rand(b, 3, 256, 256, generator=g)
        pgd(x[:1], ens, eps=eps, steps=1, generator=g)  # warm-up
        t0 = time.perf_counter()
        fgsm(x, ens, eps, generator=g)
        t_f = time.perf_counter() - t0
        t0 = time.perf_counter()
        pgd(x, ens, eps=eps, steps=args.steps, generator=g)
        t_p = time.perf_counter() - t0
        print(f"{'FGSM':10s} {b:5d} {t_f:9.2f} {t_f / b:8.3f}")
        print(f"{f'PGD-{args.steps}':10s} {b:5d} {t_p:9.2f} {t_p / b:8.3f}")


if __name__ == "__main__":
    main()
