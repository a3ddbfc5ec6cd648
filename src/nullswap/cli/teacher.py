"""``nullswap teacher``: a slow protector's outputs on a config's training crops, for distillation (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

    from nullswap.datasets.teacher_targets import TeacherTargets

console = Console(stderr=True)


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        i, n = -1, 0
    if not (n >= 1 and 0 <= i < n):
        raise typer.BadParameter(f"expected I/N with 0 <= I < N, got {text!r}")
    return i, n


def teacher(
    config: Annotated[Path, typer.Option("--config", "-c", help="Training config whose training crops to use.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Targets file to write (.safetensors).")],
    checkpoint: Annotated[Path | None, typer.Option(help="NullSwap checkpoint folder (default: the packaged one).")]
    = None,
    refine: Annotated[int | None, typer.Option(help="Refinement steps (default: the packaged auto recipe's).")] = None,
    psnr_floor: Annotated[float | None, typer.Option(help="PSNR floor in dB (default: the auto recipe's).")] = None,
    refine_blur: Annotated[float | None, typer.Option(help="Blurred-copy sigma (default: the auto recipe's).")]
    = None,
    refine_chroma: Annotated[float | None, typer.Option(help="Colour factor of the steps (default: auto's).")] = None,
    strength: Annotated[str, typer.Option(help="Strength of the one pass the steps start from.")] = "mid",
    limit: Annotated[int | None, typer.Option(help="Only this many training crops (a seeded random subset).")] = None,
    shard: Annotated[str, typer.Option(help="I/N: this process makes every N-th of the chosen crops from I.")] = "0/1",
    batch_size: Annotated[int, typer.Option(help="Crops per protect call.")] = 8,
    threads: Annotated[int | None, typer.Option(help="Torch threads (default: physical cores).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Config override KEY=VALUE.")] = None,
) -> None:
    """Compute teacher targets (the protector's change on each training crop) to distil into the one pass."""
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from nullswap.datasets.teacher_targets import make_teacher_targets, save_teacher_targets
    from nullswap.errors import NullswapError
    from nullswap.protection import auto_recipe, physical_cores
    from nullswap.protectors import create_protector
    from nullswap.train import build_datasets, load_config

    part, parts = _shard(shard)
    torch.set_num_threads(threads or physical_cores())
    recipe = auto_recipe()
    opts = {
        "refine": refine if refine is not None else int(recipe.get("refine", 10)),
        "psnr_floor": psnr_floor if psnr_floor is not None else float(recipe.get("psnr_floor", 36.5)),
        "refine_blur": refine_blur if refine_blur is not None else float(recipe.get("refine_blur", 0.0)),
        "refine_chroma": refine_chroma if refine_chroma is not None else float(recipe.get("refine_chroma", 1.0)),
    }
    try:
        cfg = load_config(config, set_ or [])
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console) as bar:
            task = bar.add_task("aligning faces", total=None)
            data = build_datasets(cfg, progress=lambda d, t: bar.update(task, completed=d, total=t))
            train_set = data["train"]
            order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(subset_seed(cfg)))
            chosen = order[: limit if limit is not None else len(order)].tolist()[part::parts]
            prot = create_protector("nullswap", checkpoint=None if checkpoint is None else str(checkpoint),
                                    strength=strength, **opts)
            desc = {"protector": "nullswap", "strength": strength, **opts, **_weights(checkpoint),
                    "seed": int(cfg.get("seed", 0)), "subset_seed": subset_seed(cfg),
                    "template": cfg["data"].get("template")}
            bar.update(task, description=f"teacher {part}/{parts}", completed=0, total=len(chosen))
            targets = make_teacher_targets(prot, train_set.tensor, chosen, batch_size=batch_size,
                                           seed=int(cfg.get("seed", 0)), teacher=desc,
                                           progress=lambda d, t: bar.update(task, completed=d, total=t))
        out.parent.mkdir(parents=True, exist_ok=True)
        save_teacher_targets(out, targets)
    except NullswapError as e:
        console.print(f"[red]error[/red] {escape(str(e))}")
        raise typer.Exit(2) from None
    psnr_mean = _targets_psnr(targets, train_set.tensor)
    typer.echo(json.dumps({"out": str(out), "crops": len(targets), "clipped": targets.clipped,
                           "psnr_mean": round(psnr_mean, 2), "teacher": desc}, indent=2))


#: Offset of the subset's seed from the config's. Choice (session 16): the trainer shuffles epoch ``e`` with
#: ``seed + e`` (:class:`~nullswap.train.trainer.ResumableSampler`); drawn with ``seed`` itself, a ``--limit`` subset
#: was the first crops of epoch 0's order, so a run started from step 0 saw only targets for its first ``limit / batch``
#: steps and none for the rest of epoch 0 (targets made before this change, e.g. session 15's, are such a subset).
SUBSET_SEED_OFFSET = 100_003


def subset_seed(cfg: dict) -> int:
    """Seed of the ``--limit`` subset's permutation: the config's seed plus :data:`SUBSET_SEED_OFFSET`."""
    return int(cfg.get("seed", 0)) + SUBSET_SEED_OFFSET


def _targets_psnr(targets: TeacherTargets, crops: Callable[[list[int]], torch.Tensor], chunk: int = 256) -> float:
    """Mean PSNR (dB) of the stored teacher outputs (crop + change, clamped as the lookup serves them) to the crops."""
    import torch

    from nullswap.metrics.quality import psnr

    vals = []
    for start in range(0, len(targets), chunk):
        rows = list(range(start, min(start + chunk, len(targets))))
        x = crops(targets.indices[rows].tolist())
        vals.append(psnr((x + targets.change(rows)).clamp(0, 1), x).clamp_max(100.0))
    return float(torch.cat(vals).mean())


def _weights(checkpoint: Path | None) -> dict[str, str]:
    """Which generator weights the teacher ran (folder and sha256), for the targets' description."""
    if checkpoint is None:
        from nullswap.hub import get_weight_spec

        return {"checkpoint": "packaged nullswap-default",
                "weights_sha256": str(get_weight_spec("nullswap-default").sha256)}
    from nullswap.hub.store import sha256_file

    return {"checkpoint": str(checkpoint), "weights_sha256": sha256_file(Path(checkpoint) / "model.safetensors")}
