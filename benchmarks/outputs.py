"""What `nullswap protect` writes for JPEG photos: file size, bit-identical pixels, and how much of the cloak is kept.

Usage: python benchmarks/outputs.py [PHOTO_OR_DIR ...] [--method nullswap] [--strength mid] [--verify] [--threads N]

For every JPEG (default: the JPEGs in ../shared/data/photos) the photo is protected (models built once) and written
twice: by :func:`nullswap.faces.io.write_image` (copies the DCT blocks no face touches, re-encodes the rest with the
input's tables) and, for comparison, by the previous writer (whole photo re-encoded with Pillow, quality 95, 4:4:4).
Per photo: input / output bytes, the previous writer's bytes, the blocks re-encoded, the share of pixels that decode
bit-identically to the input (asserted over every pixel outside the re-encoded blocks), the share of the pixels the
faces' masks do not touch that the previous writer changed ("old chg"), and the written face's distance to the
in-memory protected face (mean absolute difference in 0-255 levels). With ``--verify`` it also gives
the verifiers' mean cosine (clean vs protected face) on the in-memory photo and on the written file.
"""

from __future__ import annotations

import argparse
import io
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nullswap.faces.io import read_image, to_uint8, write_image
from nullswap.faces.jpeg import to_stored_orientation, unchanged_region
from nullswap.protection import PhotoProtector

SHARED_PHOTOS = Path(__file__).resolve().parents[2] / "shared/data/photos"


def _jpegs(inputs: list[str]) -> list[Path]:
    paths = [Path(p) for p in inputs] or [SHARED_PHOTOS]
    out: list[Path] = []
    for p in paths:
        out += sorted(f for f in p.iterdir() if f.suffix.lower() in (".jpg", ".jpeg")) if p.is_dir() else [p]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", nargs="*", help="JPEG files or folders (default: ../shared/data/photos)")
    ap.add_argument("--method", default="nullswap")
    ap.add_argument("--strength", default="mid")
    ap.add_argument("--verify", action="store_true", help="verifier cosines on the in-memory photo and on the file")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import jpeglib

    pp = PhotoProtector(args.method, strength=args.strength, seed=0, device="cpu", verify=args.verify,
                        until_protected=False)
    print(f"host: {platform.machine()}, torch {torch.__version__}, threads {args.threads}, method {args.method} "
          f"{args.strength}")
    head = (f"{'photo':26s} {'sampling':8s} {'faces':>5s} {'in KB':>7s} {'out KB':>7s} {'out/in':>6s} "
            f"{'old KB':>7s} {'old/in':>6s} {'blocks re-enc':>13s} {'px identical':>12s} {'face diff':>9s} "
            f"{'old chg':>7s} {'write s':>7s}")
    if args.verify:
        head += f" {'cos mem':>7s} {'cos file':>8s}"
    print(head)
    ratios, olds = [], []
    with tempfile.TemporaryDirectory() as d:
        for photo in _jpegs(args.photos):
            res = pp.protect_file(photo)
            if not res.faces:
                print(f"{photo.name[:26]:26s} no face")
                continue
            rec: dict = {}
            out = Path(d) / photo.name
            t = time.perf_counter()
            write_image(out, res.image, like=res.source, strip_gps=True, record=rec, overwrite=True)
            dt = time.perf_counter() - t
            buf = io.BytesIO()  # the previous writer: the whole photo through Pillow at q95 4:4:4
            Image.fromarray(to_uint8(res.image)).save(buf, "JPEG", quality=95, subsampling=0)
            size_in, size_out, size_old = photo.stat().st_size, out.stat().st_size, buf.tell()
            with Image.open(photo) as a, Image.open(out) as b:
                pa, pb = np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB"))
            same = (pa == pb).all(axis=2)
            with Image.open(buf) as c:  # upright, like the protected photo
                old_changed = (np.asarray(c.convert("RGB")) != to_uint8(res.source.tensor)).any(axis=2)
            untouched = (res.image == res.source.tensor).all(0).numpy()
            line = f"{photo.name[:26]:26s} "
            if rec.get("writer") == "jpeg-coefficients":
                changed = (res.image != res.source.tensor).any(0).numpy()
                keep = unchanged_region(to_stored_orientation(changed, res.source.orientation),
                                        np.asarray(jpeglib.read_dct(str(photo)).samp_factor))
                assert same[keep].all(), f"{photo.name}: a pixel outside the re-encoded blocks changed"
                blocks = f"{100 * rec['blocks_reencoded'] / rec['blocks']:.1f} %"
                line += f"{rec['sampling']:8s} "
            else:
                blocks = "all"
                line += f"{'-':8s} "
            written = read_image(out).tensor
            face = torch.from_numpy((res.image != res.source.tensor).any(0).numpy())
            face_diff = float((written - res.image).abs()[:, face].mean() * 255) if face.any() else 0.0
            ratios.append(size_out / size_in)
            olds.append(size_old / size_in)
            line += (f"{len(res.faces):5d} {size_in / 1024:7.1f} {size_out / 1024:7.1f} {size_out / size_in:6.3f} "
                     f"{size_old / 1024:7.1f} {size_old / size_in:6.2f} {blocks:>13s} {100 * same.mean():11.1f}% "
                     f"{face_diff:9.2f} {100 * old_changed[untouched].mean():6.1f}% {dt:7.2f}")
            if args.verify and pp.verifier is not None:
                lms = torch.tensor([f.landmarks for f in res.faces], dtype=torch.float32)
                mem = pp.verifier.cosines(res.source.tensor, res.image, lms)
                fil = pp.verifier.cosines(res.source.tensor, written, lms)
                line += f" {np.mean([np.mean(v) for v in mem.values()]):7.3f}"
                line += f" {np.mean([np.mean(v) for v in fil.values()]):8.3f}"
            if rec.get("notes"):
                line += "  (" + "; ".join(rec["notes"]) + ")"
            print(line, flush=True)
    if ratios:
        print(f"output/input size: median {np.median(ratios):.3f}, range {min(ratios):.3f}-{max(ratios):.3f}; "
              f"previous writer: median {np.median(olds):.2f}, range {min(olds):.2f}-{max(olds):.2f}")


if __name__ == "__main__":
    main()
