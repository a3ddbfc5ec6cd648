"""``nullswap recognizers list|verify``."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

recognizers_app = typer.Typer(help="List face recognizers and verify them on LFW.", no_args_is_help=True)
_out = Console()
_err = Console(stderr=True)


@recognizers_app.command("list")
def list_cmd() -> None:
    """List registered recognizers with their input contract and weight availability."""
    from nullswap.recognizers import list_recognizers, recognizer_info

    table = Table("name", "dim", "input", "template", "weights", "offline")
    for name in list_recognizers():
        i = recognizer_info(name)
        table.add_row(name, str(i.embedding_dim), f"{i.input_size[0]}x{i.input_size[1]}", i.template,
                      ", ".join(i.weights) or "user-supplied", "yes" if i.offline else "no")
    _out.print(table)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=_err)


@recognizers_app.command("verify")
def verify_cmd(
    lfw: Annotated[Path, typer.Option("--lfw", help="LFW root (images/<Name>/..., meta/pairs.txt).")],
    models: Annotated[str | None, typer.Option(help="Comma-separated recognizers (default: all offline).")] = None,
    detector: Annotated[str, typer.Option(help="Landmark detector: mtcnn, yunet or scrfd (the thresholds "
                                       "in thresholds.json were calibrated with mtcnn).")] = "mtcnn",
    limit: Annotated[int | None, typer.Option(help="Only the first N matched + N mismatched pairs per fold.")] = None,
    batch_size: Annotated[int, typer.Option(help="Faces per forward pass.")] = 32,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    out: Annotated[Path | None, typer.Option(help="Write the results as JSON here.")] = None,
) -> None:
    """Standard 10-fold LFW verification (pairs.txt) of each recognizer: accuracy +- std, AUC, threshold."""
    from nullswap.datasets.lfw import LFW
    from nullswap.evaluation.lfw_verification import verify_lfw
    from nullswap.faces import create_detector
    from nullswap.recognizers import create_recognizer, list_recognizers

    names = models.split(",") if models else list_recognizers(offline_only=True)
    data = LFW(lfw, limit_per_fold=limit)
    with _progress() as prog:
        task = prog.add_task(f"landmarks ({detector})", total=len(data.keys))
        landmarks = data.landmarks(create_detector(detector),
                                   progress=lambda i, n: prog.update(task, completed=len(data.keys) - n + i))
        prog.update(task, completed=len(data.keys))
    table = Table("recognizer", "accuracy", "± std", "AUC", "threshold (best acc.)", "thr. FAR 1e-2",
                  "thr. FAR 1e-3", "missing", "seconds")
    results = {}
    for name in names:
        model = create_recognizer(name, device=device)
        t0 = time.perf_counter()
        with _progress() as prog:
            task = prog.add_task(name, total=sum(v is not None for v in landmarks.values()))
            r = verify_lfw(model, data, landmarks, batch_size, device, progress=lambda n, _t=task: prog.advance(_t, n))
        dt = time.perf_counter() - t0
        results[name] = {**r.to_dict(), "seconds": dt}
        table.add_row(name, f"{r.mean_accuracy:.4f}", f"{r.std_accuracy:.4f}", f"{r.auc:.4f}",
                      f"{r.best_threshold:.4f}", f"{r.far_thresholds.get('1e-02', float('nan')):.4f}",
                      f"{r.far_thresholds.get('1e-03', float('nan')):.4f}", str(r.n_missing), f"{dt:.0f}")
    _out.print(table)
    if out is not None:
        meta = {"lfw": str(lfw), "pairs": len(data.pairs), "images": len(data.keys), "detector": detector,
                "device": device, "host": platform.machine(), "limit_per_fold": limit}
        out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
