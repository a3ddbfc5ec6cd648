"""A geometric cloak: can a smooth sub-pixel warp of the face move its identity as far as the drawn change does?

Usage: python benchmarks/warp_cloak.py [--probes 16] [--steps 60] [--max-px 0.5,1.0] [--grid 16] [--threads 1]
    [--checkpoint EXPORT_DIR] [--png OUT.png]

Why (issue 12): every quality term tried on the NullSwap generator (masking, colour, line energy, the shared change)
left the same visible drawing - forehead wrinkles, a nose outline, nasolabial lines - because that drawing is what
moves the recognizers. A warp moves the face's own edges instead of drawing new ones: flat skin stays flat and no
stroke appears. Not in the papers (NullSwap, ID-Guard, ARS and the retentive defense all add a perturbation);
geometric adversarial examples are Xiao et al. 2018 ("Spatially transformed adversarial examples", stAdv) and, on
faces, Dabouei et al. 2019 ("Fast geometrically-perturbed adversarial faces").

What runs, per ``--max-px`` value, on ``--probes`` held-out CelebA crops (``protector-128``, the probes of
``benchmarks/refine_variants.py``): a per-image optimisation (Adam, lr 0.1, ``--steps`` steps) of a flow field that
lowers the mean cosine similarity between the warped and the clean crop on the product's four training recognizers
(arcface-mbf, mobilefacenet-casia, dlib-resnet29, faceplugin-512). Choice (parameterisation, not from a paper): the
flow lives on a ``grid x grid`` lattice upsampled bicubically to the crop (smooth: no per-pixel jitter), its length
is bounded softly by ``max_px * tanh(|f| / max_px)``, and the crop is resampled bilinearly with border padding. Beside
it, on the same probes: the NullSwap one pass (``--checkpoint``, default the packaged model) at x1.0 and x1.17.

Printed per row: PSNR (which charges a shifted edge like a drawn one), ST-LPIPS (shift-tolerant, the project's
perceptual metric), the mean displacement in pixels of the 128-px crop, the share of probes below each recognizer's
LFW best-accuracy threshold (training recognizers, then the unseen human-models ones) and the mean cosines.
``--png`` writes 4 probes, 2x (nearest neighbour): clean | each warp | the one pass x1.0.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from nullswap.metrics.perceptual import create_perceptual
from nullswap.protectors import create_protector
from nullswap.recognizers.ensemble import RecognizerEnsemble

sys.path.insert(0, str(Path(__file__).resolve().parent))
from face_views import save_grid  # noqa: E402 - the same picture layout
from refine_variants import MEASURED, held_out_crops, measured_ensemble, probe_arguments  # noqa: E402 - same probes

TRAINING = ["arcface-mbf", "mobilefacenet-casia", "dlib-resnet29", "faceplugin-512"]


def warp(x: torch.Tensor, lattice: torch.Tensor, max_px: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` resampled along the flow of ``lattice`` ``(B,2,g,g)`` (pixels), bounded by ``max_px``; and the flow."""
    b, _, h, w = x.shape
    f = F.interpolate(lattice, size=(h, w), mode="bicubic", align_corners=False)
    mag = f.pow(2).sum(1, keepdim=True).sqrt().clamp_min(1e-9)
    f = f * (max_px * torch.tanh(mag / max_px) / mag)
    base = F.affine_grid(torch.eye(2, 3, dtype=x.dtype).unsqueeze(0).expand(b, 2, 3), (b, 3, h, w),
                         align_corners=False)
    scale = torch.tensor([2.0 / w, 2.0 / h], dtype=x.dtype)
    grid = base + f.permute(0, 2, 3, 1) * scale
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False), f


def optimise_warp(x: torch.Tensor, ens: RecognizerEnsemble, max_px: float, grid: int, steps: int) -> torch.Tensor:
    """Per-image flow lattices that lower the mean training-recognizer cosine of the warped crops."""
    with torch.no_grad():
        clean = [e.detach() for e in ens(x)]
    lat = (torch.randn(x.shape[0], 2, grid, grid, generator=torch.Generator().manual_seed(0)) * 0.01)
    lat.requires_grad_(True)
    opt = torch.optim.Adam([lat], lr=0.1)
    for _ in range(steps):
        y, _ = warp(x, lat, max_px)
        loss = torch.stack([F.cosine_similarity(e, c, dim=1) for e, c in zip(ens(y), clean, strict=True)]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return lat.detach()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    probe_arguments(ap)
    ap.set_defaults(probes=16)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--max-px", default="0.5,1.0", help="bounds on the displacement, pixels of the 128-px crop")
    ap.add_argument("--grid", type=int, default=16, help="flow lattice size (upsampled bicubically)")
    ap.add_argument("--checkpoint", default=None, help="NullSwap checkpoint for the one-pass rows (default: packaged)")
    ap.add_argument("--png", type=Path, default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    x = held_out_crops(args.data, args.split, args.probes)
    ev, thr = measured_ensemble()
    lp = create_perceptual("stlpips-alex")
    with torch.no_grad():
        clean = ev(x)
    print(f"{len(x)} {args.split} probes; recognizers {' '.join(MEASURED)}", flush=True)

    def report(label: str, y: torch.Tensor, extra: str = "") -> None:
        with torch.no_grad():
            psnr = float((-10 * torch.log10((y - x).pow(2).mean((1, 2, 3)).clamp_min(1e-12))).mean())
            st = float(lp(x, y).mean())
            cos = [F.cosine_similarity(e, c, dim=1) for e, c in zip(ev(y), clean, strict=True)]
        below = [float((c < thr[n]).float().mean()) * 100 for n, c in zip(MEASURED, cos, strict=True)]
        print(f"{label:24s} {psnr:6.2f} dB ST-LPIPS {st:.4f}{extra} below% " + " ".join(f"{b:3.0f}" for b in below)
              + " | cos " + " ".join(f"{float(c.mean()):.3f}" for c in cos), flush=True)

    shown = [x[:4]]
    for s in (1.0, 1.17):
        prot = create_protector("nullswap", checkpoint=args.checkpoint, psnr_floor=30.0, refine=0, strength=s)
        y = torch.cat([prot.protect(x[i:i + 16], generator=torch.Generator().manual_seed(i))
                       for i in range(0, len(x), 16)])
        report(f"one pass x{s:g}", y)
        if s == 1.0:
            one = y[:4]
    ens = RecognizerEnsemble(TRAINING, source_template="protector-128").eval()
    for p in ens.parameters():
        p.requires_grad_(False)
    for mp in (float(v) for v in args.max_px.split(",")):
        t = time.time()
        lat = optimise_warp(x, ens, mp, args.grid, args.steps)
        with torch.no_grad():
            y, f = warp(x, lat, mp)
        disp = float(f.pow(2).sum(1).sqrt().mean())
        report(f"warp <= {mp:g} px", y.clamp(0, 1),
               f" mean shift {disp:.2f} px ({(time.time() - t) / len(x):.1f} s/crop)")
        shown.append(y[:4].clamp(0, 1))
    if args.png is not None:
        shown.append(one)
        save_grid([[t[i] for t in shown] for i in range(shown[0].shape[0])], 2, args.png)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
