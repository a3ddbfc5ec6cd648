"""Side-by-side views of faces in a whole photo, cloaked by several checkpoints or strengths, magnified for the eye.

Usage: python benchmarks/face_views.py --specs default:1.0,runs/X/export:1.17
       [--photo ../shared/data/photos/group_t1.jpg] [--faces 1,5] [--zoom 2] [--margin 0.15] [--threads 2]
       --out docs/img/NAME.png

Each spec is ``CHECKPOINT:SCALE`` (``default`` = the packaged model): the one pass (``--method nullswap``, no
refinement) through the full ``nullswap protect`` path (SCRFD detection, alignment, feathered paste-back) with the
generator's residual times SCALE and the inference PSNR guard lowered to 30 dB, so what is shown is the model's own
change. Per face (numbered as ``nullswap protect --report`` numbers them) a window of the face box plus ``--margin``
is cut from the clean photo and from each output, laid out in one row (clean first), and the picture is magnified
``--zoom`` times with nearest-neighbour resampling (each photo pixel becomes a block, nothing is interpolated). It
prints, per spec and face, the window's PSNR, the largest change (1/255) and the line coherence of the change
(:mod:`nullswap.losses.line_energy`), so the picture comes with numbers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nullswap.faces import read_image
from nullswap.losses.line_energy import coherence
from nullswap.metrics.quality import psnr
from nullswap.protection import PhotoProtector

SHARED = Path(__file__).resolve().parents[2] / "shared"


def _u8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def face_window(shape: tuple[int, ...], box: tuple[float, ...] | list[float], margin: float) -> tuple[int, ...]:
    """``(x0, y0, x1, y1)`` of a face box grown by ``margin`` of its width, inside a ``(3,H,W)`` photo."""
    x0, y0, x1, y1 = (int(v) for v in box)
    m = int(margin * (x1 - x0))
    return max(0, x0 - m), max(0, y0 - m), min(shape[2], x1 + m), min(shape[1], y1 + m)


def save_grid(rows: list[list[torch.Tensor]], zoom: int, out: str | Path) -> tuple[int, int]:
    """Tiles ``(3,h,w)`` laid out row by row (cut to the smallest row), magnified ``zoom``x by nearest neighbour."""
    arrs = [np.concatenate([_u8(t) for t in row], 1) for row in rows]
    wmin, hmin = min(r.shape[1] for r in arrs), min(r.shape[0] for r in arrs)
    a = np.concatenate([r[:hmin, :wmin] for r in arrs], 0)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).resize((a.shape[1] * zoom, a.shape[0] * zoom), Image.NEAREST).save(out)
    return a.shape[1] * zoom, a.shape[0] * zoom


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--specs", required=True, help="CHECKPOINT:SCALE,... (CHECKPOINT 'default': the packaged model)")
    ap.add_argument("--photo", default=str(SHARED / "data" / "photos" / "group_t1.jpg"))
    ap.add_argument("--faces", default="1,5", help="face numbers, 1-based as in the protect report")
    ap.add_argument("--zoom", type=int, default=2)
    ap.add_argument("--margin", type=float, default=0.15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    img = read_image(args.photo).tensor
    outs, boxes = [], None
    for spec in args.specs.split(","):
        ck, _, scale = spec.rpartition(":")
        pp = PhotoProtector(method="nullswap", checkpoint=None if ck == "default" else ck, strength="mid",
                            detector="scrfd", until_protected=False, verify=False)
        prot = pp.protector_at("mid")
        prot.psnr_floor, prot.perturbation_scale = 30.0, float(scale)
        r = pp.protect_tensor(img.clone())
        outs.append((spec, r.image.clone()))
        boxes = [f.box for f in r.faces]
    faces = [int(f) - 1 for f in args.faces.split(",")]
    rows = []
    for i in faces:
        x0, y0, x1, y1 = face_window(tuple(img.shape), boxes[i], args.margin)
        clean = img[:, y0:y1, x0:x1]
        tiles = [clean]
        for spec, out in outs:
            w = out[:, y0:y1, x0:x1]
            print(f"face {i + 1} {spec}: window {float(psnr(w[None], clean[None])):.2f} dB, "
                  f"max change {float((w - clean).abs().max()) * 255:.1f}/255, "
                  f"line coherence {coherence(clean[None], w[None]):.3f}", flush=True)
            tiles.append(w)
        rows.append(tiles)
    w, h = save_grid(rows, args.zoom, args.out)
    print(f"wrote {args.out} ({w} x {h})")


if __name__ == "__main__":
    main()
