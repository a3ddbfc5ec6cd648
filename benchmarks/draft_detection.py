"""SCRFD's first pass on a JPEG's draft-mode copy (what ``nullswap protect`` uses) vs SCRFD on the full decode.

Usage: python benchmarks/draft_detection.py [--photos ../shared/data/photos]
Per shared JPEG: whether a draft copy is used (photos of at least 1280 px), whether its first pass is accepted or
detection falls back to the full decode, the number of faces both ways, and the largest landmark difference in eye
distances (faces matched by nearest box corner).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from nullswap.faces.detection import create_detector
from nullswap.faces.io import read_image
from nullswap.protection import PhotoProtector


class _Detection:
    """The detection helpers of :class:`PhotoProtector`, without loading a protector."""

    def __init__(self) -> None:
        self.detector = create_detector("scrfd", threads=1)

    _preview = PhotoProtector._preview
    _detect_preview = PhotoProtector._detect_preview


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--photos", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/photos")
    args = ap.parse_args()
    torch.set_num_threads(1)
    p = _Detection()
    for f in sorted(args.photos.glob("*.jpg")):
        d_full = p.detector.detect(read_image(f).tensor)[0]
        pv = p._preview(f)
        d = None if pv is None else p._detect_preview(pv)
        if d is None:
            why = "no draft copy (under 1280 px)" if pv is None else "draft pass declined: full decode"
            print(f"{f.name}: {why}, {len(d_full)} faces")
            continue
        eye = (d_full.landmarks[:, 0] - d_full.landmarks[:, 1]).norm(dim=-1)
        diffs = []
        for i in range(len(d)):
            j = int((d_full.boxes[:, :2] - d.boxes[i, :2]).norm(dim=-1).argmin())
            diffs.append(float((d.landmarks[i] - d_full.landmarks[j]).norm(dim=-1).mean() / eye[j]))
        print(f"{f.name}: draft {len(d)} faces, full decode {len(d_full)}; landmark difference max "
              f"{max(diffs):.3f} eye distances")


if __name__ == "__main__":
    main()
