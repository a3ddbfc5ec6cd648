"""``nullswap faces``: draw detections and write aligned crops (a debugging view of the face pipeline)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(stderr=True)


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
            console.print(f"[red]error[/red] {escape(str(e))}")
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
