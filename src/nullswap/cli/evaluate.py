"""``nullswap evaluate``: the papers' protocols for one or more protectors; results.json, tables, figures."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

console = Console(stderr=True)


def _checkpoint_kind(path: Path) -> str:
    """The protector a checkpoint folder holds, from its ``config.json`` (``nullswap`` when it says nothing).

    The formats are :data:`nullswap.protection.CHECKPOINT_FORMATS`.
    """
    from nullswap.protection import CHECKPOINT_FORMATS

    try:
        fmt = json.loads((path / "config.json").read_text()).get("format")
    except (OSError, ValueError, AttributeError):
        return "nullswap"  # the loader then reports what is missing or malformed
    return CHECKPOINT_FORMATS.get(fmt, "nullswap")


_GUARD_SUFFIX = re.compile(r"\+guard(\d+(?:\.\d+)?)?$")
_BLUR_SUFFIX = re.compile(r"\+blur(\d+(?:\.\d+)?)$")
_CHROMA_SUFFIX = re.compile(r"\+chroma(\d+(?:\.\d+)?)$")
_STRENGTH_PART = re.compile(r"\+strength(\d+(?:\.\d+)?)(?=\+|$)")


def _build(spec: str, strength: str, device: str, attack_recognizers: list[str] | None, template: str | None):
    from nullswap.protectors import create_protector

    # "CHECKPOINT+guard": with the inference PSNR-floor guard `protect` applies (the model's training floor);
    # "CHECKPOINT+guard36.5": the guard at another floor (dB)
    m = _GUARD_SUFFIX.search(spec)
    guard: str | float | None = None
    if m:
        guard = float(m.group(1)) if m.group(1) else "auto"
        spec = spec[: m.start()]
    # "CHECKPOINT+refine10+blur1+chroma0.5+mask": the refine steps' colour part halved, their grey part scaled by
    # contrast masking
    masking = spec.endswith("+mask")
    if masking:
        spec = spec[: -len("+mask")]
    c = _CHROMA_SUFFIX.search(spec)
    chroma = float(c.group(1)) if c else 1.0
    if c:
        spec = spec[: c.start()]
    b = _BLUR_SUFFIX.search(spec)  # "CHECKPOINT+refine5+blur1": the refine steps' objective adds a blurred copy
    blur = float(b.group(1)) if b else 0.0
    if b:
        spec = spec[: b.start()]
    # "CHECKPOINT+strength1.15[+refine...]": this checkpoint at its own strength (the factor on the generator's
    # residual) instead of --strength: the one pass's protection-vs-PSNR trade-off beside baselines at --strength
    st = _STRENGTH_PART.search(spec)
    if st:
        spec = spec[: st.start()] + spec[st.end():]
    spec, _, refine = spec.partition("+refine")  # "CHECKPOINT+refine5": one pass plus 5 attack steps
    path = Path(spec)
    if path.exists():  # a checkpoint folder: the protector named by its config.json "format" (NullSwap by default)
        kind = _checkpoint_kind(path)
        label = path.name if path.name != "export" else path.parent.name
        kw: dict = {"refine": int(refine)} if refine else {}
        if blur:
            kw["refine_blur"] = blur
        if c:
            kw["refine_chroma"] = chroma
        if masking:
            kw["refine_masking"] = True
        if kind == "nullswap":  # raw generator numbers unless the guard is asked for (reported separately)
            kw["psnr_floor"] = guard
        own: str | float = float(st.group(1)) if st else strength
        name = (f"{kind}[{label}]" + (f"+strength{float(st.group(1)):g}" if st else "")
                + (f"+refine{int(refine)}" if refine else "") + (f"+blur{blur:g}" if blur else "")
                + (f"+chroma{chroma:g}" if c else "") + ("+mask" if masking else "")
                + ("" if guard is None else "+guard" if guard == "auto" else f"+guard{guard:g}"))
        return name, create_protector(kind, checkpoint=str(path), strength=own, device=device, **kw)
    kwargs = {"strength": strength, "device": device}
    if attack_recognizers and spec in ("pgd", "fgsm"):
        kwargs["recognizers"] = attack_recognizers
    if template and spec in ("pgd", "fgsm"):
        kwargs["template"] = template
    if spec in ("clean", "identity"):
        kwargs = {}
    return spec, create_protector(spec, **kwargs)


def evaluate(
    protector: Annotated[str, typer.Option(help="Protector name(s) or checkpoint folder(s), comma-separated; "
                                                "e.g. clean,pgd,runs/x/export; a NullSwap checkpoint is measured "
                                                "raw (no inference guard); '+refineK' adds K attack steps "
                                                "(runs/x/export+refine5), '+blurS' adds a sigma-S blurred copy to "
                                                "their objective (+refine10+blur1), '+chromaC' scales the colour part "
                                                "of those steps by C (+refine10+blur1+chroma0.5; 0 = luminance "
                                                "only), '+mask' scales their grey part by contrast masking, "
                                                "'+strength1.15' (right after the checkpoint) runs it at that "
                                                "strength instead of --strength, "
                                                "'+guard' applies protect's "
                                                "PSNR-floor guard, '+guard36.5' the guard at 36.5 dB.")],
    data: Annotated[Path, typer.Option(help="Dataset root (identity folders: LFW, CelebA crops).")],
    recognizers: Annotated[str, typer.Option(help="Comma-separated recognizers to measure.")] =
    "dlib-resnet29,mobilefacenet-casia,faceapi-resnet29,faceplugin-512,human-mobilefacenet,human-mobileface,"
    "human-faceres",
    protocol: Annotated[str, typer.Option(help="identification | quality | robustness | swap | manipulation "
                                               "(comma-separated).")]
    = "quality,identification",
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("eval-out"),
    layout: Annotated[str, typer.Option(help="identity-folders | celeba-hq | plain.")] = "identity-folders",
    max_identities: Annotated[int | None, typer.Option(help="Use the first N identities.")] = None,
    max_probes: Annotated[int | None, typer.Option(help="Protect at most N images (spread over identities).")]
    = None,
    split: Annotated[str | None, typer.Option(help="Only this part (train|val|test) of the identity-disjoint "
                                                   "training split: held-out identities.")] = None,
    split_seed: Annotated[int, typer.Option(help="Seed of that split (the training config's data.split_seed).")]
    = 0,
    template: Annotated[str | None, typer.Option(help="Crop template (default: the protectors' own, e.g. "
                                                      "protector-128 for 128-px models).")] = None,
    strength: Annotated[str, typer.Option(help="low | mid | high.")] = "mid",
    attack_recognizers: Annotated[str | None, typer.Option(help="Recognizers pgd/fgsm attack (default: theirs).")]
    = None,
    perturbations: Annotated[str | None, typer.Option(help="Robustness perturbations (default: all), NAME for its 5 "
                                                           "levels or NAME@VALUE, e.g. jpeg@75.")] = None,
    batch_size: Annotated[int, typer.Option(help="Crops per protector call.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed for stochastic protectors and perturbations.")] = 0,
    device: Annotated[str, typer.Option(help="cpu | cuda.")] = "cpu",
    swapper: Annotated[str, typer.Option(help="Face-swap model of the swap protocol (Table 3): a manipulator name "
                                              "or a checkpoint folder (its config.json format says which).")]
    = "swapper-celeba",
    manipulator: Annotated[str, typer.Option(help="Manipulation model of the manipulation protocol (ID-Guard/ARS "
                                                  "disruption): a manipulator name or a checkpoint folder, e.g. "
                                                  "runs/ae/export.")] = "surrogate-ae",
) -> None:
    """Evaluate protectors (quality, identification top-1/top-5, robustness grid) and write tables and figures."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from nullswap.errors import NullswapError
    from nullswap.evaluation import evaluate as run_eval
    from nullswap.evaluation import load_eval_set
    from nullswap.evaluation.figures import comparison_grid, robustness_curves
    from nullswap.evaluation.results import render_tables
    from nullswap.manipulators.checkpoint import resolve_manipulator

    t0 = time.perf_counter()
    try:
        protocols = [p.strip() for p in protocol.split(",")]
        for proto, spec in (("swap", swapper), ("manipulation", manipulator)):
            if proto in protocols:
                resolve_manipulator(spec)  # an unknown name or a folder of another format fails before the data loads
        attack = [r.strip() for r in attack_recognizers.split(",")] if attack_recognizers else None
        specs = [s.strip() for s in protector.split(",") if s.strip()]
        if template is None:  # the trained models' own template, else the default crop
            trained = [_build(s, strength, device, attack, None)[1] for s in specs
                       if Path(_GUARD_SUFFIX.sub("", s).partition("+refine")[0]).exists()]
            template = trained[0].template if trained else "protector-256"
        prots = dict(_build(s, strength, device, attack, template) for s in specs)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as bar:
            task = bar.add_task("aligning faces", total=None)
            es = load_eval_set(data, layout, max_identities=max_identities, max_probes=max_probes,
                               template=template, split=split, split_seed=split_seed,
                               progress=lambda d, t: bar.update(task, completed=d, total=t))

            def prog(name: str, done: int, total: int) -> None:
                bar.update(task, description=f"protecting ({name})", completed=done, total=total)

            rs, kept = run_eval(prots, es, [r.strip() for r in recognizers.split(",")], protocols,
                                perturbations=[p.strip() for p in perturbations.split(",")] if perturbations else None,
                                batch_size=batch_size, seed=seed, device=device, progress=prog,
                                swapper=swapper, manipulator=manipulator)
    except NullswapError as e:
        console.print(f"[red]error[/red] {escape(str(e))}")
        raise typer.Exit(2) from None
    rs.meta.update({"command": "nullswap evaluate", "protectors": list(prots), "strength": strength,
                    "seconds": round(time.perf_counter() - t0, 1)})
    out.mkdir(parents=True, exist_ok=True)
    rs.to_json(out / "results.json")
    rs.to_csv(out / "results.csv")
    tables = render_tables(rs)
    md = [f"# Evaluation on {es.name}: {len(es.probes)} probes, gallery {len(es.faces)} images, "
          f"{len(es.faces.identities)} identities", ""]
    for name, t in tables.items():
        md += [f"## {name}", "", t, ""]
    (out / "tables.md").write_text("\n".join(md))
    clean = es.faces.tensor(es.probes[:8])
    comparison_grid(clean, kept, out / "comparison.png")
    robustness_curves(rs, out / "robustness.png")
    typer.echo("\n".join(md))
    typer.echo(json.dumps({"out": str(out), "seconds": rs.meta["seconds"]}))
