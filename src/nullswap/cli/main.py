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
from rich.table import Table

from nullswap.__about__ import __version__
from nullswap.cli.evaluate import evaluate
from nullswap.cli.protect import HELP as PROTECT_HELP
from nullswap.cli.protect import protect
from nullswap.cli.recognizers import recognizers_app
from nullswap.cli.train import train
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


@app.command()
def faces(
    photos: Annotated[list[Path], typer.Argument(help="Photos to run the face pipeline on.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("faces-out"),
    detector: Annotated[str, typer.Option(help="Face detector: mtcnn, yunet or scrfd.")] = "mtcnn",
    template: Annotated[str, typer.Option(help="Alignment template of the written crops.")] = "protector-256",
) -> None:
    """Detect, draw and align faces (a debugging view of the face pipeline)."""
    from PIL import Image, ImageDraw

    from nullswap.errors import NullswapError
    from nullswap.faces import align_faces, create_detector, read_image, write_image
    from nullswap.faces.io import to_uint8

    out.mkdir(parents=True, exist_ok=True)
    det = create_detector(detector)
    table = Table("photo", "faces", "scores")
    failed = 0
    for photo in photos:
        try:
            img = read_image(photo)
            d = det.detect(img.tensor)[0]
            crops, _ = align_faces(img.tensor, d.landmarks, template)
        except NullswapError as e:
            console.print(f"[red]error[/red] {e}")
            failed += 1
            continue
        canvas = Image.fromarray(to_uint8(img.tensor))
        draw = ImageDraw.Draw(canvas)
        r = max(2, int(max(canvas.size) / 300))
        for box, lm in zip(d.boxes.tolist(), d.landmarks.tolist(), strict=True):
            draw.rectangle(box, outline=(0, 255, 0), width=r)
            for x, y in lm:
                draw.ellipse([x - r, y - r, x + r, y + r], fill=(255, 0, 0))
        canvas.save(out / f"{photo.stem}.faces.png")
        for i, c in enumerate(crops):
            write_image(out / f"{photo.stem}.face{i}.png", c, overwrite=True)
        table.add_row(str(photo), str(len(d)), " ".join(f"{s:.3f}" for s in d.scores.tolist()))
    Console().print(table)
    if failed:
        raise typer.Exit(1)


@app.command()
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
        console.print(f"[red]error[/red] {e}")
        raise typer.Exit(2) from None


if __name__ == "__main__":  # pragma: no cover
    app()
