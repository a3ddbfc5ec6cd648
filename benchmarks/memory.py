"""Where the memory of ``nullswap protect`` goes: resident memory per stage of one photo, file in -> file out.

Usage: python benchmarks/memory.py PHOTO [PHOTO ...] [--threads 1] [--max-pixels N] [--method nullswap] [--repeat 1]

Per photo (models built once, one warm-up photo first): ``PhotoProtector.prefetch`` (the decode and the draft-mode
copy, waited for), then ``protect_file`` and ``ProtectedImage.save`` as ``nullswap protect`` runs them. Each stage
(a wrapped function: decode, preview, detect, align, cloak, paste, verify and, inside it, the JPEG encode and the
decode of the written file, then the save) reports the process's resident memory before and after it and its peak
while it ran, read from Linux ``/proc/self/status`` (``VmRSS``, ``VmHWM``; the peak is reset before each stage by
writing ``5`` to ``/proc/self/clear_refs``). "held" is what a stage leaves resident (after - before), "peak +" what
it needed on top of what was resident before it. Linux only.
"""

from __future__ import annotations

import argparse
import functools
import gc
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import nullswap.protection as protection
import nullswap.written as written
from nullswap.faces.io import set_max_pixels
from nullswap.protection import PhotoProtector, ProtectedImage


def _status(key: str) -> float:
    """A ``/proc/self/status`` field in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"expected {key} in /proc/self/status, got none")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


class Recorder:
    """Wraps functions; records (stage, rss before, peak while running, rss after, seconds), nested stages folded."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, str, float, float, float, float]] = []
        self._stack: list[list[Any]] = []

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            if self._stack:  # the enclosing stage's peak so far
                self._stack[-1][1] = max(self._stack[-1][1], _status("VmHWM"))
            before = _status("VmRSS")
            _reset_peak()
            frame = [before, before]
            self._stack.append(frame)
            row = len(self.rows)
            self.rows.append((len(self._stack) - 1, name, before, 0.0, 0.0, 0.0))
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t
                self._stack.pop()
                peak = max(frame[1], _status("VmHWM"))
                self.rows[row] = (len(self._stack), name, before, peak, _status("VmRSS"), dt)
                if self._stack:
                    self._stack[-1][1] = max(self._stack[-1][1], peak)
                _reset_peak()

        return inner

    def print(self) -> None:
        print("| stage | rss before MiB | peak + MiB | held MiB | s |")
        print("|---|---|---|---|---|")
        for depth, name, before, peak, after, dt in self.rows:
            print(f"| {'  ' * depth}{name} | {before:.0f} | {peak - before:+.0f} | {after - before:+.0f} | {dt:.2f} |")
        self.rows = []


def instrument(rec: Recorder) -> None:
    """Wrap the pipeline's stages (module attributes, so the calls inside ``nullswap.protection`` see them)."""
    PP = PhotoProtector
    PP._detect_preview = rec.wrap("detect (draft copy)", PP._detect_preview)
    PP._cloak = rec.wrap("cloak", PP._cloak)
    PP._verify = rec.wrap("verify", PP._verify)
    ProtectedImage.save = rec.wrap("save", ProtectedImage.save)
    for mod, names in ((protection, ("align_faces", "face_patches", "written_region")),
                       (written, ("decode_region", "encode_patched"))):
        for n in names:
            if hasattr(mod, n):
                setattr(mod, n, rec.wrap(n, getattr(mod, n)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", nargs="+", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--method", default="nullswap")
    ap.add_argument("--max-pixels", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.max_pixels:
        set_max_pixels(args.max_pixels)
    t = time.perf_counter()
    pp = PhotoProtector(args.method, seed=0, device="cpu")
    print(f"models loaded in {time.perf_counter() - t:.1f} s; rss {_status('VmRSS'):.0f} MiB, "
          f"peak {_status('VmHWM'):.0f} MiB")
    rec = Recorder()
    with tempfile.TemporaryDirectory(prefix="nullswap-mem-") as d:
        pp.protect_file(args.photos[0]).save(Path(d) / f"warm{args.photos[0].suffix}")
        instrument(rec)
        for photo in args.photos:
            for _ in range(args.repeat):
                gc.collect()
                rec.rows = []
                base = _status("VmRSS")
                _reset_peak()
                t = time.perf_counter()
                pp.prefetch(photo)
                preview_f, full_f = pp._pending[Path(photo)]
                preview_f.result()
                full_f.result()
                decode_peak = _status("VmHWM")
                rec.rows.append((0, "decode + draft copy (worker threads)", base, decode_peak, _status("VmRSS"),
                                 time.perf_counter() - t))
                res = pp.protect_file(photo)
                res.save(Path(d) / f"out{photo.suffix}", overwrite=True)
                total = time.perf_counter() - t
                del res
                gc.collect()
                print(f"\n{photo.name}: {total:.1f} s, rss {base:.0f} MiB before, {_status('VmRSS'):.0f} MiB after")
                rec.print()


if __name__ == "__main__":
    main()
