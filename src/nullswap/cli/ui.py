"""``nullswap ui``: the local web app (Gradio, loopback only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

console = Console(stderr=True)


def ui(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 7860,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder for protected photos (default: a temp "
                                                                 "folder).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu | cuda.")] = None,
) -> None:
    """Start the local web app (Gradio, loopback only): upload, protect, compare, download."""
    from nullswap.errors import NullswapError
    from nullswap.ui import launch

    try:
        launch(port=port, out_dir=out, device=device)
    except NullswapError as e:
        console.print(f"[red]error[/red] {escape(str(e))}")
        raise typer.Exit(2) from None
