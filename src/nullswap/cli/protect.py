"""``nullswap protect``: cloak every face in photos, folders or globs (rules in :mod:`nullswap.batch`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console(stderr=True)


def protect(
    inputs: Annotated[list[str], typer.Argument(help="Photos, folders (recursive) or glob patterns.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: beside each photo, "
                                                                 "as NAME.protected.EXT).")] = None,
    method: Annotated[str, typer.Option(help="nullswap | pgd | fgsm | idguard | ars | retentive; auto: nullswap "
                                             "when its model is installed, else pgd.")] = "auto",
    checkpoint: Annotated[Path | None, typer.Option(help="Trained protector checkpoint folder.")] = None,
    strength: Annotated[str, typer.Option(help="low | mid | high (documented per method).")] = "mid",
    recognizers: Annotated[str | None, typer.Option(help="Comma-separated recognizers pgd/fgsm attack.")] = None,
    report: Annotated[bool, typer.Option("--report", help="Write NAME.report.json per photo and a summary.")] = False,
    strip_gps: Annotated[bool, typer.Option("--strip-gps", help="Remove EXIF GPS from the outputs.")] = False,
    seed: Annotated[int | None, typer.Option(help="Seed: the same seed gives the same cloak.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu | cuda (default: cuda when available).")] = None,
    detector: Annotated[str, typer.Option(help="Face detector: mtcnn or yunet.")] = "mtcnn",
) -> None:
    """Protect the faces in photos against face swapping; exit code 1 if any photo failed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from nullswap.batch import expand_inputs, plan_outputs, run_batch
    from nullswap.errors import NullswapError
    from nullswap.protection import PhotoProtector

    photos, bad = expand_inputs(inputs)
    jobs = plan_outputs(photos, out)
    try:
        pp = PhotoProtector(method, checkpoint=checkpoint, strength=strength, seed=seed, device=device,
                            recognizers=[r.strip() for r in recognizers.split(",")] if recognizers else None,
                            detector=detector)
    except NullswapError as e:
        console.print(f"[red]error[/red] {e}")
        raise typer.Exit(2) from None
    settings = dict(pp.settings)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[name]}"), console=console) as bar:
        task = bar.add_task(f"protecting ({pp.method})", total=len(jobs), name="")

        def done(o) -> None:
            bar.update(task, advance=1, name=o.source.name)
            if o.status == "failed":
                console.print(f"[red]failed[/red] {o.source}: {o.message}")

        outcomes = run_batch(jobs, lambda p: pp.protect_file(p, report=report), settings=settings, report=report,
                             strip_gps=strip_gps, on_done=done)
    outcomes = bad + outcomes
    for o in bad:
        console.print(f"[red]failed[/red] {o.source}: {o.message}")
    table = Table("photo", "status", "faces", "output", *(["max cosine / recognizers below thr."] if report else []))
    rows = []
    for o in outcomes:
        extra = []
        if report:
            extra = [_summary_cell(o.report)]
        table.add_row(str(o.source), o.status, str(o.faces), str(o.output or ""), *extra)
        rows.append({"source": str(o.source), "status": o.status, "faces": o.faces, "output": str(o.output or ""),
                     "message": o.message})
    Console().print(table)
    if report:
        folder = out or (jobs[0].output.parent if jobs else Path("."))
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "nullswap-summary.json").write_text(json.dumps({"settings": settings, "photos": rows}, indent=1))
            with open(folder / "nullswap-summary.csv", "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["source"])
                w.writeheader()
                w.writerows(rows)
        except OSError as e:
            console.print(f"[yellow]warning[/yellow] could not write the summary: {e}")
    counts = {s: sum(o.status == s for o in outcomes) for s in ("protected", "skipped", "no-face", "failed")}
    console.print(" ".join(f"{k}: {v}" for k, v in counts.items()))
    if counts["failed"]:
        raise typer.Exit(1)


def _summary_cell(report: dict | None) -> str:
    if not report or not report.get("faces"):
        return ""
    cells = []
    for f in report["faces"]:
        recs = f.get("protected", {}).get("recognizers", {})
        if recs:
            worst = max(v["cosine"] for v in recs.values())
            below = sum(bool(v["below_threshold"]) for v in recs.values())
            cells.append(f"{worst:.2f} / {below}/{len(recs)}")
    return "; ".join(cells)
