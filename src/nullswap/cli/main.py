"""The ``nullswap`` command line (typer). Each command's one-line help is its docstring's first line.

Only typer, rich and the command modules (which import nothing heavy at module level) load here, so ``nullswap
--help`` and ``nullswap --version`` answer without importing torch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from nullswap.__about__ import __version__
from nullswap.cli.evaluate import evaluate
from nullswap.cli.faces import faces
from nullswap.cli.protect import HELP as PROTECT_HELP
from nullswap.cli.protect import protect
from nullswap.cli.recognizers import recognizers_app
from nullswap.cli.teacher import teacher
from nullswap.cli.train import train
from nullswap.cli.ui import ui
from nullswap.cli.weights import weights_app


def _hide_flag_types() -> None:
    """Show no ``<bool>`` type tag after on/off flags in ``--help`` (typer prints one for every option)."""
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover - another typer layout: keep its default help
        return
    original = TyperOption.display_type_rich
    if getattr(original, "_nullswap", False):
        return

    def display_type_rich(self: TyperOption, ctx: object) -> str | None:
        if getattr(self, "is_flag", False) and not getattr(self, "count", False):
            return None
        return original(self, ctx)

    display_type_rich._nullswap = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_hide_flag_types()

app = typer.Typer(name="nullswap", help="Protect face photos against deepfake face swapping.", no_args_is_help=True,
                  add_completion=False)
app.add_typer(weights_app, name="weights")
app.add_typer(recognizers_app, name="recognizers")
app.command(help=PROTECT_HELP)(protect)
app.command()(evaluate)
app.command()(train)
app.command()(teacher)
app.command()(faces)
app.command()(ui)
console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nullswap {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    weights_dir: Annotated[Path | None, typer.Option("--weights-dir", help="Folder searched first for weight files.",
                                                     envvar="NULLSWAP_WEIGHTS")] = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logging (-v info, -vv debug).")] = 0,
) -> None:
    """Protect face photos against deepfake face swapping."""
    from rich.logging import RichHandler

    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(message)s", handlers=[RichHandler(console=console, show_path=False)])
    if weights_dir is not None:
        from nullswap.hub import set_weights_dir

        set_weights_dir(weights_dir)


if __name__ == "__main__":  # pragma: no cover
    app()
