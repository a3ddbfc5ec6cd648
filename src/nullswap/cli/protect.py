"""``nullswap protect``: cloak every face in photos, folders or globs (rules in :mod:`nullswap.batch`).

Heavy modules (torch, the models) are imported inside the command, so ``nullswap --help`` stays fast.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from nullswap.batch import Outcome

console = Console(stderr=True)

#: Exit codes of ``nullswap protect`` (also in its ``--help`` and the README).
EXIT_OK, EXIT_FAILED, EXIT_SETUP, EXIT_FAIL_ON, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

#: Width of the shortened photo names in the results table (the table fits 80 columns).
NAME_WIDTH = 15

_VERDICTS = ("protected", "partial", "weak")

#: ``nullswap protect --help`` text (paragraphs separated by blank lines; rich wraps each to the terminal).
HELP = (
    "Protect the faces in photos against face swapping, and verify each face.\n\n"
    "Every face is verified by recognizers: arcface-mbf (the extractor class of face-swap models) plus at least one "
    "the method did not optimise against. protected: below the verification threshold of every verifier; partial: "
    "of some; weak: of none. A photo's status is its worst face's. A verdict speaks for its verifiers only: other "
    "recognizers may still match a protected face (MODEL_CARD.md, 'What a protected verdict covers'). GPS locations "
    "are removed unless --keep-gps.\n\n"
    "Photos above Pillow's decompression-bomb limit (89.5 MP) are refused unless --max-pixels allows them. "
    "Animated GIF/WebP/PNG and multi-page TIFF are listed as 'unsupported' (not protected, not a failure).\n\n"
    "Exit codes: 0 every photo done (protected, partial, weak, skipped, no face or unsupported); 1 a photo failed "
    "(unreadable, not writable, too many pixels); 2 nothing was done (bad option, device, missing weights, "
    "unwritable output folder, no images found); 3 --fail-on reached; 130 interrupted (Ctrl-C: run the same "
    "command again to resume)."
)


def protect(
    inputs: Annotated[list[str], typer.Argument(metavar="INPUT", help="Photos, folders (recursive) or glob "
                                                                         "patterns.", show_default=False)],
    out: Annotated[Path | None, typer.Option("--out", "-o", metavar="DIR", help="Output folder (default: beside "
                                             "each photo, as NAME.protected.EXT).")] = None,
    method: Annotated[str, typer.Option(metavar="NAME", help="auto | nullswap | pgd | fgsm (and idguard | ars | "
                                        "retentive with --checkpoint). auto: the checkpoint's own method with "
                                        "--checkpoint, else nullswap when the packaged model is installed and its "
                                        "model card marks it as protecting (today: with 10 refine steps, every "
                                        "second on a blurred copy, their colour part halved, under a 36.5 dB "
                                        "floor, as measured), else "
                                        "pgd.")] = "auto",
    checkpoint: Annotated[Path | None, typer.Option(metavar="DIR", help="Trained protector checkpoint folder (a "
                                                    "training run's export/); without --method its own method is "
                                                    "used.")] = None,
    strength: Annotated[str, typer.Option(metavar="LEVEL", help="low | mid | high: the first strength tried "
                                          "(documented per method).")] = "mid",
    until_protected: Annotated[bool | None, typer.Option(
        "--until-protected/--once", show_default=False,
        help="Redo a face that verifies weak at the next strength (low, mid, high) up to high; the report records "
             "the strength each face needed. --once: a single pass. Default: on for --method auto, else --once.",
    )] = None,
    fail_on: Annotated[str | None, typer.Option("--fail-on", metavar="weak|partial", help="Exit 3 when a face "
                                                "verifies weak (weak), or partial or weak (partial).")] = None,
    verifiers: Annotated[str | None, typer.Option(metavar="A,B", help="Recognizers that verify each face "
                                                  "(default: arcface-mbf plus recognizers the method did not "
                                                  "optimise against).")] = None,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip the verification (one forward pass per "
                                            "verifier and face); photos are then 'unverified'.")] = False,
    recognizers: Annotated[str | None, typer.Option(
        metavar="A,B", help="Recognizers pgd/fgsm attack, or auto's (and --refine K's) refinement steps instead of "
                            "the model's training recognizers; they count as seen in the verdict.")] = None,
    report: Annotated[bool, typer.Option("--report", help="Also write NAME.report.json per photo (every "
                                         "recognizer, every threshold, PSNR/SSIM, after JPEG q75) and "
                                         "nullswap-summary.json/.csv (one row per face, full paths).")] = False,
    keep_gps: Annotated[bool, typer.Option("--keep-gps", help="Keep the EXIF GPS location in the outputs "
                                           "(default: removed).")] = False,
    strip_gps: Annotated[bool, typer.Option("--strip-gps", hidden=True, help="Ignored: GPS is removed by "
                                            "default.")] = False,
    seed: Annotated[int | None, typer.Option(metavar="N", help="Seed: the same seed gives the same cloak.")] = None,
    device: Annotated[str | None, typer.Option(metavar="DEV", help="cpu | cuda | cuda:N (default: cuda when "
                                               "available).")] = None,
    detector: Annotated[str, typer.Option(metavar="NAME", help="Face detector: scrfd (SCRFD-500M on a <= 640-px "
                                          "copy, JPEGs decoded at reduced size for it; finds faces from about 1/20 "
                                          "of the photo's long side, smaller ones down to 20 px when a small-face "
                                          "pass runs), mtcnn (full resolution, faces from 20 px; ~10x slower) or "
                                          "yunet.")] = "scrfd",
    threads: Annotated[int | None, typer.Option(metavar="N", help="CPU threads for the models (default: the "
                                                "number of physical cores).", show_default=False)] = None,
    refine: Annotated[int, typer.Option(metavar="K", help="Method nullswap only: K attack steps on the model's "
                                        "training recognizers after the one pass (stronger, slower); with auto "
                                        "it replaces the packaged recipe's step count.")] = 0,
    max_pixels: Annotated[int | None, typer.Option("--max-pixels", metavar="N", help="Accept photos of up to N "
                                                   "pixels (width x height; default: Pillow's decompression-bomb "
                                                   "limit, 89478485). Memory grows with the photo: about 16 bytes "
                                                   "per pixel.", show_default=False)] = None,
) -> None:
    """Protect the faces in photos against face swapping, and verify each face (full text: :data:`HELP`)."""
    from nullswap.batch import check_output_folders, expand_inputs, plan_outputs
    from nullswap.errors import NullswapError

    del strip_gps  # the legacy flag: GPS is stripped unless --keep-gps
    verify = not no_verify
    if fail_on is not None and fail_on not in ("weak", "partial"):
        _die(f"--fail-on: expected weak or partial, got {fail_on!r}")
    if fail_on is not None and not verify:
        _die("--fail-on: expected verification on, got --no-verify")
    if threads is not None and threads < 1:
        _die(f"--threads: expected a number >= 1, got {threads}")
    if refine < 0:
        _die(f"--refine: expected a number of steps >= 0, got {refine}")
    if max_pixels is not None:
        if max_pixels < 1:
            _die(f"--max-pixels: expected a number of pixels >= 1, got {max_pixels}")
        from nullswap.faces.io import set_max_pixels

        set_max_pixels(max_pixels)

    from nullswap.malloc import keep_freed_memory, limit_malloc_arenas

    limit_malloc_arenas()  # before any thread: a folder's decode/protect/write threads keep ~17 % less resident
    keep_freed_memory()  # each photo's large buffers reuse the last one's memory instead of page-faulting it in
    photos, bad = expand_inputs(inputs)
    for o in bad:
        console.print(f"[red]failed[/red] {o.source}: {o.message}")
    if not photos:
        _die(f"no images found in {', '.join(inputs)} (extensions: .jpg .jpeg .png .webp .bmp .tif .tiff)")
    jobs = plan_outputs(photos, out)
    try:
        check_output_folders(j.output.parent for j in jobs)
        with console.status("loading the models"):
            import torch

            from nullswap.protection import PhotoProtector, physical_cores

            torch.set_num_threads(threads or physical_cores())  # before the models: SCRFD's session reads it
            pp = PhotoProtector(method, checkpoint=checkpoint, strength=strength, seed=seed, device=device,
                                recognizers=_names(recognizers), detector=detector, verify=verify,
                                verifiers=_names(verifiers), until_protected=until_protected,
                                **({"refine": refine} if refine else {}))
            pp.strip_gps = not keep_gps  # the JPEG encoded for the verdict is then the one written
            if report:
                pp.load_report_recognizers()
    except NullswapError as e:
        _die(str(e))
    settings = dict(pp.settings)
    out_console = Console()
    out_console.print(_header(pp), highlight=False, soft_wrap=False)
    outcomes = _run(jobs, pp, settings, report, keep_gps)
    outcomes = bad + outcomes
    out_console.print(_table(outcomes))
    if report:
        _write_summary(out or (jobs[0].output.parent if jobs else Path(".")), settings, pp, outcomes)
    counts = {s: sum(o.status == s for o in outcomes) for s in _statuses()}
    faces = _face_outcomes(outcomes)
    face_counts = {k: faces.count(k) for k in _VERDICTS}
    out_console.print(f"photos: {', '.join(f'{v} {k}' for k, v in counts.items() if v or k in _VERDICTS)}",
                      highlight=False)
    if pp.verifier is not None:
        out_console.print(f"faces: {', '.join(f'{v} {k}' for k, v in face_counts.items())}", highlight=False)
    if out is not None:
        out_console.print(f"outputs in {out}", highlight=False)
    if counts["failed"]:
        raise typer.Exit(EXIT_FAILED)
    if fail_on is not None:
        bad_levels = ("weak",) if fail_on == "weak" else ("weak", "partial")
        n = sum(f in bad_levels for f in faces)
        if n:
            console.print(f"--fail-on {fail_on}: {n} face{'s' if n != 1 else ''} verified {' or '.join(bad_levels)}")
            raise typer.Exit(EXIT_FAIL_ON)


def _die(message: str) -> NoReturn:
    console.print(f"[red]error[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_SETUP)


def _names(text: str | None) -> list[str] | None:
    return [r.strip() for r in text.split(",") if r.strip()] if text else None


def _statuses() -> tuple[str, ...]:
    from nullswap.batch import STATUSES

    return STATUSES


def _header(pp: Any) -> str:
    """Method, strength and the verification set, on lines of at most 80 characters."""
    from nullswap.protection import STRENGTHS

    s = f"method {pp.method}, strength {pp.strength}"
    if pp.until_protected and pp.verifier is not None and pp.strength != STRENGTHS[-1]:
        s += ", weak faces redone up to high"
    if pp.verifier is None:
        return s + "; verification off"
    groups: dict[str, list[str]] = {}
    for n in pp.verifier.names:
        seen = pp.verifier.is_seen(n)
        tag = "seen by" if seen else "unseen by" if seen is False else "maybe seen by"
        groups.setdefault(tag, []).append(n)
    lines = [s] + [f"verifiers {tag} {pp.method}: {', '.join(names)}" for tag, names in groups.items()]
    return "\n".join(lines + [
        "fooled: cosine(clean, protected face) below the LFW best-accuracy threshold",
        "protected: these verifiers fooled; other recognizers may still match the face",
    ])


def _run(jobs: list[Any], pp: Any, settings: dict[str, Any], report: bool, keep_gps: bool) -> list[Outcome]:
    """Run the batch with two progress bars: photos, and the faces of the photo at work (each with an ETA)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from nullswap.batch import run_batch

    done_count = 0
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      TextColumn("{task.fields[name]}"), console=console, transient=True) as bar:
            task = bar.add_task("protecting", total=len(jobs), name="")
            faces = bar.add_task("  faces", total=None, name="", visible=False)
            current: dict[str, str] = {"name": ""}

            def face_progress(n_done: float, n_total: int, strength: str) -> None:
                if n_done == 0:  # a new pass over a photo's faces (a redo at a higher strength is a new pass)
                    bar.reset(faces, total=n_total, visible=True, name=f"{current['name']} ({strength})")
                bar.update(faces, completed=n_done)

            def protect_one(p: Path) -> Any:
                current["name"] = p.name
                bar.update(task, name=p.name)
                return pp.protect_file(p, report=report)

            def done(o: Outcome) -> None:
                nonlocal done_count
                done_count += 1
                bar.update(task, advance=1)
                if o.status == "failed":
                    console.print(f"[red]failed[/red] {o.source}: {o.message}", highlight=False, soft_wrap=True)
                elif o.status == "unsupported":
                    console.print(f"[yellow]unsupported[/yellow] {o.source}: {_reason(o.message)}",
                                  highlight=False, soft_wrap=True)

            if hasattr(pp, "on_progress"):
                pp.on_progress = face_progress
            return run_batch(jobs, protect_one, settings=settings, report=report, strip_gps=not keep_gps,
                             on_done=done, prefetch=getattr(pp, "prefetch", None))
    except KeyboardInterrupt:
        console.print(f"interrupted after {done_count} photo{'s' if done_count != 1 else ''}; run the same command "
                      "again to resume", highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _reason(message: str) -> str:
    """An ``unsupported: ...`` message without its prefix (the status column already says it)."""
    return message.removeprefix("unsupported: ")


def _short(path: Path, root: Path | None, width: int = NAME_WIDTH) -> str:
    """``path`` relative to ``root`` when under it, shortened from the left to ``width`` characters."""
    try:
        text = str(path.relative_to(root)) if root is not None else path.name
    except ValueError:
        text = path.name
    return text if len(text) <= width else "…" + text[-(width - 1):]


def _common_root(outcomes: list[Outcome]) -> Path | None:
    parents = [str(o.source.parent.absolute()) for o in outcomes]
    try:
        return Path(os.path.commonpath(parents)) if parents else None
    except ValueError:
        return None


def _face_outcomes(outcomes: list[Outcome]) -> list[str]:
    return [v.get("outcome", "") for o in outcomes for v in o.verdicts]


def _table(outcomes: list[Outcome]) -> Any:
    """The results table: a row per photo (and per face where a photo has several), 80 columns wide at most."""
    from rich.table import Table

    t = Table(box=None, pad_edge=False, padding=(0, 1), header_style="bold")
    t.add_column("photo", max_width=NAME_WIDTH, no_wrap=True, overflow="ellipsis")
    t.add_column("face", no_wrap=True)
    t.add_column("status", no_wrap=True)
    t.add_column("verdict", max_width=38, no_wrap=True, overflow="ellipsis")
    t.add_column("strength", no_wrap=True)
    root = _common_root(outcomes)
    for o in outcomes:
        name = _short(o.source.absolute(), root)
        status = o.status
        if not o.verdicts:
            detail = {"no-face": "no face found, no output",
                      "unsupported": _reason(o.message),
                      "unverified": f"{o.faces} face{'s' if o.faces != 1 else ''}, not verified"}.get(o.status,
                                                                                                   o.message)
            t.add_row(name, "-" if not o.faces else "all", status, detail, "")
            continue
        if len(o.verdicts) > 1 or status == "skipped":
            counts = {k: sum(v.get("outcome") == k for v in o.verdicts) for k in _VERDICTS}
            note = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
            if status == "skipped":
                note = f"done before: {note}"
            t.add_row(name, "all", status, note, "")
            name = ""
        for i, v in enumerate(o.verdicts):
            t.add_row(name, str(i + 1), v.get("outcome", ""), v.get("summary", ""), v.get("strength") or "")
    return t


def _face_rows(o: Outcome) -> list[dict[str, Any]]:
    """Per-face summary rows (full paths, verdict, per-verifier and per-recognizer metrics)."""
    base = {"source": str(o.source.absolute()), "output": str(o.output.absolute()) if o.output else "",
            "photo_status": o.status, "message": o.message}
    rep_faces = (o.report or {}).get("faces", [])
    if not o.verdicts and not rep_faces:
        return [dict(base)]
    rows = []
    for i in range(max(len(o.verdicts), len(rep_faces))):
        v = o.verdicts[i] if i < len(o.verdicts) else {}
        rf = rep_faces[i] if i < len(rep_faces) else {}
        row: dict[str, Any] = {**base, "face": i + 1, "box": json.dumps([round(x, 1) for x in
                                                                         (v.get("box") or rf.get("box") or [])]),
                               "outcome": v.get("outcome", ""), "verdict": v.get("summary", ""),
                               "strength": v.get("strength", ""),
                               "strengths_tried": " ".join(v.get("strengths_tried", []))}
        for name, s in (v.get("verifiers") or {}).items():
            row[f"verify:{name}:seen"] = s.get("seen")
            row[f"verify:{name}:cosine"] = round(s["cosine"], 4)
            row[f"verify:{name}:fooled"] = (s.get("fooled") or {}).get("best")
        for variant in ("protected", "jpeg75"):
            m = rf.get(variant)
            if not m:
                continue
            row[f"{variant}:psnr"] = round(m["psnr"], 2)
            row[f"{variant}:ssim"] = round(m["ssim"], 4)
            for name, r in m.get("recognizers", {}).items():
                row[f"{variant}:{name}:cosine"] = round(r["cosine"], 4)
                row[f"{variant}:{name}:below_best"] = r.get("below_threshold")
        rows.append(row)
    return rows


def _write_summary(folder: Path, settings: dict[str, Any], pp: Any, outcomes: list[Outcome]) -> None:
    """``nullswap-summary.json`` (every photo, every face with its verdict and report) and ``.csv`` (a row per face)."""
    photos = []
    for o in outcomes:
        rep_faces = (o.report or {}).get("faces", [])
        faces = []
        for i in range(max(len(o.verdicts), len(rep_faces))):
            entry = dict(rep_faces[i]) if i < len(rep_faces) else {}
            if i < len(o.verdicts):
                entry["verdict"] = o.verdicts[i]
            faces.append(entry)
        photos.append({"source": str(o.source.absolute()), "output": str(o.output.absolute()) if o.output else None,
                       "status": o.status, "message": o.message, "faces": faces})
    rows = [r for o in outcomes for r in _face_rows(o)]
    fields: dict[str, None] = {}
    for r in rows:
        fields.update(dict.fromkeys(r))
    doc = {"settings": settings, "verifiers": pp.verifier.describe() if pp.verifier else None,
           "seen": pp.seen, "counts": {s: sum(o.status == s for o in outcomes) for s in _statuses()},
           "photos": photos}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "nullswap-summary.json").write_text(json.dumps(doc, indent=1))
        with open(folder / "nullswap-summary.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(fields), restval="")
            w.writeheader()
            w.writerows(rows)
    except OSError as e:
        console.print(f"[yellow]warning[/yellow] could not write the summary: {e}")
