"""End-to-end ``nullswap protect`` on CPU, file in -> file out: one-pass NullSwap vs PGD mid, with the split per stage.

Usage: python benchmarks/protect.py [--n 50] [--n12 10] [--threads N] [--repeat 3] [--refine 5] [--detector scrfd]
    [--photo ../shared/data/photos/obama1.jpg] [--group ../shared/data/photos/group_t1.jpg] [--checkpoint DIR]

Photos (JPEG, written once into a temporary folder, quality 92, 4:2:0):
    1 MP: ``--photo`` resized to 1 megapixel (one face); 12 MP: ``--photo`` cropped to 4:3 and enlarged to
    4000 x 3000 (one face); group: ``--group`` as it is (6 faces).
Per photo and method (models built once per method, one warm-up photo first): the wall time of
``PhotoProtector.protect_file`` + ``ProtectedImage.save`` (the same calls as ``nullswap protect``), the process's CPU
seconds beside it (less inflated than the wall time on a busy machine; the decode thread's included), and the split
from ``PhotoProtector.timings`` (wall): decode (full decode, on a worker thread, overlapped with preview + detect),
preview (draft-mode decode for SCRFD), detect, align, cloak, paste, verify (arcface-mbf + the unseen verifiers,
batched), written (the output encoded once for the verdict and decoded: :mod:`nullswap.written`), encode (the save:
for a JPEG the bytes encoded for the verdict, written as they are). nullswap runs ``--repeat`` times (mean), PGD and
refine once; ``--auto`` adds a row for what ``nullswap protect PHOTO`` does by default (``--method auto``: the
one pass plus auto's refinement steps at ``mid``, weak faces redone at ``high``; one run, status the final verdict).
``--verify-before`` adds a row per photo with the verification as it was before the batched, on-disk
verdict (each verifier aligning the whole in-memory photo and embedding clean and protected crops in two forwards, no
cache; the JPEG encoded by the save), on the same models in the same run. ``--compare-backend`` adds a row per photo
with the verifiers on the other backend (onnxruntime vs PyTorch, :func:`nullswap.verdict.verifier_backend`; the
default is ``NULLSWAP_VERIFY_BACKEND`` or ``auto``), interleaved run by run with the default rows; the verdicts of
both are compared (largest cosine difference printed). ``--compare-noverify`` adds a row per photo with
verification off (``nullswap protect --no-verify``: no verdict, the output encoded once by the save), interleaved.
``--compare-serial-verify`` adds a row per photo with the verifiers' forwards one after the other instead of side by
side (:class:`nullswap.verdict.Verifier` ``parallel``), interleaved. ``--compare-generator`` adds a row per photo
with the one pass in PyTorch (the fused generator at ``precision`` auto, the default before 2026-12-07) instead of
onnxruntime (:mod:`nullswap.protectors.nullswap.ort_generator`), interleaved.
``--compare-speedups`` adds a row per photo with the NullSwap
generator as loaded instead of its fused inference copy (:mod:`nullswap.protectors.nullswap.inference`) and, where
the generator runs in bfloat16 (``precision`` auto on a CPU with native bfloat16), one with it in float32, interleaved.
Folders: ``--n`` copies of the shared JPEGs at their own size, and ``--n12`` copies of the 12-MP photo, through
``nullswap.batch.run_batch`` with prefetch and the writer thread (what ``nullswap protect DIR`` runs) and, for
comparison, one photo at a time; photos/s and the process's peak RSS after each (``resource.getrusage``; the
folders run first, so the peak is theirs plus the loaded models). glibc's malloc arenas are capped at
``--malloc-arenas`` (default 2, as ``nullswap protect`` does since 2026-12-07: :mod:`nullswap.malloc`; 0 leaves
glibc's default, for comparison), and its mmap / trim thresholds fixed as ``nullswap protect`` does since
2026-12-07 (``--malloc-keep 1``, default; 0 leaves them dynamic).
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from PIL import Image

from nullswap.batch import plan_outputs, run_batch
from nullswap.protection import STAGES, PhotoProtector, physical_cores
from nullswap.verdict import FaceVerdict, Verifier, VerifierScore, face_outcome

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"
SPLIT = (*STAGES, "encode")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_photos(photo: Path, group: Path, folder: Path) -> dict[str, Path]:
    """The 1-MP, 12-MP and group test photos as JPEGs in ``folder``."""
    im = Image.open(photo).convert("RGB")
    w, h = im.size
    s = (1_000_000 / (w * h)) ** 0.5
    one = folder / "photo-1mp.jpg"
    im.resize((round(w * s), round(h * s)), Image.Resampling.LANCZOS).save(one, quality=92, subsampling=2)
    cw = min(w, round(h * 4 / 3))
    ch = round(cw * 3 / 4)
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    twelve = folder / "photo-12mp.jpg"
    im.crop((x0, y0, x0 + cw, y0 + ch)).resize((4000, 3000), Image.Resampling.BICUBIC).save(
        twelve, quality=92, subsampling=2
    )
    grp = folder / "group.jpg"
    shutil.copyfile(group, grp)
    return {"1 MP": one, "12 MP": twelve, "group": grp}


#: The verifiers' cosines of the last :func:`time_photo` run per row label and photo: ``{(label, photo): [...]}``.
COSINES: dict[tuple[str, str], list[float]] = {}


def time_photo(pp: PhotoProtector, path: Path, out: Path, repeat: int) -> tuple[dict[str, float], int, str]:
    """Mean seconds per stage and in total over ``repeat`` runs of protect_file + save; faces; status."""
    acc: dict[str, float] = {}
    faces, status = 0, ""
    res = None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        res = pp.protect_file(path)
        t1 = time.perf_counter()
        if res.faces:
            res.save(out, overwrite=True)
        t2 = time.perf_counter()
        cpu = time.process_time() - c0
        for k, v in {**pp.timings, "encode": t2 - t1, "total": t2 - t0, "cpu": cpu}.items():
            acc[k] = acc.get(k, 0.0) + v / repeat
        faces, status = len(res.faces), res.status
    COSINES[("last", str(path))] = [s.cosine for f in res.faces if f.verdict for s in f.verdict.scores]
    return acc, faces, status


def legacy_verify(pp: PhotoProtector):
    """``PhotoProtector._verify`` as it was before the batched, on-disk verdict (for the ``--verify-before`` rows)."""
    from nullswap.faces.alignment import align_faces
    from nullswap.written import apply_windows

    def _verify(img, patches, lms, M, strengths, source=None, cache=None):  # noqa: ARG001 - the same signature
        result = apply_windows(img.clone(), patches)  # the in-memory photo, as paste_back returned it
        v = pp.verifier
        cos = {}
        with torch.no_grad():
            for name, rec in v.models.items():
                a, _ = align_faces(img, lms, rec.template)
                b, _ = align_faces(result, lms, rec.template)
                cos[name] = torch.nn.functional.cosine_similarity(rec(a).float(), rec(b).float(), dim=1).tolist()
        pp._encoded = None  # the save encodes
        out = []
        for i, s in enumerate(strengths):
            scores = [VerifierScore(n, v.is_seen(n), cos[n][i], dict(v.thresholds[n])) for n in v.models]
            out.append(FaceVerdict(face_outcome([sc.fooled for sc in scores]), scores, s))
        return out

    return _verify


@contextlib.contextmanager
def _patched(obj: object, attr: str, value: object) -> Iterator[None]:
    """Set ``obj.attr`` to ``value`` for the block (an instance attribute; the old one, or none, comes back)."""
    had = attr in vars(obj)
    old = vars(obj).get(attr)
    setattr(obj, attr, value)
    try:
        yield
    finally:
        if had:
            setattr(obj, attr, old)
        else:
            delattr(obj, attr)


@contextlib.contextmanager
def _patched_all(objs: list[object], attr: str, value: object) -> Iterator[None]:
    """Set ``attr`` to ``value`` on every object of ``objs`` for the block (the old values come back)."""
    old = [getattr(o, attr) for o in objs]
    for o in objs:
        setattr(o, attr, value)
    try:
        yield
    finally:
        for o, v in zip(objs, old, strict=True):
            setattr(o, attr, v)


def folder_rate(pp: PhotoProtector, sources: list[Path], out: Path, pipelined: bool) -> float:
    """Photos per second for a folder: the batch pipeline (prefetch + writer thread) or one photo at a time."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    t = time.perf_counter()
    if pipelined:
        jobs = plan_outputs(sources, out)
        outcomes = run_batch(jobs, pp.protect_file, settings=dict(pp.settings), prefetch=pp.prefetch)
        bad = [o for o in outcomes if o.status == "failed"]
        if bad:
            raise RuntimeError(f"expected every photo protected, got {len(bad)} failed: {bad[0].message}")
    else:
        for i, src in enumerate(sources):
            res = pp.protect_file(src)
            if res.faces:
                res.save(out / f"{i}-{src.name}")
    return len(sources) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photo", type=Path, default=SHARED / "obama1.jpg")
    ap.add_argument("--group", type=Path, default=SHARED / "group_t1.jpg")
    ap.add_argument("--checkpoint", default=None, help="NullSwap checkpoint (default: the packaged one)")
    ap.add_argument("--threads", type=int, default=physical_cores(), help="torch threads (default: physical cores)")
    ap.add_argument("--detector", default="scrfd")
    ap.add_argument("--repeat", type=int, default=3, help="runs per photo for nullswap (PGD and refine: 1)")
    ap.add_argument("--refine", type=int, default=5, help="K of the 'nullswap --refine K' line (0: no line)")
    ap.add_argument("--n", type=int, default=50, help="photos in the folder of shared JPEGs (0: skip)")
    ap.add_argument("--n12", type=int, default=10, help="photos in the folder of 12-MP copies (0: skip)")
    ap.add_argument("--no-pgd", action="store_true", help="skip PGD (no ratio)")
    ap.add_argument(
        "--compare-backend",
        action="store_true",
        help="add rows with the verifiers on the other backend (onnxruntime / PyTorch), interleaved",
    )
    ap.add_argument(
        "--compare-speedups",
        action="store_true",
        help="add rows with the generator as loaded (not fused for inference) and in float32, interleaved",
    )
    ap.add_argument(
        "--compare-generator",
        action="store_true",
        help="add rows with the one pass in PyTorch (fused, precision auto) instead of onnxruntime, interleaved",
    )
    ap.add_argument(
        "--compare-serial-verify",
        action="store_true",
        help="add rows with the verifiers run one after the other instead of side by side, interleaved",
    )
    ap.add_argument(
        "--compare-noverify",
        action="store_true",
        help="add rows with verification off (`nullswap protect --no-verify`: photos unverified), interleaved",
    )
    ap.add_argument(
        "--verify-before",
        action="store_true",
        help="add rows with the verification as it was before the batched, on-disk verdict",
    )
    ap.add_argument("--malloc-arenas", type=int, default=2,
                    help="cap glibc's malloc arenas as `nullswap protect` does (0: glibc's default)")
    ap.add_argument("--auto", action="store_true",
                    help="add a row for the default command (method auto: refinement, weak faces redone up to high)")
    ap.add_argument("--malloc-keep", type=int, default=1, choices=(0, 1),
                    help="fix glibc's mmap / trim thresholds as `nullswap protect` does (0: glibc's dynamic ones)")
    args = ap.parse_args()
    if args.malloc_arenas:
        from nullswap.malloc import limit_malloc_arenas

        print(f"malloc arenas capped at {args.malloc_arenas}: {limit_malloc_arenas(args.malloc_arenas)}")
    if args.malloc_keep:
        from nullswap.malloc import keep_freed_memory

        print(f"malloc keeps freed buffers (nullswap.malloc.keep_freed_memory): {keep_freed_memory()}")
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="nullswap-bench-"))
    try:
        photos = make_photos(args.photo, args.group, tmp)
        print(
            f"host: {platform.machine()}, {physical_cores()} physical cores, torch {torch.__version__}, threads "
            f"{args.threads}, detector {args.detector}; photos: "
            + ", ".join(f"{k} {Image.open(p).size[0]}x{Image.open(p).size[1]}" for k, p in photos.items())
        )
        t = time.perf_counter()
        pp = PhotoProtector("nullswap", checkpoint=args.checkpoint, seed=0, device="cpu", detector=args.detector)
        print(
            f"nullswap models loaded in {time.perf_counter() - t:.2f} s; peak RSS {peak_rss_mb():.0f} MiB; verifiers "
            f"{pp.verifier.names if pp.verifier else None} on {pp.verifier.backend if pp.verifier else '-'}; "
            f"torchvision imported: {'torchvision' in sys.modules}, onnx2torch: {'onnx2torch' in sys.modules}"
        )
        pp.protect_file(photos["1 MP"])  # warm-up

        # ------------------------------------------------------------------ folders (first: their peak RSS)
        shared = sorted(p for p in SHARED.glob("*.jpg"))
        for label, n, pool in (("shared JPEGs", args.n, shared), ("12-MP copies", args.n12, [photos["12 MP"]])):
            if n <= 0 or not pool:
                continue
            src = tmp / f"in-{n}-{label[:2]}"
            src.mkdir()
            sources = []
            for i in range(n):
                dst = src / f"{i:03d}-{pool[i % len(pool)].name}"
                shutil.copyfile(pool[i % len(pool)], dst)
                sources.append(dst)
            rate = folder_rate(pp, sources, tmp / "out-folder", pipelined=True)
            rss = peak_rss_mb()
            seq = folder_rate(pp, sources, tmp / "out-folder", pipelined=False)
            print(
                f"folder of {n} {label}: pipelined {rate:.2f} photos/s, one at a time {seq:.2f} photos/s "
                f"({rate / seq:.2f}x); peak RSS after the pipelined run {rss:.0f} MiB"
            )

        # ------------------------------------------------------------------ per photo
        rows: dict[str, dict[str, tuple[dict[str, float], int, str]]] = {}
        variants: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
            "nullswap": contextlib.nullcontext
        }
        if args.verify_before:
            legacy = legacy_verify(pp)
            variants["nullswap, verify before"] = lambda: _patched(pp, "_verify", legacy)
        if args.compare_noverify:
            variants["nullswap, --no-verify"] = lambda: _patched(pp, "verifier", None)
        if args.compare_serial_verify and pp.verifier is not None:
            variants["nullswap, verifiers one after the other"] = lambda: _patched(pp.verifier, "parallel", False)
        if args.compare_backend and pp.verifier is not None:
            other = "torch" if pp.verifier.backend == "ort" else "ort"
            t = time.perf_counter()
            ov = Verifier(pp.verifier.names, pp.seen, "cpu", backend=other)
            print(f"verifiers on {other} loaded in {time.perf_counter() - t:.2f} s")
            variants[f"nullswap, verify on {other}"] = lambda: _patched(pp, "verifier", ov)
        if args.compare_speedups:
            from nullswap.protectors.nullswap import load_nullswap
            from nullswap.protectors.nullswap.protector import DEFAULT_WEIGHTS_DIR

            plain, _, _ = load_nullswap(args.checkpoint or DEFAULT_WEIGHTS_DIR)
            prots = [q for q in pp._protectors.values() if hasattr(q, "generator")]

            variants["nullswap, generator unfused"] = lambda: _patched_all(prots, "generator", plain.eval())
            if any(getattr(q, "precision", "fp32") == "bf16" for q in prots):
                variants["nullswap, generator fp32"] = lambda: _patched_all(prots, "precision", "fp32")
        if args.compare_generator:
            from nullswap.protectors.nullswap import load_nullswap
            from nullswap.protectors.nullswap.inference import fuse_for_inference, resolve_precision
            from nullswap.protectors.nullswap.protector import DEFAULT_WEIGHTS_DIR

            plain, _, _ = load_nullswap(args.checkpoint or DEFAULT_WEIGHTS_DIR)
            fused, prec = fuse_for_inference(plain), resolve_precision("auto", "cpu")
            prots = [q for q in pp._protectors.values() if hasattr(q, "generator")]
            print(f"one pass: {[q.backend for q in prots]}; compared with PyTorch fused {prec}")

            def torch_pass() -> contextlib.ExitStack:
                stack = contextlib.ExitStack()
                stack.enter_context(_patched_all(prots, "generator", fused))
                stack.enter_context(_patched_all(prots, "precision", prec))
                return stack

            variants[f"nullswap, one pass in PyTorch {prec}"] = torch_pass
        if len(variants) > 1:  # interleaved run by run, so a change of the machine's load hits all alike
            for k, p in photos.items():
                runs: dict[str, list[tuple[dict[str, float], int, str]]] = {label: [] for label in variants}
                for _ in range(args.repeat):
                    for label, patch in variants.items():
                        with patch():
                            runs[label].append(time_photo(pp, p, tmp / f"out-{p.name}", 1))
                        COSINES[(label, k)] = COSINES[("last", str(p))]
                for label, got in runs.items():
                    mean = {s: sum(g[0].get(s, 0.0) for g in got) / len(got) for s in got[0][0]}
                    rows.setdefault(label, {})[k] = (mean, got[-1][1], got[-1][2])
        else:
            rows["nullswap"] = {k: time_photo(pp, p, tmp / f"out-{p.name}", args.repeat) for k, p in photos.items()}
        if args.refine:
            ppr = PhotoProtector(
                "nullswap", checkpoint=args.checkpoint, seed=0, device="cpu", detector=args.detector, refine=args.refine
            )
            ppr.protect_file(photos["1 MP"])
            rows[f"nullswap refine {args.refine}"] = {
                k: time_photo(ppr, p, tmp / f"out-{p.name}", 1) for k, p in photos.items()
            }
            del ppr
        if args.auto:  # what `nullswap protect PHOTO` does by default: auto's recipe, weak faces redone up to high
            ppa = PhotoProtector("auto", checkpoint=args.checkpoint, seed=0, device="cpu", detector=args.detector)
            ppa.protect_file(photos["1 MP"])
            rows["auto, until protected (the default command)"] = {
                k: time_photo(ppa, p, tmp / f"out-{p.name}", 1) for k, p in photos.items()
            }
            del ppa
        if not args.no_pgd:
            ppg = PhotoProtector("pgd", strength="mid", seed=0, device="cpu", detector=args.detector)
            ppg.protect_file(photos["1 MP"])
            rows["pgd mid"] = {k: time_photo(ppg, p, tmp / f"out-{p.name}", 1) for k, p in photos.items()}
        print(f"peak RSS at the end {peak_rss_mb():.0f} MiB")
        if args.verify_before:
            print()
            print("verification (verify + written + encode), before -> now, per photo:")
            for photo in photos:
                now, before = rows["nullswap"][photo][0], rows["nullswap, verify before"][photo][0]
                a = sum(before.get(k, 0.0) for k in ("verify", "written", "encode"))
                b = sum(now.get(k, 0.0) for k in ("verify", "written", "encode"))
                print(
                    f"  {photo}: {a * 1e3:.0f} ms -> {b * 1e3:.0f} ms ({a / b:.2f}x faster); whole photo "
                    f"{before['total']:.3f} s -> {now['total']:.3f} s ({before['total'] / now['total']:.2f}x), "
                    f"process CPU {before['cpu']:.3f} s -> {now['cpu']:.3f} s ({before['cpu'] / now['cpu']:.2f}x)"
                )
        if args.compare_speedups:
            print()
            print(f"speed-ups off -> on (interleaved, mean of {args.repeat}):")
            for label in (v for v in variants if v in ("nullswap, generator unfused", "nullswap, generator fp32")):
                for photo in photos:
                    b, a = rows[label][photo][0], rows["nullswap"][photo][0]
                    pairs = zip(COSINES["nullswap", photo], COSINES[label, photo], strict=True)
                    diff = max((abs(x - y) for x, y in pairs), default=0.0)
                    print(
                        f"  {label[10:]} -> on, {photo}: whole photo {b['total']:.3f} s -> {a['total']:.3f} s "
                        f"({b['total'] / a['total']:.2f}x), verify {b['verify'] * 1e3:.0f} -> {a['verify'] * 1e3:.0f} "
                        f"ms, cloak {b['cloak'] * 1e3:.0f} -> {a['cloak'] * 1e3:.0f} ms, process CPU {b['cpu']:.3f} -> "
                        f"{a['cpu']:.3f} s; largest cosine difference {diff:.2g}"
                    )
        for label in variants:
            if "verify on" not in label:
                continue
            print()
            base = pp.verifier.backend
            t_label, o_label = (label, "nullswap") if base == "ort" else ("nullswap", label)
            print(f"verify on torch -> on onnxruntime (rows {t_label!r} -> {o_label!r}), mean of {args.repeat}:")
            for photo in photos:
                b, a = rows[t_label][photo][0], rows[o_label][photo][0]
                pairs = zip(COSINES[("nullswap", photo)], COSINES[(label, photo)], strict=True)
                diff = max((abs(x - y) for x, y in pairs), default=0.0)
                print(
                    f"  {photo}: verify {b['verify'] * 1e3:.0f} ms -> {a['verify'] * 1e3:.0f} ms "
                    f"({b['verify'] / a['verify']:.2f}x); whole photo {b['total']:.3f} s -> {a['total']:.3f} s "
                    f"({b['total'] / a['total']:.2f}x), process CPU {b['cpu']:.3f} s -> {a['cpu']:.3f} s "
                    f"({b['cpu'] / a['cpu']:.2f}x); largest cosine difference {diff:.2g}"
                )
        print()
        print(
            "| photo | method | faces | status | total s | cpu s | "
            + " | ".join(f"{s} ms" for s in SPLIT)
            + " | vs nullswap |"
        )
        print("|---|---|---|---|---|---|" + "---|" * len(SPLIT) + "---|")
        for photo in photos:
            base = rows["nullswap"][photo][0]["total"]
            for method, per in rows.items():
                tm, faces, status = per[photo]
                ratio = "" if method == "nullswap" else f"{tm['total'] / base:.1f}x"
                print(
                    f"| {photo} | {method} | {faces} | {status} | {tm['total']:.3f} | {tm['cpu']:.3f} | "
                    + " | ".join(f"{tm[s] * 1e3:.0f}" if s in tm else "-" for s in SPLIT)
                    + f" | {ratio} |"
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
