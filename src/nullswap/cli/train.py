"""``nullswap train``: train a protector recipe from a YAML config on the Fabric trainer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

console = Console(stderr=True)


def train(
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML config (see configs/).")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override KEY=VALUE, e.g. train.max_steps=200.")]
    = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder (default: the config's `out`).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/ckpt/last exactly.")] = False,
) -> None:
    """Train a protector (NullSwap, ID-Guard, ARS, retentive) from a config; multi-GPU under torchrun/fabric run."""
    import importlib.util

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from nullswap.errors import NullswapError
    from nullswap.train import Trainer, build_datasets, load_config

    if importlib.util.find_spec("lightning_fabric") is None:
        msg = ("training: expected lightning-fabric (the [train] extra: pip install 'nullswap[train]', or "
               "pip install -e \".[train]\" in a checkout), got none installed")
        console.print(f"[red]error[/red] {escape(msg)}", soft_wrap=True)
        raise typer.Exit(2)
    try:
        cfg = load_config(config, set_ or [])
        if out is not None:
            cfg["out"] = str(out)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      TextColumn("{task.fields[info]}"), console=console) as bar:
            task = bar.add_task("aligning faces", total=None, info="")

            def on_align(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            data = build_datasets(cfg, progress=on_align)
            bar.update(task, description="training", completed=0, total=None)

            def on_step(step: int, total: int, logs: dict[str, float]) -> None:
                info = " ".join(f"{k}={v:.4g}" for k, v in logs.items() if k in ("loss/total", "loss/id", "loss/mse"))
                bar.update(task, completed=step, total=total, info=info)

            result = Trainer(cfg, progress=on_step).fit(resume=resume, datasets=data)
    except NullswapError as e:
        console.print(f"[red]error[/red] {escape(str(e))}")
        raise typer.Exit(2) from None
    summary = {"step": result.step, "epoch": result.epoch, "seconds": round(result.seconds, 1),
               "out": str(result.out), "eval": result.eval_history[-1] if result.eval_history else None}
    typer.echo(json.dumps(summary, indent=2))
