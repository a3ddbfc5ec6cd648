"""Where one photo's ``nullswap protect`` time goes, below the stages of ``benchmarks/protect.py``.

Usage: python benchmarks/protect_profile.py [--photo "1 MP"|"12 MP"|group] [--n 10] [--threads 2] [--method nullswap]
    [--fill-ab]

The same photos as ``benchmarks/protect.py`` (1 MP, 12 MP, the group photo; written once into a temporary folder).
After 3 warm-up photos, ``--n`` runs of ``PhotoProtector.protect_file`` + ``ProtectedImage.save`` with timers around:
the stages (``PhotoProtector.timings``), the calls inside them (the faces' region converted into the float canvas,
alignment matrices, the face windows, the patch computation, the JPEG writer, the read-back decode, the verifiers),
and every onnxruntime session call (by model and input shape, on whichever thread ran it); then the process CPU
seconds per photo and how many cores that is on average. Means per photo, in ms. ``--fill-ab`` first times
the faces' region (half the photo) converted into the float canvas straight from the 8-bit decode (since 2026-12-07
evening) against through a float temporary (before), interleaved. A tool to find the next thing to
speed up, not a result: the timers themselves cost a few microseconds per call.
"""

from __future__ import annotations

import argparse
import collections
import functools
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nullswap.protection as protection  # noqa: E402
import nullswap.written as written  # noqa: E402
from nullswap.faces.io import LoadedImage  # noqa: E402
from nullswap.protection import PhotoProtector  # noqa: E402
from protect import SHARED, make_photos  # noqa: E402 - the benchmark's photos

ACC: dict[str, float] = collections.defaultdict(float)


def timed(label: str, fn: Any) -> Any:
    """``fn`` adding its wall time to ``ACC[label]``."""

    @functools.wraps(fn)
    def wrapper(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            ACC[label] += time.perf_counter() - t

    return wrapper


def instrument(pp: PhotoProtector) -> None:
    """Timers around the calls inside the stages (module attributes patched for this process only)."""
    for name in ("align_faces", "alignment_matrices", "face_region", "face_patches", "written_region"):
        setattr(protection, name, timed(f"protection.{name}", getattr(protection, name)))
    for name in ("encode_patched", "decode_region"):
        setattr(written, name, timed(f"written.{name}", getattr(written, name)))
    LoadedImage.fill = timed("LoadedImage.fill (region -> float canvas)", LoadedImage.fill)
    if pp.verifier is not None:
        pp.verifier.verify = timed("Verifier.verify (both verifiers)", pp.verifier.verify)
    try:
        import onnxruntime as ort
    except ImportError:
        return
    run = ort.InferenceSession.run

    def ort_run(self: Any, out: Any, feed: dict[str, Any], *a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return run(self, out, feed, *a, **k)
        finally:
            shape = tuple(next(iter(feed.values())).shape)
            model = Path(getattr(self, "_model_path", None) or "in-memory graph").name
            ACC[f"onnxruntime {model} {shape} ({threading.current_thread().name.split('_')[0]})"] += (
                time.perf_counter() - t)

    ort.InferenceSession.run = ort_run


def fill_ab(path: Path, repeat: int = 15) -> None:
    """The faces' region into the float canvas: straight from the 8-bit decode vs through a float temporary."""
    import numpy as np

    from nullswap.faces.io import read_image

    li = read_image(path)
    h, w = li.size
    box = (w // 5, h // 10, w - w // 5, h - h // 10)  # ~half the photo, as the 12-MP photo's faces' region

    def direct() -> float:
        c = li.float_canvas()
        t = time.perf_counter()
        li.fill(c, box)
        return time.perf_counter() - t

    def via_temporary() -> float:  # what fill did before 2026-12-07 evening
        c = li.float_canvas()
        t = time.perf_counter()
        x0, y0, x1, y1 = box
        c[:, y0:y1, x0:x1] = li.window(box)
        return time.perf_counter() - t

    direct(), via_temporary()
    a, b = zip(*[(direct(), via_temporary()) for _ in range(repeat)], strict=True)
    px = (box[2] - box[0]) * (box[3] - box[1]) / 1e6
    print(f"region of {px:.1f} MP into the float canvas: straight {np.median(a) * 1e3:.1f} ms, through a temporary "
          f"{np.median(b) * 1e3:.1f} ms (median of {repeat}, interleaved)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photo", default="1 MP", choices=["1 MP", "12 MP", "group"])
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--method", default="nullswap")
    ap.add_argument("--fill-ab", action="store_true", help="also compare the region's float conversion, old vs new")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="nullswap-profile-"))
    photo = make_photos(SHARED / "obama1.jpg", SHARED / "group_t1.jpg", tmp)[args.photo]
    if args.fill_ab:
        fill_ab(photo)
    pp = PhotoProtector(args.method, seed=0, device="cpu")
    instrument(pp)
    for i in range(3):
        pp.protect_file(photo).save(tmp / f"warm-{i}.jpg", overwrite=True)
    ACC.clear()
    stages: dict[str, float] = collections.defaultdict(float)
    cpu0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for i in range(args.n):
        pp.protect_file(photo).save(tmp / f"out-{i}.jpg", overwrite=True)
        for k, v in pp.timings.items():
            stages[k] += v
    wall = (time.perf_counter() - t0) / args.n
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) / args.n
    print(f"{args.photo}, {args.method}, {args.threads} threads, {args.n} photos: {wall * 1e3:.1f} ms per photo, "
          f"process CPU {cpu * 1e3:.1f} ms ({cpu / wall:.2f} cores on average)")
    print("stages (PhotoProtector.timings; decode runs on a worker thread):")
    for k, v in stages.items():
        print(f"  {k:12s} {v / args.n * 1e3:8.1f} ms")
    print("calls inside them:")
    for k, v in sorted(ACC.items(), key=lambda kv: -kv[1]):
        print(f"  {k:70s} {v / args.n * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
