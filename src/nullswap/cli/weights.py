"""``nullswap weights list|fetch|verify``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

weights_app = typer.Typer(help="List, fetch and verify pretrained weight files.", no_args_is_help=True)
_out = Console()
_err = Console(stderr=True)


@weights_app.command("list")
def list_cmd() -> None:
    """List registered weight files, their licence and where each is found."""
    from nullswap.hub import list_weights, verify

    table = Table("name", "file", "size", "licence", "status", "location / sources")
    for spec in list_weights():
        v = verify(spec)
        where = str(v.path) if v.path else ", ".join(s.describe() for s in spec.sources)
        size = f"{spec.size / 1e6:.1f} MB" if spec.size else "?"
        table.add_row(spec.name, spec.filename, size, spec.license, v.status, where)
    _out.print(table)


@weights_app.command("fetch")
def fetch_cmd(
    names: Annotated[list[str], typer.Argument(help="Weight names (see `nullswap weights list`), or 'all'.")],
) -> None:
    """Fetch weight files into the cache (sha256-verified), with a progress bar."""
    from nullswap.errors import UnknownModelError, WeightsError
    from nullswap.hub import get_weight_spec, list_weights, resolve

    try:
        specs = list_weights() if names == ["all"] else [get_weight_spec(n) for n in names]
    except UnknownModelError as e:
        _err.print(f"[red]error[/red] {escape(str(e))}", soft_wrap=True)
        raise typer.Exit(2) from None
    failed = 0
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=_err) as progress:
        for spec in specs:
            task = progress.add_task(spec.name, total=spec.size)

            def cb(done: int, total: int | None, _task=task) -> None:
                progress.update(_task, completed=done, total=total)

            try:
                path = resolve(spec, progress=cb)
                progress.update(task, completed=spec.size or 1, total=spec.size or 1)
                _out.print(f"{spec.name}: {path}")
            except WeightsError as e:
                failed += 1
                _err.print(f"[red]error[/red] {spec.name}: {escape(str(e))}", soft_wrap=True)
    if failed:
        raise typer.Exit(1)


@weights_app.command("verify")
def verify_cmd() -> None:
    """Check the sha256 of every weight file present locally or in the cache (fetches nothing)."""
    from nullswap.hub import list_weights, verify

    table = Table("name", "status", "path", "detail")
    bad = 0
    for spec in list_weights():
        v = verify(spec)
        bad += v.status == "mismatch"
        style = {"ok": "green", "mismatch": "red", "missing": "yellow"}.get(v.status, "")
        table.add_row(spec.name, f"[{style}]{v.status}[/{style}]" if style else v.status, str(v.path or ""), v.detail)
    _out.print(table)
    if bad:
        raise typer.Exit(1)
