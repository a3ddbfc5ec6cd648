"""Teacher targets: a slow protector's outputs on the training crops, to distil into the one-pass generator.

Issue 12 measured that the one pass underfits (its cosines on training faces equal those on new faces) while ten
per-image refinement steps from its output (``auto``) protect far more at a lower PSNR and transfer better to unseen
recognizers. Distillation gives the generator that per-image solution as a dense target instead of only the identity
term's gradient: the teacher's change ``T(x) - x`` is computed once per training crop (:func:`make_teacher_targets`)
and the recipe adds ``lambda_distill * ||G(x) - T(x)||^2`` (:func:`nullswap.losses.distillation.distillation_loss`).
Not in the NullSwap paper (it trains on the identity, reconstruction and adversarial terms only); Choice, named in
MODEL_CARD.md's "What limits it" as untried since session 7.

Format (one ``.safetensors`` file; a run may list several, e.g. shards made by two processes):

* ``indices`` ``(N,)`` int64: the crops' indices in the training split (:class:`~nullswap.datasets.faces.AlignedFaces`
  order, the order the trainer's sampler indexes);
* ``delta`` ``(N,3,h,w)`` int8: the teacher's change ``T(x) - x`` in units of ``1 / (255 * DELTA_STEPS)`` (so
  +-127 covers +-10.6/255, above the 10/255 per-pixel cap every shipped protector keeps; larger changes are clipped
  and counted in the metadata);
* ``clean_mean`` ``(N,3)`` float32: each clean crop's channel means, checked against the crops the trainer serves so
  that targets made on another split, template or data version are refused instead of silently misaligned;
* metadata (strings): ``format``, ``teacher`` (a JSON description of the protector and its options), ``clipped``.

Choice: int8 at 1/3060 per step (quantisation error RMS 0.03/255, far below the ~3.5/255 RMS of the changes) keeps the
4,150 CelebA training crops at 128 px in 204 MB instead of 408 MB as float16.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nullswap.errors import InputError

log = logging.getLogger(__name__)

FORMAT = "nullswap-teacher-targets/1"
#: quantisation steps per 1/255 of change (int8: +-127 steps = +-10.58/255).
DELTA_STEPS = 12.0
#: tolerance of the clean-crop check (channel means of uint8-decoded crops agree exactly on the same data).
MEAN_TOLERANCE = 1e-3


@dataclass
class TeacherTargets:
    """A teacher's changes on a set of training crops (see the module docstring for the fields)."""

    indices: torch.Tensor
    delta: torch.Tensor
    clean_mean: torch.Tensor
    teacher: dict[str, Any] = field(default_factory=dict)
    clipped: int = 0

    def __post_init__(self) -> None:
        n = self.indices.shape[0]
        if self.indices.dim() != 1 or self.indices.dtype != torch.int64:
            raise InputError(f"indices: expected an (N,) int64 tensor, got {tuple(self.indices.shape)} "
                             f"{self.indices.dtype}")
        if self.delta.dim() != 4 or self.delta.shape[0] != n or self.delta.shape[1] != 3 \
                or self.delta.dtype != torch.int8:
            raise InputError(f"delta: expected an ({n},3,h,w) int8 tensor, got {tuple(self.delta.shape)} "
                             f"{self.delta.dtype}")
        if tuple(self.clean_mean.shape) != (n, 3):
            raise InputError(f"clean_mean: expected shape ({n}, 3), got {tuple(self.clean_mean.shape)}")
        if n and len(set(self.indices.tolist())) != n:
            raise InputError("indices: expected each training crop at most once, got duplicates")

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(h, w) of the crops."""
        return int(self.delta.shape[2]), int(self.delta.shape[3])

    def change(self, rows: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """The teacher's change ``T(x) - x`` of the given rows, float32 in [0,1] units."""
        return self.delta[torch.as_tensor(rows, dtype=torch.long)].float() / (255.0 * DELTA_STEPS)


