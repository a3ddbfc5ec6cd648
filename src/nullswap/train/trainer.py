"""The one training loop, on Lightning Fabric: CPU, one GPU, multi-GPU DDP and multi-node from the same code.

Protectors plug in as *recipes* (:mod:`nullswap.recipes`): a module that owns the trainable networks and knows its
losses. The loop here owns everything else: devices and precision (bf16 autocast on CUDA), the alternating
generator/discriminator updates with their own optimisers and learning rates, gradient accumulation, a
resumable-exactly sampler, safetensors checkpoints, rank-0 CSV/TensorBoard logging and held-out evaluation.

Launch on several GPUs or nodes with the same command under ``fabric run`` or ``torchrun``, e.g.::

    torchrun --nproc-per-node 8 -m nullswap.cli.main train --config configs/nullswap.yaml \
        --set train.devices=8 train.strategy=ddp
    fabric run --devices 8 --num-nodes 2 --strategy ddp src/nullswap/train/launch.py -- --config configs/nullswap.yaml

Nothing distributed happens at import time; Fabric is created in :meth:`Trainer.__init__`.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from nullswap.datasets.faces import AlignedFaces, identity_disjoint_split, limit_records, scan_faces
from nullswap.errors import InputError
from nullswap.train.checkpoint import load_training_state, save_training_state
from nullswap.train.config import dump_config

log = logging.getLogger(__name__)


class ResumableSampler(Sampler[int]):
    """Shuffles with ``seed + epoch``, shards across ranks, and can start part-way through an epoch (exact resume).

    Every rank sees ``floor(len / world)`` indices (the tail is dropped so ranks stay in step).
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.epoch = 0
        self.start = 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's permutation and the first index (in this rank's shard) to yield.

        Deliberately not named ``set_epoch``: Fabric's dataloader wrapper calls ``sampler.set_epoch(n_iter_calls)``
        on every ``iter()``, which would restart a resumed epoch from its first batch with the wrong permutation.
        """
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.n // self.world - self.start

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(self.n, generator=g)[: (self.n // self.world) * self.world]
        shard = perm[self.rank :: self.world].tolist()
        return iter(shard[self.start :])


class IndexedDataset(Dataset):
    """``(item..., index)``: a dataset whose items also carry their index (for per-crop caches in recipes)."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        item = self.base[i]
        return (*item, i) if isinstance(item, tuple) else (item, i)


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` measured."""

    step: int
    epoch: int
    out: Path
    last_logs: dict[str, float]
    eval_history: list[dict[str, float]]
    seconds: float


def build_recipe(cfg: dict[str, Any]):
    """The recipe object named by ``cfg["recipe"]``."""
    name = cfg.get("recipe", "nullswap")
    from nullswap.recipes import create_recipe

    return create_recipe(name, cfg)


def build_datasets(cfg: dict[str, Any], progress: Callable[[int, int], None] | None = None) -> dict[str, AlignedFaces]:
    """Train / val / test aligned-crop datasets from ``cfg["data"]`` (identity-disjoint unless an official split).

    With ``data.packs`` (``{train: FILE, val: FILE, test: FILE}``, any subset) the splits are read from crop packs
    (:mod:`nullswap.datasets.crop_pack`) instead of detecting faces under ``data.root``: the same crops in the same
    order as where the packs were made, on a machine without the source photos.
    """
    d = cfg["data"]
    packs = d.get("packs")
    if packs:
        if not isinstance(packs, dict) or not set(packs) <= {"train", "val", "test"}:
            raise InputError(f"data.packs: expected a mapping with keys among train/val/test, got {packs!r}")
        from nullswap.datasets.crop_pack import load_crop_pack

        packed = {name: load_crop_pack(path) for name, path in packs.items() if path}
        if "train" not in packed or len(packed["train"]) == 0:
            raise InputError(f"data.packs: expected a 'train' pack with crops, got {packs!r}")
        return packed
    records = scan_faces(
        d["root"],
        d.get("layout", "identity-folders"),
        identity_file=d.get("identity_file"),
        mapping_file=d.get("mapping_file"),
        celeba_identity_file=d.get("celeba_identity_file"),
        partition_file=d.get("partition_file"),
    )
    records = limit_records(records, d.get("max_identities"), d.get("max_per_identity"))
    parts = identity_disjoint_split(records, d.get("split", (0.8, 0.1, 0.1)), seed=d.get("split_seed", 0))
    out: dict[str, AlignedFaces] = {}
    for name in ("train", "val", "test"):
        if parts.get(name):
            out[name] = AlignedFaces(parts[name], template=d.get("template", "protector-256"),
                                     detector=d.get("detector", "mtcnn"), progress=progress)
    if "train" not in out or len(out["train"]) == 0:
        raise InputError(f"dataset {d['root']!r}: expected training images with faces, got none")
    return out


class Trainer:
    """Fabric trainer for a recipe.

    Args:
        cfg: resolved config (see :mod:`nullswap.train.config`).
        out: run folder (checkpoints ``ckpt/last``, logs, ``export/``); defaults to ``cfg["out"]``.
        progress: ``progress(step, total_steps, logs)`` called on rank 0 after every optimiser step.
        loggers: build CSV + TensorBoard loggers (rank 0 writes).
    """

    def __init__(
        self,
        cfg: dict[str, Any],
        out: str | Path | None = None,
        progress: Callable[[int, int, dict[str, float]], None] | None = None,
        loggers: bool = True,
    ) -> None:
        from lightning_fabric import Fabric

        self.cfg = cfg
        self.out = Path(out or cfg.get("out", "runs/nullswap"))
        self.progress = progress
        t = cfg["train"]
        accelerator = t.get("accelerator", "auto")
        precision = t.get("precision", "auto")
        if precision == "auto":
            cuda = torch.cuda.is_available() and accelerator in ("auto", "cuda", "gpu")
            precision = "bf16-mixed" if cuda else "32-true"
        log_objs = []
        if loggers:
            from lightning_fabric.loggers import CSVLogger, TensorBoardLogger

            # One CSV per launch: Lightning's CSVLogger deletes an existing metrics.csv in its folder, so a resumed
            # run would lose the curve so far. TensorBoard appends a new events file per launch on its own.
            logs = self.out / "logs"
            launches = sum(1 for d in logs.iterdir() if d.is_dir()) if logs.is_dir() else 0
            launch = f"{launches:03d}-{time.strftime('%Y%m%d-%H%M%S')}"
            log_objs = [
                # flush on every save() call: the logged steps are multiples of log_every, and Lightning's default
                # (every 100 steps, on (step + 1) % 100 == 0) never fired for them; the trainer saves at checkpoints
                CSVLogger(str(self.out), name="logs", version=launch, flush_logs_every_n_steps=10**9),
                TensorBoardLogger(str(self.out), name="tensorboard", version=""),
            ]
        self.fabric = Fabric(
            accelerator=accelerator,
            devices=t.get("devices", "auto"),
            num_nodes=int(t.get("num_nodes", 1)),
            strategy=t.get("strategy", "auto"),
            precision=precision,
            loggers=log_objs,
        )
        self.precision = precision

    def fit(self, resume: bool = False, datasets: dict[str, AlignedFaces] | None = None) -> FitResult:
        """Train until ``train.max_steps``, ``train.epochs`` or ``train.max_seconds``.

        Resumes from ``out/ckpt/last`` when asked.
        """
        fabric, cfg, t = self.fabric, self.cfg, self.cfg["train"]
        t_fit = time.perf_counter()  # train.max_seconds counts from here: loading data and models included
        fabric.launch()
        if t.get("threads"):
            torch.set_num_threads(int(t["threads"]))
        fabric.seed_everything(int(cfg.get("seed", 0)) + fabric.global_rank)
        if fabric.is_global_zero:
            self.out.mkdir(parents=True, exist_ok=True)
            dump_config(cfg, self.out / "config.yaml")
        data = datasets if datasets is not None else build_datasets(cfg)
        train_set = data["train"]
        eval_set = data.get("val") or data.get("test")

        ckpt_dir = self.out / "ckpt" / "last"
        if resume and cfg.get("init") is not None and ckpt_dir.is_dir():
            # the checkpoint holds every weight: the starting point a fresh run grows from is not needed (nor loaded),
            # so a run continues on a machine without the folder it was first started from
            log.info("init %s not loaded: resuming from %s", cfg["init"], ckpt_dir)
            cfg = {k: v for k, v in cfg.items() if k != "init"}
        recipe = build_recipe(cfg)
        recipe.to(fabric.device)
        groups = recipe.optimizer_groups()
        optim_cfg = cfg["optim"]
        raw_models = {"generator": recipe.generator}
        opt_g = torch.optim.Adam(param_groups(recipe.generator, groups["generator"], optim_cfg["generator"]),
                                 **_adam_kwargs(optim_cfg["generator"]))
        optimizers = {"generator": opt_g}
        gen, opt_g = fabric.setup(recipe.generator, opt_g)
        recipe.generator = gen
        opt_d = None
        if recipe.discriminator is not None and groups.get("discriminator"):
            raw_models["discriminator"] = recipe.discriminator
            opt_d = torch.optim.Adam(
                param_groups(recipe.discriminator, groups["discriminator"], optim_cfg["discriminator"]),
                **_adam_kwargs(optim_cfg["discriminator"]),
            )
            optimizers["discriminator"] = opt_d
            disc, opt_d = fabric.setup(recipe.discriminator, opt_d)
            recipe.discriminator = disc

        bs = int(t["batch_size"])
        sampler = ResumableSampler(len(train_set), int(cfg.get("seed", 0)), fabric.global_rank, fabric.world_size)
        wants_indices = "indices" in inspect.signature(recipe.generator_step).parameters
        # Its own generator: a DataLoader iterator draws a base seed from the global RNG when created, which would
        # shift the Eq. 1 noise of a resumed run (the iterator is re-created at the resume point).
        loader = DataLoader(IndexedDataset(train_set), batch_size=bs, sampler=sampler, drop_last=True,
                            generator=torch.Generator().manual_seed(int(cfg.get("seed", 0))),
                            num_workers=int(cfg["data"].get("num_workers", 0)))
        loader = fabric.setup_dataloaders(loader, use_distributed_sampler=False)
        accum = max(1, int(t.get("accumulate", 1)))
        batches_per_epoch = (len(train_set) // fabric.world_size) // bs
        if batches_per_epoch == 0:
            raise InputError(
                f"training set: expected at least batch_size={bs} faces per rank, got {len(train_set)} in all"
            )
        steps_per_epoch = max(1, batches_per_epoch // accum)
        max_steps = t.get("max_steps") or steps_per_epoch * int(t["epochs"])

        step, epoch, batch_in_epoch = 0, 0, 0
        if resume:
            if not ckpt_dir.is_dir():
                raise InputError(f"resume: expected a checkpoint at {str(ckpt_dir)!r}, found none")
            state = load_training_state(ckpt_dir, raw_models, optimizers)
            step = int(state["counters"]["step"])
            epoch = int(state["counters"]["epoch"])
            batch_in_epoch = int(state["counters"]["batch_in_epoch"])
            recipe.load_extra_state(state["extra"])
            log.info("resumed from %s at step %d (epoch %d, batch %d)", ckpt_dir, step, epoch, batch_in_epoch)

        first_step = step + 1
        eval_faces = None
        if eval_set is not None and len(eval_set):
            n_eval = min(int(t.get("eval_images", 64)), len(eval_set))
            eval_faces = eval_set.tensor(torch.linspace(0, len(eval_set) - 1, n_eval).long().tolist())

        logs: dict[str, float] = {}
        history: list[dict[str, float]] = []
        t0 = time.perf_counter()
        log_every = max(1, int(t.get("log_every", 10)))
        ckpt_every = int(t.get("checkpoint_every") or 0)
        eval_every = int(t.get("eval_every") or 0)
        # a wall-clock budget (a rented machine's lease): stop at the first checkpoint after it, then evaluate and
        # export as at max_steps; the run resumes from there like any other
        max_seconds = None if t.get("max_seconds") is None else float(t["max_seconds"])
        if max_seconds is not None and (max_seconds < 0 or not ckpt_every):
            raise InputError(
                f"train.max_seconds: expected >= 0 with train.checkpoint_every > 0, got {max_seconds} and "
                f"checkpoint_every={ckpt_every}"
            )
        lr_factor(step, t.get("lr_milestones"), float(t.get("lr_gamma", 0.1)))  # a bad schedule fails before step 1
        done = step >= max_steps
        while not done:
            sampler.set_position(epoch, start=batch_in_epoch * bs)
            micro = 0
            opt_g.zero_grad(set_to_none=True)  # an epoch's incomplete accumulation never leaks into the next
            for images, _labels, indices in loader:
                images = images.to(fabric.device)
                last_micro = (micro + 1) % accum == 0
                step_kw = {"indices": indices} if wants_indices else {}
                if micro % accum == 0:  # the first micro-batch of an optimiser step
                    lr_scale = lr_factor(step, t.get("lr_milestones"), float(t.get("lr_gamma", 0.1)))
                    for opt, name in ((opt_g, "generator"), (opt_d, "discriminator")):
                        if opt is not None:
                            base = float(optim_cfg[name].get("lr", 1e-4))
                            for g in opt.param_groups:
                                g["lr"] = base * lr_scale * float(g.get("lr_mult", 1.0))
                with fabric.no_backward_sync(recipe.generator, enabled=not last_micro):
                    with fabric.autocast():
                        loss_g, logs_g, protected = recipe.generator_step(images, epoch, **step_kw)
                    fabric.backward(loss_g / accum)
                logs_d: dict[str, float] = {}
                if opt_d is not None:
                    opt_d.zero_grad(set_to_none=True)  # drop the generator step's gradients on D
                    with fabric.no_backward_sync(recipe.discriminator, enabled=not last_micro):
                        with fabric.autocast():
                            loss_d, logs_d = recipe.discriminator_step(images, protected.detach())
                        fabric.backward(loss_d / accum)
                micro += 1
                batch_in_epoch += 1
                if not last_micro:
                    continue
                opt_g.step()
                opt_g.zero_grad(set_to_none=True)
                if opt_d is not None:
                    opt_d.step()
                    opt_d.zero_grad(set_to_none=True)
                step += 1
                logs = {**logs_g, **logs_d, "epoch": float(epoch)}
                if step % log_every == 0 or step in (first_step, max_steps):
                    fabric.log_dict(logs, step=step)
                if eval_faces is not None and eval_every and step % eval_every == 0:
                    history.append(self._evaluate(recipe, eval_faces, step))
                if ckpt_every and step % ckpt_every == 0:
                    self._checkpoint(ckpt_dir, raw_models, optimizers, recipe, step, epoch, batch_in_epoch)
                    for lg in fabric.loggers:  # the logs up to this checkpoint survive a killed run
                        lg.save()
                    if max_seconds is not None and time.perf_counter() - t_fit > max_seconds:
                        log.info("train.max_seconds=%s reached at step %d: stopping", max_seconds, step)
                        done = True
                if self.progress is not None and fabric.is_global_zero:
                    self.progress(step, max_steps, logs)
                if done or step >= max_steps:
                    done = True
                    break
            else:
                epoch += 1
                batch_in_epoch = 0
        if eval_faces is not None and (not history or history[-1]["step"] != step):
            history.append(self._evaluate(recipe, eval_faces, step))
        self._checkpoint(ckpt_dir, raw_models, optimizers, recipe, step, epoch, batch_in_epoch)
        if fabric.is_global_zero:
            recipe.export(str(self.out / "export"), {"step": step, "epoch": epoch, "config": cfg,
                                                      "precision": self.precision})
        for lg in fabric.loggers:
            lg.finalize("success")
        return FitResult(step, epoch, self.out, logs, history, time.perf_counter() - t0)

    def _checkpoint(self, folder, models, optimizers, recipe, step, epoch, batch_in_epoch) -> None:
        self.fabric.barrier()
        if self.fabric.is_global_zero:
            counters = {"step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch}
            save_training_state(folder, models, optimizers, counters, recipe.extra_state(), self.cfg)
            log.info("checkpoint at step %d -> %s", step, folder)
        self.fabric.barrier()

    def _eval_ensemble(self, recipe):
        """The training ensemble plus ``eval_recognizers`` (unseen in training), built once."""
        if getattr(self, "_eval_ens", None) is None:
            from nullswap.recognizers.ensemble import RecognizerEnsemble

            seen = list(recipe.ensemble.names)
            unseen = [n for n in (self.cfg.get("eval_recognizers") or []) if n not in seen]
            extra = None
            if unseen:
                extra = RecognizerEnsemble(unseen, source_template=recipe.ensemble.source_template,
                                           weights_dir=self.cfg.get("weights_dir")).to(self.fabric.device)
            self._eval_ens = (seen, unseen, extra)
        return self._eval_ens

    @torch.no_grad()
    def _evaluate(self, recipe, faces: torch.Tensor, step: int) -> dict[str, float]:
        """Held-out identities, raw generator output (no inference guard).

        Reports PSNR (dB), the change's line coherence (:func:`~nullswap.losses.line_energy.coherence`: 0 for
        isotropic grain, 1 for parallel strokes), and per recognizer (training ones and ``eval_recognizers``, the
        unseen ones) the mean cosine(clean, protected) and the share of faces below its LFW-calibrated threshold,
        also after a real JPEG q75 round trip of the protected crops (``val/jpeg75/...``).
        """
        from nullswap.evaluation.perturbations import apply_perturbation
        from nullswap.losses.line_energy import line_energy_map
        from nullswap.metrics.quality import psnr
        from nullswap.recognizers.thresholds import verification_thresholds

        gen = recipe.generator
        was_training = gen.training
        gen.eval()
        prot = recipe.protector()
        if hasattr(prot, "psnr_floor"):  # raw generator numbers: the inference guard is reported separately
            prot.psnr_floor = None
        g = torch.Generator(device=self.fabric.device).manual_seed(1234)
        seen, unseen, extra = self._eval_ensemble(recipe)
        names = seen + unseen
        thr = verification_thresholds()
        cos: dict[str, list[torch.Tensor]] = {}
        ps: list[torch.Tensor] = []
        oriented, total = 0.0, 0.0
        for i in range(0, faces.shape[0], 16):
            x = faces[i : i + 16].to(self.fabric.device)
            y = prot.protect(x, generator=g).float().clamp(0, 1)
            ps.append(psnr(y, x).cpu())
            o, t = line_energy_map(x.float(), y)
            oriented, total = oriented + float(o.sum()), total + float(t.sum())
            yj = apply_perturbation(y, "jpeg", 75.0)
            embs = {}
            for tag, img in (("clean", x), ("prot", y), ("jpeg", yj)):
                e = list(recipe.ensemble(img)) + (list(extra(img)) if extra is not None else [])
                embs[tag] = e
            for k, name in enumerate(names):
                cos.setdefault(name, []).append((embs["clean"][k] * embs["prot"][k]).sum(1).cpu())
                cos.setdefault(f"jpeg75/{name}", []).append((embs["clean"][k] * embs["jpeg"][k]).sum(1).cpu())
        gen.train(was_training)
        out = {"step": float(step), "val/psnr": float(torch.cat(ps).mean()),
               "val/coherence": oriented / max(total, 1e-30)}
        for key, v in cos.items():
            c = torch.cat(v)
            name = key.split("/")[-1]
            prefix = "val/jpeg75" if key.startswith("jpeg75/") else "val"
            group = "seen" if name in seen else "unseen"
            out[f"{prefix}/cos/{group}/{name}"] = float(c.mean())
            if name in thr:
                out[f"{prefix}/below/{group}/{name}"] = float((c < thr[name]).float().mean())
        for prefix in ("val", "val/jpeg75"):
            for group in ("seen", "unseen"):
                vals = [v for k, v in out.items() if k.startswith(f"{prefix}/below/{group}/")]
                if vals:
                    out[f"{prefix}/below/{group}/min"] = float(min(vals))
        out["val/cos/mean"] = float(sum(out[f"val/cos/seen/{n}"] for n in seen) / max(len(seen), 1))
        self.fabric.log_dict({k: v for k, v in out.items() if k != "step"}, step=step)
        log.info("eval step %d: %s", step, {k: round(v, 4) for k, v in out.items()})
        return out


def lr_factor(step: int, milestones: list[int] | None, gamma: float) -> float:
    """Step decay of the learning rate: ``gamma ** (number of milestones <= step)``.

    Choice (the papers give constant learning rates, Sec. 4.1): an optional step decay, ``train.lr_milestones`` and
    ``train.lr_gamma``, for the long CPU runs that plateau at a constant rate. It is a function of the step alone, so
    a resumed run (whose optimiser state carries the old rate) gets the same rate as an uninterrupted one.

    Args:
        step: optimiser steps done so far (the step about to be taken is ``step + 1``).
        milestones: steps after which the rate is multiplied by ``gamma`` (``None`` or empty: constant rate).
        gamma: the factor per milestone, in (0, 1].

    Returns:
        The factor applied to each optimiser's configured ``lr``.

    Raises:
        InputError: ``gamma`` outside (0, 1] or a milestone that is not a non-negative integer.
    """
    if not milestones:
        return 1.0
    if not 0.0 < gamma <= 1.0:
        raise InputError(f"train.lr_gamma: expected a factor in (0, 1], got {gamma!r}")
    if any(not isinstance(m, int) or isinstance(m, bool) or m < 0 for m in milestones):
        raise InputError(f"train.lr_milestones: expected non-negative integer steps, got {milestones!r}")
    return gamma ** sum(1 for m in milestones if step >= m)


def param_groups(module: nn.Module, params: Sequence[nn.Parameter], c: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Adam parameter groups for ``params`` of ``module`` (unwrapped: before ``fabric.setup``) with ``lr_multipliers``.

    Choice (not in the papers, which train from scratch at one rate): a branch grown onto a trained network
    (:mod:`nullswap.protectors.nullswap.growth`) starts at zero and, at the trained weights' small rate, barely moves;
    ``lr_multipliers`` (``{name prefix: factor}``, prefixes of ``module.named_parameters()`` names, matched at a ``.``
    boundary, the longest wins) gives it its own rate. Each group stores its factor as ``lr_mult``; the trainer's
    schedule sets ``lr = base * decay * lr_mult``. Without multipliers: one group of every parameter.

    Raises:
        InputError: a multiplier that is not a number > 0, or a prefix that names no trainable parameter.
    """
    raw = c.get("lr_multipliers") or {}
    if not isinstance(raw, Mapping):
        raise InputError(f"optim lr_multipliers: expected {{name prefix: factor}}, got {type(raw).__name__} {raw!r}")
    mults = dict(raw)
    if not mults:
        return [{"params": list(params), "lr_mult": 1.0}]
    for k, v in mults.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
            raise InputError(f"optim lr_multipliers[{k!r}]: expected a number > 0, got {v!r}")
    wanted = {id(p) for p in params}
    by_mult: dict[float, list[nn.Parameter]] = {}
    used: set[str] = set()
    for name, p in module.named_parameters():
        if id(p) not in wanted:
            continue
        match = max((k for k in mults if name == k or name.startswith(k + ".")), key=len, default=None)
        if match is not None:
            used.add(match)
        by_mult.setdefault(float(mults[match]) if match is not None else 1.0, []).append(p)
    unused = sorted(set(mults) - used)
    if unused:
        raise InputError(f"optim lr_multipliers: expected prefixes of trainable parameter names of "
                         f"{type(module).__name__}, got {unused[0]!r}, which names none")
    return [{"params": ps, "lr_mult": m} for m, ps in sorted(by_mult.items())]


def _adam_kwargs(c: dict[str, Any]) -> dict[str, Any]:
    return {"lr": float(c.get("lr", 1e-4)), "betas": tuple(c.get("betas", (0.9, 0.999))),
            "weight_decay": float(c.get("weight_decay", 0.0))}


def steps_for(n_images: int, batch_size: int, epochs: int) -> int:
    """Optimiser steps of ``epochs`` epochs over ``n_images`` (drop-last batches)."""
    return max(1, math.floor(n_images / batch_size)) * epochs


__all__ = ["FitResult", "IndexedDataset", "ResumableSampler", "Trainer", "build_datasets", "build_recipe",
           "param_groups", "steps_for"]
