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
(``DIR/mean-change-<name>.png``): the drawing every face gets, and ``DIR/minus-mean-<name>.png``: faces 1, 3 and 5 of
the group photo through the ``nullswap protect`` path (SCRFD, alignment, feathered paste-back; guard at 30 dB),
magnified 2x (nearest neighbour), each row clean | the one pass | the one pass minus ``m``, the rest scaled per face to
the whole change's RMS | ``m`` alone; window PSNR and line coherence printed per face. It answers whether the shared
part is what one sees.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from nullswap.losses.shared_change import shared_change_share
from nullswap.protectors import create_protector

sys.path.insert(0, str(Path(__file__).resolve().parent))
from face_views import face_window, save_grid  # noqa: E402 - the same windows and layout as its views
from refine_variants import MEASURED, held_out_crops, measured_ensemble, probe_arguments  # noqa: E402 - same probes and recognizers

SHARED_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"


def _psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -10 * torch.log10((y - x).pow(2).mean((1, 2, 3)).clamp_min(1e-12))


def minus_mean_views(checkpoint: str | None, m: torch.Tensor, out: Path, faces: tuple[int, ...] = (1, 3, 5)) -> None:
    """Group-photo faces: clean | one pass | one pass minus ``m`` (same RMS per face) | ``m`` alone, 2x."""
    from nullswap.faces import read_image
    from nullswap.losses.line_energy import coherence
    from nullswap.protection import PhotoProtector

    img = read_image(SHARED_PHOTOS / "group_t1.jpg").tensor
    outs, boxes = [], []
    for mode in ("one pass", "minus mean", "mean only"):
        pp = PhotoProtector(method="nullswap", checkpoint=checkpoint, strength="mid", detector="scrfd",
                            until_protected=False, verify=False)
        prot = pp.protector_at("mid")
        prot.psnr_floor = 30.0
        raw = prot.protect

        def changed(x: torch.Tensor, generator: torch.Generator | None = None, raw=raw, mode=mode) -> torch.Tensor:
            d = raw(x, generator=generator) - x
            if mode == "minus mean":
                r = d - m
                d = r * (d.flatten(1).norm(dim=1) / r.flatten(1).norm(dim=1).clamp_min(1e-12)).view(-1, 1, 1, 1)
            elif mode == "mean only":
                d = m.expand_as(d)
            return (x + d).clamp(0, 1)

        prot.protect = changed
        r = pp.protect_tensor(img.clone())
        outs.append((mode, r.image))
        boxes = [f.box for f in r.faces]
    rows = []
    for i in (f - 1 for f in faces):
        x0, y0, x1, y1 = face_window(tuple(img.shape), boxes[i], 0.15)
        clean = img[:, y0:y1, x0:x1]
        tiles = [clean]
        for mode, o in outs:
            w = o[:, y0:y1, x0:x1]
            print(f"  face {i + 1} {mode}: window {float(_psnr(clean[None], w[None])):.2f} dB, line coherence "
                  f"{coherence(clean[None], w[None]):.3f}")
            tiles.append(w)
        rows.append(tiles)
    save_grid(rows, 2, out)
    print(f"  wrote {out}")


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
            label = Path(name).parent.name if Path(name).name == "export" else Path(name).name  # runs/X/export -> X
            out = args.png / f"mean-change-{label}.png"
            save_grid([[0.5 + m.view(*x.shape[1:]) * 20]], 3, out)
            print(f"  wrote {out}")
            minus_mean_views(ck or None, m.view(1, *x.shape[1:]), out.with_name(out.name.replace("mean-change",
                                                                                               "minus-mean")))


if __name__ == "__main__":
    main()
