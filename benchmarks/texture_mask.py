"""Can the one pass's change be moved out of smooth skin after the fact? A texture mask on the change, at equal PSNR.

Usage: python benchmarks/texture_mask.py [--data ../shared/data/celeba] [--n 48] [--checkpoint DIR] [--powers 0.5,1]

On ``--n`` CelebA validation crops (identity-disjoint split 0.8/0.1/0.1, seed 0, MTCNN, ``protector-128``) the
NullSwap one pass's change ``d`` (raw, no guard) is multiplied by ``m^p``, ``m`` = the clean crop's local luminance
standard deviation (7x7, ``nullswap.losses.masking.local_contrast``) over its per-crop median, clamped to [0.2, 4]
(smooth skin gets less, brows, hair and edges more: where the face's own texture masks a change), then scaled back to
the same per-crop L2 (PSNR). Printed per variant: PSNR, the RMS change on the smoother half of the pixels (1/255), and
per recognizer the mean cosine to the clean crop and the share below its LFW best-accuracy threshold (training
recognizers, then the unseen human-*). Also printed: the quantiles of that local contrast (the evidence for
``loss.masking``'s ``contrast`` default) and, for the one pass, the masked luminance term over the luminance MSE.
Question (issue 12): does the cloak survive being moved out of smooth skin without retraining?
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from _validation import validation_crops
from nullswap.losses.masking import local_contrast, luminance, masked_luma_loss
from nullswap.protectors.base import create_protector
from nullswap.recognizers.ensemble import RecognizerEnsemble
from nullswap.recognizers.thresholds import verification_threshold

SHARED = Path(__file__).resolve().parents[2] / "shared"
NAMES = ("arcface-mbf", "mobilefacenet-casia", "dlib-resnet29", "faceplugin-512", "human-mobilefacenet",
         "human-mobileface", "human-faceres")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED / "data" / "celeba"))
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--powers", default="0.5,1")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x = validation_crops(args.data, args.n)
    ens = RecognizerEnsemble(list(NAMES), source_template="protector-128").eval()
    thr = [verification_threshold(n) for n in NAMES]
    prot = create_protector("nullswap", checkpoint=args.checkpoint, psnr_floor=None)
    with torch.no_grad():
        clean = ens(x)
        y = prot.protect(x, generator=torch.Generator().manual_seed(0))
        d = y - x
        act = local_contrast(x, 7)
        med = act.flatten(1).median(1).values.view(-1, 1, 1, 1)
        smooth = (act <= med).float()
        rows = {"one pass as it is": y}
        for p in (float(v) for v in args.powers.split(",")):
            dm = d * ((act / med.clamp_min(1e-4)).clamp(0.2, 4.0) ** p)
            s = (d.pow(2).mean((1, 2, 3), keepdim=True) / dm.pow(2).mean((1, 2, 3), keepdim=True).clamp_min(1e-20))
            rows[f"texture mask, p = {p:g}"] = (x + dm * s.sqrt()).clamp(0, 1)
        q = torch.quantile(act.flatten(), torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9]))
        print("local luminance contrast (7x7 std, [0,1] units) quantiles 10/25/50/75/90 %: "
              + " / ".join(f"{float(v):.3f}" for v in q))
        dy = luminance(d)[:, 0]
        print("one pass: masked luminance term (loss.lambda_masked's, defaults) / luminance MSE = "
              f"{float(masked_luma_loss(x, y) / dy.pow(2).mean()):.3f}; on the smoother half of the pixels "
              f"{float((dy.pow(2) * smooth[:, 0]).sum() / dy.pow(2).sum()) * 100:.0f} % of the luminance change energy")
        print(f"{x.shape[0]} CelebA validation crops; cosine / share below threshold per recognizer")
        print("| change | PSNR dB | RMS on smooth half (/255) | " + " | ".join(NAMES) + " |")
        print("|---|---|---|" + "---|" * len(NAMES))
        for name, yy in rows.items():
            cos = [F.cosine_similarity(a, b, dim=1) for a, b in zip(clean, ens(yy), strict=True)]
            psnr = float((10 * torch.log10(1 / (yy - x).pow(2).mean((1, 2, 3)))).mean())
            rms = float(((yy - x).pow(2) * smooth).sum().div(smooth.sum() * 3).sqrt() * 255)
            cells = " | ".join(f"{float(c.mean()):.3f} / {float((c < t).float().mean()) * 100:.0f} %"
                               for c, t in zip(cos, thr, strict=True))
            print(f"| {name} | {psnr:.2f} | {rms:.2f} | {cells} |")


if __name__ == "__main__":
    main()
