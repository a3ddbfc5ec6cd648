"""The "written" stage of `nullswap protect` (JPEG writer + verdict decode) at two commits, interleaved run by run.

Usage: python benchmarks/written_ab.py [--before REV] [--threads N] [--repeat 4] [--photo 12mp|1mp|group]

The 12-MP photo of ``benchmarks/protect.py`` (``obama1.jpg`` enlarged to 4000 x 3000, or its 1-MP / group photos)
is protected with ``protect_file`` + ``save`` ``--repeat`` times with the writer of ``--before`` (its
``nullswap/faces/jpeg.py`` and ``nullswap/written.py``, loaded from git as separate modules) and as many times
with the working tree's, alternated (before, after, after, before, ...). Prints the mean "written" stage
(``PhotoProtector.timings``) and whole-photo time of each, their ratio, and checks that both wrote the same bytes.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nullswap.faces.jpeg as jpeg_now  # noqa: E402
import nullswap.protection as protection  # noqa: E402
from nullswap.protection import PhotoProtector  # noqa: E402
from protect import SHARED, make_photos  # noqa: E402

log = logging.getLogger("written_ab")
ROOT = Path(__file__).resolve().parents[1]


def module_at(rev: str, path: str, name: str, folder: Path) -> ModuleType:
    """``path`` (relative to the repository) as of git revision ``rev``, imported as module ``name``."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{path}"], check=True, capture_output=True,
                         text=True).stdout
    file = folder / f"{name}.py"
    file.write_text(src)
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"expected an importable {path} at {rev}, got none")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    """Run the interleaved comparison and log the numbers."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default="5864658", help="git revision of the writer to compare against")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=4, help="runs of each writer")
    ap.add_argument("--photo", choices=("12mp", "1mp", "group"), default="12mp")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="nullswap-written-ab-"))
    jpeg_before = module_at(args.before, "src/nullswap/faces/jpeg.py", "jpeg_before", tmp)
    written_before = module_at(args.before, "src/nullswap/written.py", "written_before", tmp)
    photo = make_photos(SHARED / "obama1.jpg", SHARED / "group_t1.jpg", tmp)[
        {"12mp": "12 MP", "1mp": "1 MP", "group": "group"}[args.photo]]
    pp = PhotoProtector("nullswap", seed=0, device="cpu", detector="scrfd")
    pp.protect_file(photo)  # warm-up
    now_encode, now_written = jpeg_now.encode_patched_jpeg, protection.written_region

    def before(*a: object, **k: object) -> object:
        jpeg_now.encode_patched_jpeg = jpeg_before.encode_patched_jpeg  # written.py imports it at call time
        try:
            return written_before.written_region(*a, **k)
        finally:
            jpeg_now.encode_patched_jpeg = now_encode

    runs: dict[str, dict[str, list[float]]] = {"before": {"written": [], "total": []},
                                                "after": {"written": [], "total": []}}
    outputs: dict[str, bytes] = {}
    order = [lab for r in range(args.repeat) for lab in (("before", "after") if r % 2 == 0 else ("after", "before"))]
    try:
        for label in order:
            protection.written_region = before if label == "before" else now_written
            out = tmp / f"out-{label}.jpg"
            t = time.perf_counter()
            res = pp.protect_file(photo)
            res.save(out, overwrite=True)
            runs[label]["total"].append(time.perf_counter() - t)
            runs[label]["written"].append(pp.timings["written"])
            data = out.read_bytes()
            if outputs.setdefault(label, data) != data:
                raise RuntimeError(f"expected the same bytes from every {label} run, got different ones")
    finally:
        protection.written_region = now_written
    if outputs["before"] != outputs["after"]:
        raise RuntimeError("expected byte-identical outputs before and after, got different files")
    m = {lab: {k: statistics.mean(v) * 1000 for k, v in d.items()} for lab, d in runs.items()}
    log.info("%s, %d thread(s), %d runs each (interleaved), before = %s: written %.0f -> %.0f ms (%.2fx), whole photo "
             "%.0f -> %.0f ms (%.2fx); outputs byte-identical", args.photo, args.threads, args.repeat, args.before,
             m["before"]["written"], m["after"]["written"], m["before"]["written"] / m["after"]["written"],
             m["before"]["total"], m["after"]["total"], m["before"]["total"] / m["after"]["total"])
    for lab, d in runs.items():
        log.info("  %s: written %s ms, whole %s ms", lab, [round(x * 1000) for x in d["written"]],
                 [round(x * 1000) for x in d["total"]])


if __name__ == "__main__":
    main()
