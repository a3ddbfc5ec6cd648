"""Quality of the shipped trained manipulators on held-out CelebA identities (numbers for docs/manipulators.md).

Usage::

    python benchmarks/manipulators.py [--data ../shared/data/celeba] [--n 200] [--threads 2]

Prints, on the identity-disjoint test split (``split_seed`` 0, identities never seen in training):

* ``surrogate-ae``: PSNR / SSIM of the reconstruction.
* ``swapper-celeba``: PSNR / SSIM of the self-swap (source == target), and for swaps with a source of another
  identity the mean cosine of the swap to the source and to the target, per recognizer (the training recognizer
  mobilefacenet-casia and unseen ones), plus the same cosines for the unswapped target as the reference.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from nullswap.datasets.faces import AlignedFaces, identity_disjoint_split, scan_faces
from nullswap.evaluation.harness import _swap_targets
from nullswap.manipulators import create_manipulator
from nullswap.metrics.quality import psnr, ssim
from nullswap.recognizers.ensemble import RecognizerEnsemble


def _batched(fn, *xs: torch.Tensor, bs: int = 16) -> torch.Tensor:
    return torch.cat([fn(*(x[i : i + bs] for x in xs)) for i in range(0, xs[0].shape[0], bs)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba")
    ap.add_argument("--n", type=int, default=200, help="held-out crops (spread over the test identities)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--recognizers", default="mobilefacenet-casia,dlib-resnet29,faceplugin-512,human-mobilefacenet")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    recs = identity_disjoint_split(scan_faces(args.data), (0.8, 0.1, 0.1), seed=0)["test"]
    step = max(1, len(recs) // args.n)
    recs = recs[::step][: args.n]
    faces = AlignedFaces(recs, template="protector-128")
    x = faces.tensor()
    labels = torch.as_tensor(faces.labels)
    print(f"data: {args.data} test split, {len(x)} crops of {len(set(labels.tolist()))} identities, protector-128")
    t0 = time.perf_counter()
    with torch.no_grad():
        ae = create_manipulator("surrogate-ae")
        y = _batched(ae, x)
        print(f"surrogate-ae: PSNR {psnr(y, x).mean():.2f} dB, SSIM {ssim(y, x).mean():.4f}")
        sw = create_manipulator("swapper-celeba")
        self_swap = _batched(sw.swap, x, x)
        print(f"swapper-celeba self-swap: PSNR {psnr(self_swap, x).mean():.2f} dB, "
              f"SSIM {ssim(self_swap, x).mean():.4f}")
        tgt = x[_swap_targets(labels, torch.arange(len(x)))]
        fake = _batched(sw.swap, tgt, x).clamp(0, 1)  # source x's identity onto another identity's target
        names = [r.strip() for r in args.recognizers.split(",")]
        ens = RecognizerEnsemble(names, source_template="protector-128")
        es, et, ef = (_embed(ens, z) for z in (x, tgt, fake))  # per recognizer (N, D)
        print("swaps with another identity's source (mean cosine):")
        print(f"{'recognizer':24s} {'swap-source':>12s} {'swap-target':>12s} {'target-source':>14s}")
        for k, n in enumerate(names):
            s_src = (ef[k] * es[k]).sum(1).mean()
            s_tgt = (ef[k] * et[k]).sum(1).mean()
            ref = (et[k] * es[k]).sum(1).mean()
            print(f"{n:24s} {s_src:12.4f} {s_tgt:12.4f} {ref:14.4f}")
    print(f"seconds: {time.perf_counter() - t0:.1f} ({args.threads} threads, {torch.__version__}, CPU)")


def _embed(ens: RecognizerEnsemble, x: torch.Tensor) -> list[torch.Tensor]:
    outs = [ens(x[i : i + 16]) for i in range(0, len(x), 16)]
    return [torch.cat([o[k] for o in outs]) for k in range(len(ens.names))]


if __name__ == "__main__":
    main()
