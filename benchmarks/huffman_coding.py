"""The JPEG writer's Huffman coding: the source's own (standard tables kept) vs always optimised, end to end.

Usage: python benchmarks/huffman_coding.py [--threads 2] [--repeat 5]

``nullswap.faces.jpeg`` writes a baseline source coded with the standard (Annex K) Huffman tables with those tables
again, and optimises the tables (libjpeg ``optimize_coding``, a second pass over the coefficients) only for other
sources. This runs ``protect_file`` + ``save`` (the one pass, SCRFD, verification on the written bytes) on the 1-MP
and 12-MP photos of ``benchmarks/protect.py`` (saved by Pillow with the standard tables), alternating the two
codings run by run (the first round is a warm-up), and prints per photo and coding the median total and "written"
stage (the output's encode plus the decode of its faces' region) and the file size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nullswap.faces.jpeg as jpeg  # noqa: E402
import protect as bp  # noqa: E402 - the benchmark photos and timing of benchmarks/protect.py
from nullswap.protection import PhotoProtector  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    source_coding = jpeg.standard_huffman
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        photos = bp.make_photos(bp.SHARED / "obama1.jpg", bp.SHARED / "group_t1.jpg", d)
        pp = PhotoProtector(method="nullswap", strength="mid", detector="scrfd", until_protected=False)
        acc: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
        for rep in range(args.repeat + 1):
            for mode in ("always optimised", "source's coding"):
                jpeg.standard_huffman = (lambda data: False) if mode == "always optimised" else source_coding
                for name in ("1 MP", "12 MP"):
                    out = d / f"out-{name}.jpg"
                    t, _, _ = bp.time_photo(pp, photos[name], out, 1)
                    if rep:
                        acc.setdefault((name, mode), []).append((t["total"], t.get("written", 0.0),
                                                                 out.stat().st_size))
        jpeg.standard_huffman = source_coding
        for (name, mode), v in sorted(acc.items()):
            print(f"{name:6s} {mode:17s} total {statistics.median(x[0] for x in v) * 1000:.0f} ms, written "
                  f"{statistics.median(x[1] for x in v) * 1000:.0f} ms, file {v[-1][2]:,} B "
                  f"(source {photos[name].stat().st_size:,} B)")


if __name__ == "__main__":
    main()
