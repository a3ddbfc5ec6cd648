"""Whole-photo look of a cloak at 1:1: clean / protected / 10x difference for faces of about 100, 250 and 600 px.

Usage: python benchmarks/montage.py [--checkpoint DIR] [--method nullswap|pgd|auto] [--strength mid] [--refine K]
       [--refine-chroma C] [--refine-masking]
       [--out docs/img] [--name NAME] [--photo ../shared/data/photos/obama1.jpg] [--sizes 100,250,600]

The photo is resized so its (first) detected face box is about each requested width, protected with the full
``nullswap protect`` path (detect, align, cloak, feathered paste-back), and a window around the face is cut out at 1:1
(no resampling for display): the clean window, the protected window and ``0.5 + 10 * (protected - clean)``. Each size
is written as ``montage-<method>-<size>px.png`` (windows are capped at 360 px so the files stay small: for the 600-px
face the window shows the eyes, nose and mouth, where the earlier model's streaks were). It prints, per size, the
PSNR of the window and the largest per-pixel change (in 1/255) so the picture comes with numbers.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from nullswap.faces import create_detector, read_image
from nullswap.protection import PhotoProtector

SHARED = Path(__file__).resolve().parents[2] / "shared"


def _to_u8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--photo", default=str(SHARED / "data" / "photos" / "obama1.jpg"))
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--method", default="nullswap")
    ap.add_argument("--strength", default="mid")
    ap.add_argument("--sizes", default="100,250,600")
    ap.add_argument("--window", type=int, default=360, help="largest side of the 1:1 window")
    ap.add_argument("--out", default="docs/img")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--refine", type=int, default=0, help="method nullswap: K refinement steps (auto: the packaged "
                    "model's own setting unless given)")
    ap.add_argument("--refine-chroma", type=float, default=None,
                    help="factor on the refine steps' colour part (NullSwapProtector refine_chroma; default: recipe's)")
    ap.add_argument("--refine-masking", action="store_true", help="contrast-masked refine steps (refine_masking)")
    ap.add_argument("--name", default=None, help="file name part (default: the method)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    img = read_image(args.photo).tensor  # (3,H,W) in [0,1]
    det = create_detector("mtcnn")
    d = det.detect(img)[0]
    if len(d) == 0:
        raise SystemExit(f"no face in {args.photo}")
    box = d.boxes[0]
    face_w = float(box[2] - box[0])
    prot = PhotoProtector(args.method, checkpoint=args.checkpoint, strength=args.strength, seed=0, verify=False,
                          until_protected=False, **({"refine": args.refine} if args.refine else {}))
    if args.refine_chroma is not None:  # the one strength used here: set it on that protector
        prot.protector.refine_chroma = prot.settings["refine_chroma"] = args.refine_chroma
    if args.refine_masking:
        prot.protector.refine_masking = prot.settings["refine_masking"] = True
    print(f"photo {args.photo}: face {face_w:.0f} px wide; method {args.method} ({args.checkpoint or 'default'}), "
          f"strength {args.strength}, settings {prot.settings}")
    for size in (int(s) for s in args.sizes.split(",")):
        scale = size / face_w
        h, w = img.shape[-2:]
        big = F.interpolate(img[None], size=(round(h * scale), round(w * scale)), mode="bicubic", align_corners=False,
                            antialias=scale < 1)[0].clamp(0, 1)
        res = prot.protect_tensor(big)
        y = res.image
        b = (box * scale).tolist()
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        side = min(args.window, math.ceil(1.3 * (b[2] - b[0])))
        x0 = int(max(0, min(big.shape[-1] - side, cx - side / 2)))
        y0 = int(max(0, min(big.shape[-2] - side, cy - side / 2)))
        c, p = big[:, y0 : y0 + side, x0 : x0 + side], y[:, y0 : y0 + side, x0 : x0 + side]
        diff = (0.5 + 10 * (p - c)).clamp(0, 1)
        mse = float((p - c).pow(2).mean())
        psnr = 10 * math.log10(1 / mse) if mse > 0 else float("inf")
        panel = np.concatenate([_to_u8(c), _to_u8(p), _to_u8(diff)], axis=1)
        f = out / f"montage-{args.name or args.method}-{size}px.png"
        Image.fromarray(panel).save(f, optimize=True)
        print(f"face ~{size} px: window {side}x{side} at 1:1, PSNR {psnr:.2f} dB, max change "
              f"{float((p - c).abs().max()) * 255:.1f}/255, faces cloaked {len(res.faces)} -> {f}")


if __name__ == "__main__":
    main()
