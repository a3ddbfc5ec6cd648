"""Face detection on CPU: per-photo speed of MTCNN, YuNet and SCRFD, SCRFD's recall against MTCNN, its minimum face.

Usage:
    python benchmarks/faces.py [--sections pipeline,speed,recall,minface] [--threads N] [--repeat N]
                               [--photos DIR] [--lfw DIR] [--lfw-n 500] [--detector mtcnn]

Sections (all by default):
    pipeline  detect (``--detector``) + align + paste-back per photo, every shared photo resized to ~1 MP first.
    speed     detection time per photo at its own size (../shared/data/photos) for mtcnn, yunet, scrfd on the full
              photo ("scrfd-full": max_side 100000, no small-face pass) and scrfd as shipped (long side 640 +
              small-face passes),
              plus a 12-MP photo (group_t1 enlarged) and a 12-MP canvas with six ~52-pixel faces.
    recall    every face MTCNN (full resolution) finds in the shared photos and in the first ``--lfw-n`` sorted LFW
              images, matched to SCRFD-as-shipped by IoU >= 0.3; lists each face MTCNN finds that SCRFD misses.
    minface   share of 100 LFW faces one SCRFD pass finds when pasted at a given side (network pixels) onto a black
              640 canvas, and of 25 when their photo is enlarged so the face has a given (large) side.

Reads ../shared in place; prints the host, torch/onnxruntime versions and threads with the numbers.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from nullswap.faces import align_faces, create_detector, paste_back, read_image

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
EXTS = (".jpg", ".jpeg", ".png")


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix ``(len(a), len(b))`` of ``x1, y1, x2, y2`` boxes."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = (a[:, 2:] - a[:, :2]).prod(-1)[:, None] + (b[:, 2:] - b[:, :2]).prod(-1)[None]
    return inter / (area - inter)


def timed(fn, repeat: int) -> tuple[float, object]:
    """Median seconds of ``repeat`` calls and the last result."""
    ts, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), out


def section_pipeline(args: argparse.Namespace, photos: list[Path]) -> None:
    det = create_detector(args.detector, **({"threads": args.threads} if args.detector == "scrfd" else {}))
    imgs = []
    for p in photos:
        t = read_image(p).tensor
        s = math.sqrt(1e6 / (t.shape[1] * t.shape[2]))
        imgs.append(F.interpolate(t[None], scale_factor=s, mode="bilinear", antialias=True)[0].clamp(0, 1))
    times: dict[str, list[float]] = {"detect": [], "align": [], "paste": []}
    nfaces = 0
    for _ in range(args.repeat):
        for img in imgs:
            t0 = time.perf_counter()
            d = det.detect(img)[0]
            t1 = time.perf_counter()
            crops, M = align_faces(img, d.landmarks, "protector-256")
            t2 = time.perf_counter()
            paste_back(img, crops, M, "protector-256")
            t3 = time.perf_counter()
            times["detect"].append(t1 - t0)
            times["align"].append(t2 - t1)
            times["paste"].append(t3 - t2)
            nfaces += len(d)
    n = len(times["detect"])
    print(f"\n== pipeline: {len(imgs)} photos resized to ~1.0 MP, {nfaces // args.repeat} faces, "
          f"{args.repeat} repeats, detector {args.detector}")
    for k, v in times.items():
        print(f"  {k:7s} {1000 * sum(v) / n:8.1f} ms/photo (median {1000 * sorted(v)[n // 2]:.1f})")
    total = sum(sum(v) for v in times.values()) / n
    print(f"  total   {1000 * total:8.1f} ms per 1-MP photo")


def section_speed(args: argparse.Namespace, photos: list[Path]) -> None:
    dets = {
        "mtcnn": create_detector("mtcnn"),
        "yunet": create_detector("yunet"),
        "scrfd-full": create_detector("scrfd", max_side=100_000, small_faces="never", threads=args.threads),
        "scrfd": create_detector("scrfd", threads=args.threads),
    }
    print(f"\n== speed: detection per photo at its own size, median of {args.repeat} (ms; faces found)")
    print(f"  {'photo':26s} {'size':>10s} " + " ".join(f"{k:>16s}" for k in dets))
    per: dict[str, list[float]] = {k: [] for k in dets}
    for p in photos:
        img = read_image(p).tensor
        cells = []
        for k, d in dets.items():
            t, out = timed(lambda d=d, img=img: d.detect(img)[0], args.repeat)
            per[k].append(t)
            cells.append(f"{1000 * t:10.1f} ({len(out):2d})")
        print(f"  {p.name[:26]:26s} {img.shape[2]:>4d}x{img.shape[1]:<5d} " + " ".join(f"{c:>16s}" for c in cells))
    print(f"  {'mean':26s} {'':10s} " + " ".join(f"{1000 * statistics.mean(v):16.1f}" for v in per.values()))
    print(f"  {'median':26s} {'':10s} " + " ".join(f"{1000 * statistics.median(v):16.1f}" for v in per.values()))
    ratio = statistics.mean(per["mtcnn"]) / statistics.mean(per["scrfd"])
    print(f"  mean MTCNN / SCRFD (shipped) time: {ratio:.1f}x")

    group = read_image(next((p for p in photos if p.name == "group_t1.jpg"), photos[0])).tensor
    s = 4000 / max(group.shape[1:])
    big = F.interpolate(group[None], scale_factor=s, mode="bilinear")[0].clamp(0, 1)
    print(f"  12-MP photo (group_t1.jpg enlarged to {big.shape[2]}x{big.shape[1]}), median of {args.repeat}:")
    for k in ("scrfd", "mtcnn"):
        t, out = timed(lambda k=k: dets[k].detect(big)[0], 1 if k == "mtcnn" else args.repeat)
        print(f"    {k:8s} {1000 * t:8.1f} ms, {len(out)} faces")
    small = F.interpolate(group[None], scale_factor=0.5, mode="area")[0]
    canvas = torch.full((3, 3000, 4000), 0.4)
    canvas[:, 1000 : 1000 + small.shape[1], 2037 : 2037 + small.shape[2]] = small
    print("  12-MP canvas (4000x3000 grey, group_t1.jpg at half size: six faces of ~52-75 px):")
    for k, d in (("scrfd never", create_detector("scrfd", small_faces="never", threads=args.threads)),
                 ("scrfd auto", dets["scrfd"])):
        t, out = timed(lambda d=d: d.detect(canvas)[0], 1)
        print(f"    {k:12s} {1000 * t:8.1f} ms, {len(out)} faces")


def _recall(name: str, paths: list[Path], mtcnn, scrfd, iou: float = 0.3) -> None:
    n_m = n_hit = n_extra = 0
    t_m = t_s = 0.0
    misses = []
    for p in paths:
        img = read_image(p).tensor
        t0 = time.perf_counter()
        a = mtcnn.detect(img)[0]
        t1 = time.perf_counter()
        b = scrfd.detect(img)[0]
        t_m += t1 - t0
        t_s += time.perf_counter() - t1
        m = box_iou(a.boxes, b.boxes) if len(a) and len(b) else torch.zeros(len(a), len(b))
        hit = (m >= iou).any(1) if len(b) else torch.zeros(len(a), dtype=torch.bool)
        n_m += len(a)
        n_hit += int(hit.sum())
        n_extra += int((~(m >= iou).any(0)).sum()) if len(a) else len(b)
        for i in torch.nonzero(~hit).flatten().tolist():
            x1, y1, x2, y2 = a.boxes[i].tolist()
            best = float(m[i].max()) if len(b) else 0.0
            misses.append(f"{p.relative_to(p.parents[1])}: MTCNN box ({x1:.0f},{y1:.0f},{x2:.0f},{y2:.0f}) "
                          f"side {max(x2 - x1, y2 - y1):.0f} px, score {float(a.scores[i]):.3f}, best IoU {best:.2f}")
    rec = n_hit / n_m if n_m else float("nan")
    print(f"  {name}: {len(paths)} images, MTCNN faces {n_m}, found by SCRFD {n_hit} (recall {rec:.4f}), "
          f"SCRFD-only faces {n_extra}; time MTCNN {t_m:.1f} s, SCRFD {t_s:.1f} s")
    for line in misses:
        print(f"    missed: {line}")


def section_recall(args: argparse.Namespace, photos: list[Path]) -> None:
    print("\n== recall: SCRFD as shipped (long side 640 + small-face pass) vs MTCNN at full resolution, IoU >= 0.3")
    mtcnn, scrfd = create_detector("mtcnn"), create_detector("scrfd", threads=args.threads)
    _recall("shared photos", photos, mtcnn, scrfd)
    if args.lfw.is_dir():
        lfw = sorted(args.lfw.glob("*/*.jpg"))[: args.lfw_n]
        _recall(f"LFW first {len(lfw)} sorted", lfw, mtcnn, scrfd)
    else:
        print(f"  (no LFW images at {args.lfw})")


def one_pass(det, img: torch.Tensor) -> torch.Tensor:
    """Boxes of a single SCRFD pass over the whole image at scale 1 (no small-face or half-scale pass)."""
    from nullswap.faces.scrfd import nms

    ((boxes, _, scores),) = det.run_network(det.network_input(img, 1.0)[0])
    return torch.from_numpy(boxes[nms(boxes, scores, det.nms_threshold)])


def section_minface(args: argparse.Namespace) -> None:
    if not args.lfw.is_dir():
        print(f"\n== minface: no LFW images at {args.lfw}")
        return
    mtcnn = create_detector("mtcnn")
    scrfd = create_detector("scrfd", threads=args.threads)
    faces = []
    for p in sorted(args.lfw.glob("*/*.jpg"))[:2000:20]:
        img = read_image(p).tensor
        d = mtcnn.detect(img)[0]
        if len(d):
            c = (d.boxes[:, :2] + d.boxes[:, 2:]) / 2
            i = int(((c - torch.tensor([img.shape[2], img.shape[1]]) / 2) ** 2).sum(1).argmin())
            faces.append((img, d.boxes[i]))
    print(f"\n== minface: {len(faces)} LFW faces (every 20th of the first 2000 sorted, MTCNN box side = face side), "
          "image shrunk so the face has the given side, pasted at (200, 200) on a black 640x640 canvas, "
          "SCRFD one pass at scale 1")
    for side in (12, 16, 20, 24, 28, 32, 40, 48):
        hit = 0
        for img, b in faces:
            s = side / float(max(b[2] - b[0], b[3] - b[1]))
            small = F.interpolate(img[None], scale_factor=s, mode="area")[0]
            canvas = torch.zeros(3, 640, 640)
            canvas[:, 200 : 200 + small.shape[1], 200 : 200 + small.shape[2]] = small
            out = one_pass(scrfd, canvas)
            want = b * s + 200
            if len(out) and float(box_iou(want[None], out).max()) >= 0.3:
                hit += 1
        print(f"  face side {side:3d} px: found {hit}/{len(faces)}")
    big = faces[::4]
    print(f"  large faces: {len(big)} of them, the whole LFW image enlarged so the face has the given side; one pass "
          "at scale 1, and the shipped detector with max_side=4096 (adds a half-scale pass when nothing is found)")
    shipped = create_detector("scrfd", max_side=4096, threads=args.threads)
    for side in (256, 384, 448, 512, 640):
        hit = hit2 = 0
        for img, b in big:
            s = side / float(max(b[2] - b[0], b[3] - b[1]))
            im = F.interpolate(img[None], scale_factor=s, mode="bilinear")[0].clamp(0, 1)
            out = one_pass(scrfd, im)
            hit += int(len(out) > 0 and float(box_iou((b * s)[None], out).max()) >= 0.3)
            out = shipped.detect(im)[0].boxes
            hit2 += int(len(out) > 0 and float(box_iou((b * s)[None], out).max()) >= 0.3)
        print(f"  face side {side:3d} px: one pass {hit}/{len(big)}, with the half-scale pass {hit2}/{len(big)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=Path, default=SHARED / "data/photos")
    ap.add_argument("--lfw", type=Path, default=SHARED / "data/lfw/images")
    ap.add_argument("--lfw-n", type=int, default=500)
    ap.add_argument("--detector", default="mtcnn", help="detector of the pipeline section")
    ap.add_argument("--sections", default="pipeline,speed,recall,minface")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    if not args.photos.is_dir():
        raise SystemExit(f"no photos at {args.photos} (needs ../shared/data/photos or --photos DIR)")
    torch.set_num_threads(args.threads)
    import cv2
    import onnxruntime

    cv2.setNumThreads(args.threads)
    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in EXTS)
    print(f"host: {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, threads {args.threads} "
          f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), load average {os.getloadavg()[0]:.2f}")
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    unknown = sections - {"pipeline", "speed", "recall", "minface"}
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}; expected pipeline, speed, recall, minface")
    if "pipeline" in sections:
        section_pipeline(args, photos)
    if "speed" in sections:
        section_speed(args, photos)
    if "recall" in sections:
        section_recall(args, photos)
    if "minface" in sections:
        section_minface(args)


if __name__ == "__main__":
    main()