def quantize_change(change: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``change`` (float, [0,1] units) as int8 steps of ``1 / (255 * DELTA_STEPS)``, and how many values clipped."""
    q = torch.round(change.float() * (255.0 * DELTA_STEPS))
    clipped = int((q.abs() > 127).sum())
    return q.clamp(-127, 127).to(torch.int8), clipped


def channel_means(crops: torch.Tensor) -> torch.Tensor:
    """``(N,3)`` channel means of ``(N,3,h,w)`` crops in [0,1] (the alignment check of :class:`TeacherTargets`)."""
    return crops.float().mean(dim=(2, 3))


def make_teacher_targets(
    protector: Any,
    crops: Callable[[list[int]], torch.Tensor],
    indices: Sequence[int],
    *,
    batch_size: int = 8,
    seed: int = 0,
    teacher: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TeacherTargets:
    """Run ``protector`` on the training crops ``indices`` and keep its changes.

    Args:
        protector: anything with ``protect(x, generator=...)`` on ``(B,3,h,w)`` crops in [0,1] (e.g.
            ``create_protector("nullswap", refine=10, ...)``: the ``auto`` recipe).
        crops: ``indices -> (B,3,h,w)`` float crops in [0,1] (e.g. :meth:`AlignedFaces.tensor`).
        indices: training-split indices to cover (any order; kept in the given order).
        batch_size: crops per ``protect`` call.
        seed: batch ``i``'s generator noise is seeded ``seed + first index of the batch`` (repeatable per crop
            whatever the sharding).
        teacher: JSON-serialisable description stored with the targets.
        progress: ``(done, total)`` callback.

    Returns:
        The targets, in the order of ``indices``.

    Raises:
        InputError: empty ``indices`` or ``batch_size < 1``.
    """
    idx = [int(i) for i in indices]
    if not idx:
        raise InputError("indices: expected at least one training crop, got none")
    if batch_size < 1:
        raise InputError(f"batch_size: expected >= 1, got {batch_size}")
    deltas, means, clipped = [], [], 0
    for start in range(0, len(idx), batch_size):
        chunk = idx[start : start + batch_size]
        x = crops(chunk)
        y = protector.protect(x, generator=torch.Generator().manual_seed(int(seed) + chunk[0]))
        q, c = quantize_change(y.float() - x.float())
        deltas.append(q)
        means.append(channel_means(x))
        clipped += c
        if progress is not None:
            progress(min(start + batch_size, len(idx)), len(idx))
    if clipped:
        log.warning("teacher targets: %d change values beyond +-%.2f/255 were clipped", clipped, 127 / DELTA_STEPS)
    return TeacherTargets(torch.tensor(idx, dtype=torch.int64), torch.cat(deltas), torch.cat(means).float(),
                          dict(teacher or {}), clipped)


def save_teacher_targets(path: str | Path, targets: TeacherTargets) -> Path:
    """Write ``targets`` to ``path`` (``.safetensors``), atomically."""
    from safetensors.torch import save

    from nullswap.faces.atomic import write_bytes_atomic

    meta = {"format": FORMAT, "teacher": json.dumps(targets.teacher, sort_keys=True), "clipped": str(targets.clipped)}
    data = save({"indices": targets.indices.contiguous(), "delta": targets.delta.contiguous(),
                 "clean_mean": targets.clean_mean.contiguous()}, metadata=meta)
    out = Path(path)
    write_bytes_atomic(out, data)
    return out


def load_teacher_targets(paths: str | Path | Sequence[str | Path]) -> TeacherTargets:
    """Read one file written by :func:`save_teacher_targets`, or several (shards) merged in the given order.

    Raises:
        InputError: a missing or foreign file, shards of different crop sizes or teachers, or a crop in two shards.
    """
    from safetensors import safe_open

    items = [paths] if isinstance(paths, str | Path) else list(paths)
    if not items:
        raise InputError("teacher targets: expected at least one file, got none")
    parts: list[TeacherTargets] = []
    for p in items:
        p = Path(p)
        if not p.is_file():
            raise InputError(f"teacher targets: expected a file written by `nullswap teacher`, got no file at "
                             f"{str(p)!r}")
        try:
            with safe_open(str(p), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
        except Exception as e:  # safetensors raises its own error types for a damaged header
            raise InputError(f"teacher targets {str(p)!r}: expected a safetensors file, got an unreadable one ({e})") \
                from None
        if meta.get("format") != FORMAT or set(tensors) != {"indices", "delta", "clean_mean"}:
            raise InputError(f"teacher targets {str(p)!r}: expected format {FORMAT!r} with indices/delta/clean_mean, "
                             f"got format {meta.get('format')!r} with {sorted(tensors)}")
        parts.append(TeacherTargets(tensors["indices"], tensors["delta"], tensors["clean_mean"],
                                    json.loads(meta.get("teacher") or "{}"), int(meta.get("clipped") or 0)))
    if len({t.size for t in parts}) > 1:
        raise InputError(f"teacher targets: expected shards of one crop size, got {sorted({t.size for t in parts})}")
    if len({json.dumps(t.teacher, sort_keys=True) for t in parts}) > 1:
        raise InputError("teacher targets: expected shards made by the same teacher, got different descriptions")
    return TeacherTargets(torch.cat([t.indices for t in parts]), torch.cat([t.delta for t in parts]),
                          torch.cat([t.clean_mean for t in parts]), parts[0].teacher,
                          sum(t.clipped for t in parts))


class TeacherLookup:
    """Per-batch access to teacher targets by training-split index, with the alignment check.

    Args:
        targets: the loaded targets.

    Raises:
        InputError: targets without a crop, or with a negative index.
    """

    def __init__(self, targets: TeacherTargets) -> None:
        if len(targets) == 0 or int(targets.indices.min()) < 0:
            raise InputError(f"teacher targets: expected at least one crop with indices >= 0, got {len(targets)} crops")
        self.targets = targets
        n = int(targets.indices.max()) + 1
        self._row = torch.full((n,), -1, dtype=torch.long)
        self._row[targets.indices] = torch.arange(len(targets))

    def __call__(self, images: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(target, mask)`` for a batch of crops and their training-split indices.

        ``target`` is the teacher's output ``x + change`` (clamped to [0,1]) where the crop has one and ``x``
        elsewhere; ``mask`` is ``(B,)`` bool, the crops that have one.

        Raises:
            InputError: a crop size other than the targets', or a crop whose channel means differ from those the
                targets were made on (another split, template or data version).
        """
        if tuple(images.shape[-2:]) != self.targets.size:
            raise InputError(f"teacher targets: expected {self.targets.size[0]}x{self.targets.size[1]} crops, got "
                             f"{images.shape[-2]}x{images.shape[-1]}")
        idx = indices.detach().cpu().long()
        inside = idx < self._row.shape[0]
        rows = torch.where(inside, self._row[idx.clamp(0, self._row.shape[0] - 1)], -1)
        mask = rows >= 0
        target = images.detach().clone()
        if bool(mask.any()):
            sel = rows[mask]
            got = channel_means(images.detach()[mask.to(images.device)].cpu())
            want = self.targets.clean_mean[sel]
            if not torch.allclose(got, want, atol=MEAN_TOLERANCE, rtol=0):
                worst = float((got - want).abs().max())
                raise InputError(f"teacher targets: expected the crops they were made on (channel means within "
                                 f"{MEAN_TOLERANCE}), got crops differing by {worst:.4f}: another split, template or "
                                 f"data version?")
            change = self.targets.change(sel).to(images.device, images.dtype)
            m = mask.to(images.device)
            target[m] = (images.detach()[m] + change).clamp(0, 1)
        return target, mask.to(images.device)


__all__ = ["DELTA_STEPS", "FORMAT", "TeacherLookup", "TeacherTargets", "channel_means", "load_teacher_targets",
           "make_teacher_targets", "quantize_change", "save_teacher_targets"]
