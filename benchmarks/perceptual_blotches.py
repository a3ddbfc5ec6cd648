"""Does the perceptual term see low-frequency blotches? ST-LPIPS of equal-PSNR changes of different grain, per scale.

Usage: python benchmarks/perceptual_blotches.py [--data ../shared/data/celeba] [--n 24] [--checkpoint DIR]
    [--scales 1,2,4]

On ``--n`` validation crops of CelebA (the training configs' identity-disjoint split: 0.8/0.1/0.1, seed 0, MTCNN,
``protector-128``), every change is scaled to the PSNR of the NullSwap one pass (``--checkpoint``, default the
packaged model, raw: no guard) and scored with ST-LPIPS (the training objective's perceptual term), with both images
shown at each ``--scales`` factor (bicubic resize before ST-LPIPS, as a viewer of a larger face sees the change).
Changes: the model's own; white Gaussian noise; noise at 4-px and 8-px blobs (32x32 / 16x16 noise upsampled
bilinearly to 128); the white and 4-px ones on luminance only. The question (issue 12, MODEL_CARD.md "What limits
it"): whether the perceptual term penalises the mottled texture the cloak shows on large faces.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from _validation import validation_crops
from nullswap.metrics.perceptual import create_perceptual
from nullswap.protectors.base import create_protector

SHARED = Path(__file__).resolve().parents[2] / "shared"


def at_psnr(x: torch.Tensor, d: torch.Tensor, db: float) -> torch.Tensor:
    """``x + d`` with each image's ``d`` scaled to PSNR ``db`` (before the [0, 1] clamp)."""
    mse = d.pow(2).mean((1, 2, 3), keepdim=True)
    return (x + d * ((10 ** (-db / 10)) / mse).sqrt()).clamp(0, 1)


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    return float((10 * torch.log10(1 / (y - x).pow(2).mean((1, 2, 3)))).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED / "data" / "celeba"))
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--scales", default="1,2,4")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x = validation_crops(args.data, args.n)
    perceptual = create_perceptual("stlpips-alex")
    g = torch.Generator().manual_seed(1)
    n = x.shape[0]
    white = torch.randn(x.shape, generator=g)
    up = {"size": (128, 128), "mode": "bilinear", "align_corners": False}
    blob4 = F.interpolate(torch.randn(n, 3, 32, 32, generator=g), **up)
    blob8 = F.interpolate(torch.randn(n, 3, 16, 16, generator=g), **up)
    prot = create_protector("nullswap", checkpoint=args.checkpoint, psnr_floor=None)
    scales = [float(s) for s in args.scales.split(",")]
    with torch.no_grad():
        y = prot.protect(x, generator=torch.Generator().manual_seed(0))
        db = psnr(x, y)
        rows = {"model (one pass)": y, "white noise": at_psnr(x, white, db), "4-px blobs": at_psnr(x, blob4, db),
                "8-px blobs": at_psnr(x, blob8, db), "white, luminance": at_psnr(x, white[:, :1].expand_as(x), db),
                "4-px blobs, luminance": at_psnr(x, blob4[:, :1].expand_as(x), db)}
        print(f"{n} CelebA validation crops (128 px); every change at the model's {db:.2f} dB; ST-LPIPS at display "
              f"scale {' / '.join(f'{s:g}x' for s in scales)}")
        print(f"| change | PSNR dB | {' | '.join(f'ST-LPIPS {s:g}x' for s in scales)} |")
        print("|---|---|" + "---|" * len(scales))
        for name, yy in rows.items():
            vals = []
            for s in scales:
                a, b = x, yy
                if s != 1:
                    kw = {"scale_factor": s, "mode": "bicubic", "align_corners": False, "antialias": s < 1}
                    a, b = F.interpolate(a, **kw).clamp(0, 1), F.interpolate(b, **kw).clamp(0, 1)
                vals.append(float(perceptual(a, b).mean()))
            print(f"| {name} | {psnr(x, yy):.2f} | {' | '.join(f'{v:.4f}' for v in vals)} |")


if __name__ == "__main__":
    main()
