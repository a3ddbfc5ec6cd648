"""How image-specific is the one-pass cloak? The generator's changes on held-out crops compared with their mean.

Usage: python benchmarks/universality.py [--probes 64] [--split val] [--threads 1] [--checkpoint DIR ...] [--png DIR]

For each checkpoint (default: the packaged model), the raw one pass (no guard) on ``--probes`` held-out crops (the
same crops and generator noise for every checkpoint, as ``benchmarks/refine_variants.py``): the changes ``d_i`` and
their mean ``m``. Printed:

* the mean pairwise cosine between different crops' changes (1 = the same pattern on every face);
* the share of the changes' energy in their mean, ``|m|^2 / mean_i |d_i|^2``, and its unbiased estimate
  (:func:`nullswap.losses.shared_change.shared_change_share`, what the training term ``loss.lambda_shared`` charges);
* protection, as the share of crops below each recognizer's LFW best-accuracy threshold (training recognizers, then
  the unseen human-models ones), for (a) the per-image changes and (b) the *universal* change ``m`` added to every
  crop, scaled per crop to the PSNR of that crop's own change: if (b) protects about as well as (a), the generator is
  a face-aligned universal perturbation and the image barely steers it; and (c) the rest ``d_i - m``, scaled the
  same way: what the cloak does without its shared part.

``--png DIR`` writes each checkpoint's mean change ``m``, 20x around grey and enlarged 3x
(``DIR/mean-change-<name>.png``): the drawing every face gets.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from nullswap.losses.shared_change import shared_change_share
from nullswap.protectors import create_protector

sys.path.insert(0, str(Path(__file__).resolve().parent))
from refine_variants import MEASURED, held_out_crops, measured_ensemble, probe_arguments  # noqa: E402 - same probes and recognizers


def _psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -10 * torch.log10((y - x).pow(2).mean((1, 2, 3)).clamp_min(1e-12))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    probe_arguments(ap)
    ap.add_argument("--checkpoint", nargs="*", default=[None], help="NullSwap checkpoint folders (default: packaged)")
    ap.add_argument("--png", type=Path, default=None, help="folder for the mean-change pictures")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x = held_out_crops(args.data, args.split, args.probes)
    ev, thr = measured_ensemble()
    with torch.no_grad():
        clean = ev(x)

    def below(y: torch.Tensor) -> list[float]:
        with torch.no_grad():
            cos = [F.cosine_similarity(e, c, dim=1) for e, c in zip(ev(y), clean, strict=True)]
        return [float((c < thr[n]).float().mean()) * 100 for n, c in zip(MEASURED, cos, strict=True)]

    print(f"{len(x)} {args.split} probes; recognizers " + " ".join(MEASURED), flush=True)
    for ck in args.checkpoint:
        prot = create_protector("nullswap", checkpoint=ck or None, psnr_floor=None)
        y = torch.cat([prot.protect(x[i:i + 16], generator=torch.Generator().manual_seed(i))
                       for i in range(0, len(x), 16)])
        d = (y - x).flatten(1)
        n = len(d)
        dn = F.normalize(d, dim=1)
        pair = float(((dn @ dn.T).sum() - n) / (n * (n - 1)))
        m = d.mean(0)
        share = float(m.pow(2).sum() / d.pow(2).sum(1).mean())
        # the mean change on every crop, scaled to that crop's own change's energy (same PSNR), clipped to [0,1]
        scale = d.norm(dim=1, keepdim=True) / m.norm().clamp_min(1e-12)
        yu = (x + (scale * m).view_as(x)).clamp(0, 1)
        rest = d - m
        yr = (x + (d.norm(dim=1, keepdim=True) / rest.norm(dim=1, keepdim=True).clamp_min(1e-12) * rest).view_as(x))
        yr = yr.clamp(0, 1)
        name = ck or "packaged"
        print(f"{name}: pairwise cosine of changes {pair:.3f}, energy in the mean change {share * 100:.0f} % "
              f"(unbiased {shared_change_share(x, y) * 100:.1f} %)", flush=True)
        print(f"  per-image  {float(_psnr(x, y).mean()):.2f} dB below% " + " ".join(f"{b:3.0f}" for b in below(y)))
        print(f"  universal  {float(_psnr(x, yu).mean()):.2f} dB below% " + " ".join(f"{b:3.0f}" for b in below(yu)),
              flush=True)
        print(f"  the rest   {float(_psnr(x, yr).mean()):.2f} dB below% " + " ".join(f"{b:3.0f}" for b in below(yr)),
              flush=True)
        if args.png is not None:
            args.png.mkdir(parents=True, exist_ok=True)
            im = F.interpolate((0.5 + m.view(1, *x.shape[1:]) * 20).clamp(0, 1), scale_factor=3, mode="nearest")[0]
            out = args.png / f"mean-change-{Path(name).parent.name if name.endswith('export') else Path(name).name}.png"
            Image.fromarray((im.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(out)
            print(f"  wrote {out}")


if __name__ == "__main__":
    main()
