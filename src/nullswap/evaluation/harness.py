"""The protocols, run for any set of protectors on one evaluation set.

Protocols (NullSwap Sec. 4; ARS Sec. 5):

- ``quality`` (NullSwap Table 1): PSNR, SSIM, perceptual distance (LPIPS or ST-LPIPS, named), L2 between each clean
  and protected face crop.
- ``identification`` (NullSwap Tables 2, 4, 5): the gallery is the clean crop of every image; each probe is a
  protected crop; its identity is predicted by the nearest gallery embeddings (cosine) with the probe's own clean
  image left out (Choice: the papers do not say; leaving it out makes the task "recognise this person from their other
  photos", which is what a face-swap victim's exposure depends on, and needs identities with >= 2 images). Top-1 and
  top-5 over identities. Also the mean cosine(clean, protected) and two protection success rates at each of the
  recognizer's three LFW operating points (best accuracy, FAR 1e-2, FAR 1e-3; :mod:`nullswap.recognizers.thresholds`):
  ``psr`` (``psr_far_1e-02``, ...): the share whose cosine to its *own* clean crop falls below the threshold;
  ``dodge_psr`` (...): the AMT-GAN / CLIP2Protect dodging rate against the person's *other* clean photos
  (:func:`~nullswap.metrics.identity.dodging_success_rate`). Those papers' published thresholds belong to other
  networks; ours are re-calibrated on LFW for each recognizer ("re-thresholded").
- ``robustness`` (ARS Table 6 style): the protected probes go through each perturbation of
  :mod:`nullswap.evaluation.perturbations` at each of its 5 levels, then identification and cosine are measured again.
- ``swap`` (NullSwap Table 3; ID-Guard/ARS disruption metrics): needs a face-swap model from
  :mod:`nullswap.manipulators`.

Recognizers see the crops through :class:`~nullswap.recognizers.ensemble.RecognizerEnsemble` (the same re-warp the
protectors are trained and attacked through).
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nullswap.datasets.faces import AlignedFaces, limit_records, scan_faces
from nullswap.errors import InputError
from nullswap.evaluation.results import ResultSet
from nullswap.protectors.base import IdentityProtector, Protector
from nullswap.recognizers.ensemble import RecognizerEnsemble

if TYPE_CHECKING:
    from nullswap.manipulators.base import Manipulator

log = logging.getLogger(__name__)

PROTOCOLS = ("quality", "identification", "robustness", "swap", "manipulation")


@dataclass
class EvalSet:
    """Aligned clean crops with identity labels, and which of them are probes.

    Attributes:
        name: data label recorded in results (e.g. ``"lfw"``).
        faces: the :class:`AlignedFaces` (gallery = all of them).
        probes: indices of the images that get protected.
    """

    name: str
    faces: AlignedFaces
    probes: list[int]


def load_eval_set(
    root: str | Path,
    layout: str = "identity-folders",
    *,
    min_images: int = 2,
    max_identities: int | None = None,
    max_per_identity: int | None = None,
    max_probes: int | None = None,
    template: str = "protector-256",
    split: str | None = None,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    split_seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> EvalSet:
    """Identities with at least ``min_images`` detected faces; probes spread evenly over them.

    Args:
        root: dataset root (LFW: ``../shared/data/lfw``; CelebA: ``../shared/data/celeba``).
        layout: see :func:`nullswap.datasets.faces.scan_faces`.
        min_images: keep identities with at least this many images.
        max_identities: use the first N identities (sorted).
        max_per_identity: use the first N images of each identity.
        max_probes: protect at most this many images (round-robin over identities so every identity is probed).
        template: crop template of the protectors.
        split: evaluate only one part (``"train"``/``"val"``/``"test"``) of the identity-disjoint split that
            training uses (same fractions and seed give the same identities: held-out evaluation).
        split_fractions: that split's fractions (the training config's ``data.split``).
        split_seed: that split's seed (the training config's ``data.split_seed``).
        progress: ``progress(done, total)`` while faces are detected.
    """
    recs = scan_faces(root, layout)
    if split is not None:
        from nullswap.datasets.faces import identity_disjoint_split

        parts = identity_disjoint_split(recs, split_fractions, seed=split_seed)
        if split not in parts:
            raise InputError(f"split: expected one of {sorted(parts)}, got {split!r}")
        recs = parts[split]
    by_id: dict[str, int] = {}
    for r in recs:
        by_id[r.identity] = by_id.get(r.identity, 0) + 1
    recs = [r for r in recs if by_id[r.identity] >= min_images]
    recs = limit_records(recs, max_identities, max_per_identity)
    if not recs:
        raise InputError(f"evaluation data {str(root)!r}: expected identities with >= {min_images} images, got none")
    faces = AlignedFaces(recs, template=template, progress=progress)
    counts: dict[int, int] = {}
    for lab in faces.labels.tolist():
        counts[lab] = counts.get(lab, 0) + 1
    eligible = [i for i, lab in enumerate(faces.labels.tolist()) if counts[lab] >= 2]
    # round-robin over identities: the k-th image of every identity before any (k+1)-th
    seen: dict[int, int] = {}
    order = []
    for i in eligible:
        lab = int(faces.labels[i])
        order.append((seen.get(lab, 0), i))
        seen[lab] = seen.get(lab, 0) + 1
    probes = [i for _, i in sorted(order)]
    if max_probes is not None:
        probes = sorted(probes[:max_probes])
    return EvalSet(Path(root).name, faces, probes)


def _embed(ensemble: RecognizerEnsemble, x: torch.Tensor | AlignedFaces, device: torch.device,
           bs: int = 32) -> list[torch.Tensor]:
    """Embeddings per recognizer; an :class:`AlignedFaces` is converted to float chunk by chunk (low memory)."""
    n = len(x) if isinstance(x, AlignedFaces) else x.shape[0]
    outs: list[list[torch.Tensor]] = [[] for _ in range(len(ensemble))]
    with torch.no_grad():
        for i in range(0, n, bs):
            chunk = x.tensor(range(i, min(i + bs, n))) if isinstance(x, AlignedFaces) else x[i : i + bs]
            for k, e in enumerate(ensemble(chunk.to(device))):
                outs[k].append(e.cpu())
    return [torch.cat(o) for o in outs]


def _identification(gallery: torch.Tensor, labels: torch.Tensor, probes: torch.Tensor, probe_idx: torch.Tensor,
                    topk: Sequence[int] = (1, 5)) -> dict[int, float]:
    from nullswap.metrics.identity import identification_accuracy

    return identification_accuracy(gallery, labels, probes, labels[probe_idx], topk=tuple(topk), exclude=probe_idx)


def load_manipulator(spec: str | Path, protocol: str) -> Manipulator:
    """The model of the ``swap`` or ``manipulation`` protocol: a registered name or a checkpoint folder.

    A folder is dispatched by its ``config.json`` format
    (:func:`~nullswap.manipulators.checkpoint.resolve_manipulator`); a registered swapper must have its weights
    installed (:func:`~nullswap.evaluation.swap.swap_protocol_available`).

    Raises:
        InputError: an unknown name, or a swapper without installed weights.
        WeightsNotFoundError: a folder without ``config.json`` or ``model.safetensors``.
        WeightsError: a folder of another format (a protector checkpoint, ...), or unreadable weights.
    """
    from nullswap.manipulators import create_manipulator
    from nullswap.manipulators.checkpoint import resolve_manipulator

    name, checkpoint = resolve_manipulator(spec)
    if checkpoint is not None:
        log.info("protocol %r: %s holds a %r checkpoint", protocol, checkpoint, name)
        return create_manipulator(name, checkpoint=checkpoint)
    if protocol == "swap":
        from nullswap.evaluation.swap import swap_protocol_available

        swap_protocol_available(name)
    return create_manipulator(name)


def evaluate(
    protectors: dict[str, Protector],
    data: EvalSet,
    recognizers: Sequence[str],
    protocols: Sequence[str] = ("quality", "identification"),
    *,
    perturbations: Sequence[str] | None = None,
    batch_size: int = 8,
    seed: int = 0,
    device: str | torch.device = "cpu",
    perceptual: str = "auto",
    progress: Callable[[str, int, int], None] | None = None,
    keep_protected: bool = False,
    swapper: str | Path = "swapper-celeba",
    manipulator: str | Path = "surrogate-ae",
) -> tuple[ResultSet, dict[str, torch.Tensor]]:
    """Run ``protocols`` for every protector on ``data``.

    Args:
        protectors: name -> protector (each protects crops of ``data``'s template, or is an identity).
        data: the evaluation set (:func:`load_eval_set`).
        recognizers: recognizer names (:func:`nullswap.recognizers.create_recognizer`).
        protocols: any of :data:`PROTOCOLS`.
        perturbations: robustness perturbations, ``NAME`` (its 5 levels) or ``NAME@VALUE`` (default: all).
        batch_size: crops per protector / swapper call.
        seed: seed of stochastic protectors and perturbations.
        device: where protectors, recognizers and the swapper run.
        perceptual: perceptual metric of the quality protocol (:func:`nullswap.metrics.perceptual.create_perceptual`).
        progress: ``progress(protector, done, total)`` callback.
        keep_protected: return all protected crops instead of the first 8.
        swapper: the face-swap model of the ``swap`` protocol, a name or a checkpoint folder
            (:func:`load_manipulator`; its template must be the evaluation set's).
        manipulator: the manipulation model of the ``manipulation`` protocol (ID-Guard / ARS / retentive
            disruption: ``G(x)`` vs ``G(x')``), a name or a checkpoint folder.

    Returns:
        The results, and (for figures) the protected probe crops per protector (the first few, or all with
        ``keep_protected``).
    """
    for p in protocols:
        if p not in PROTOCOLS:
            raise InputError(f"protocol: expected one of {PROTOCOLS}, got {p!r}")
    device = torch.device(device)
    swap_model = load_manipulator(swapper, "swap").to(device).eval() if "swap" in protocols else None
    manip_model = load_manipulator(manipulator, "manipulation").to(device).eval() if "manipulation" in protocols \
        else None
    for proto, model, name in (("swap", swap_model, swapper), ("manipulation", manip_model, manipulator)):
        if model is not None and model.template != data.faces.template.name:
            raise InputError(f"protocol {proto!r}: {name!r} expected crops of template {model.template!r}, the "
                             f"evaluation set has {data.faces.template.name!r} (pass the matching --template)")
    from nullswap.metrics.identity import dodging_success_rate, protection_success_rate
    from nullswap.metrics.quality import l2_distance, psnr, ssim
    from nullswap.recognizers.thresholds import THRESHOLD_LEVELS, verification_thresholds

    ens = RecognizerEnsemble(list(recognizers), source_template=data.faces.template.name).to(device)
    levels = {lv: verification_thresholds(lv) for lv in THRESHOLD_LEVELS}
    labels = data.faces.labels
    probe_idx = torch.tensor(data.probes, dtype=torch.long)
    clean = data.faces.tensor(data.probes)
    gallery = _embed(ens, data.faces, device)
    rs = ResultSet(meta={"data": data.name, "gallery": len(data.faces), "probes": len(probe_idx),
                         "identities": len(data.faces.identities), "recognizers": list(recognizers),
                         "protocols": list(protocols), "device": str(device), "torch": torch.__version__,
                         "machine": platform.machine(), "seed": seed})
    pmodel = None
    if "quality" in protocols:
        from nullswap.metrics.perceptual import create_perceptual

        pmodel = create_perceptual(perceptual).to(device)
        rs.meta["perceptual"] = pmodel.name
    kept: dict[str, torch.Tensor] = {}
    for pname, prot in protectors.items():
        if prot.template != data.faces.template.name and not isinstance(prot, IdentityProtector):
            raise InputError(f"protector {pname!r}: expected crops of template {prot.template!r}, the evaluation set "
                             f"has {data.faces.template.name!r} (pass the matching --template)")
        prot.to(device).eval()
        g = torch.Generator(device=device).manual_seed(seed)
        outs = []
        t_prot = time.perf_counter()
        for i in range(0, clean.shape[0], batch_size):
            outs.append(prot.protect(clean[i : i + batch_size].to(device), generator=g).detach().cpu())
            if progress is not None:
                progress(pname, min(i + batch_size, clean.shape[0]), clean.shape[0])
        protected = torch.cat(outs).clamp(0, 1)
        kept[pname] = protected if keep_protected else protected[:8]
        common = {"data": data.name, "protector": pname}
        # wall-clock protect time per crop on this machine (batches of ``batch_size``; includes nothing else)
        rs.add(protocol="cost", metric="seconds_per_crop",
               value=(time.perf_counter() - t_prot) / max(len(protected), 1), n=len(protected), **common)
        if "quality" in protocols:
            n = len(protected)
            rs.add(protocol="quality", metric="psnr", value=psnr(protected, clean).mean(), n=n, **common)
            rs.add(protocol="quality", metric="ssim", value=ssim(protected, clean).mean(), n=n, **common)
            with torch.no_grad():
                pd = torch.cat([pmodel(protected[i : i + 16].to(device), clean[i : i + 16].to(device)).cpu()
                                for i in range(0, n, 16)])
            rs.add(protocol="quality", metric=pmodel.name, value=pd.mean(), n=n, **common)
            rs.add(protocol="quality", metric="l2", value=l2_distance(protected, clean).mean(), n=n, **common)
        for proto, model in (("swap", swap_model), ("manipulation", manip_model)):
            if model is not None:
                _swap(rs, model, clean, protected, ens, _swap_targets(labels, probe_idx), batch_size, common, proto)
        variants: list[tuple[str, str, torch.Tensor]] = []
        if "identification" in protocols:
            variants.append(("identification", "", protected))
        if "robustness" in protocols:
            from nullswap.evaluation.perturbations import PERTURBATIONS, apply_perturbation

            for spec in perturbations or PERTURBATIONS:
                name, _, val = spec.partition("@")  # "jpeg" = its 5 levels; "jpeg@75" = that value only
                if name not in PERTURBATIONS:
                    raise InputError(f"perturbation: expected one of {list(PERTURBATIONS)}, got {name!r}")
                values = [float(val)] if val else list(PERTURBATIONS[name].levels)
                for j, v in enumerate(values):
                    pg = torch.Generator().manual_seed(seed + j)
                    lv: int | float = float(v) if val else j
                    variants.append(("robustness", f"{name}@{v:g}",
                                     apply_perturbation(protected, name, lv, generator=pg)))
        for proto, tag, imgs in variants:
            pert, level = (tag.split("@") + [""])[:2] if tag else ("", "")
            emb = _embed(ens, imgs, device)
            for k, rec in enumerate(ens.names):
                acc = _identification(gallery[k], labels, emb[k], probe_idx)
                cos = (emb[k] * gallery[k][probe_idx]).sum(1)
                ctx = {"recognizer": rec, "perturbation": pert, "level": level, "n": len(imgs), **common}
                rs.add(protocol=proto, metric="top1", value=acc[1], **ctx)
                rs.add(protocol=proto, metric="top5", value=acc[5], **ctx)
                rs.add(protocol=proto, metric="cosine", value=cos.mean(), **ctx)
                for lv, table in levels.items():
                    if rec not in table:
                        continue
                    suffix = "" if lv == "best" else f"_{lv}"
                    psr = protection_success_rate(gallery[k][probe_idx], emb[k], table[rec])
                    rs.add(protocol=proto, metric=f"psr{suffix}", value=psr, **ctx)
                    dodge = dodging_success_rate(emb[k], gallery[k], probe_idx, labels, table[rec])
                    rs.add(protocol=proto, metric=f"dodge_psr{suffix}", value=dodge, **ctx)
    return rs, kept


def _swap_targets(labels: list[int] | torch.Tensor, probe_idx: torch.Tensor) -> torch.Tensor:
    """For probe ``i``, the position of the next probe (cyclically) of another identity: its swap target.

    Choice (the papers sample source/target pairs at random): a deterministic pairing, so that every protector is
    scored on the same pairs. Falls back to the next probe when all probes share one identity.
    """
    lab = torch.as_tensor(labels)[probe_idx]
    n = len(lab)
    out = torch.empty(n, dtype=torch.long)
    for i in range(n):
        out[i] = next(((i + k) % n for k in range(1, n) if lab[(i + k) % n] != lab[i]), (i + 1) % n)
    return out


def _swap(rs: ResultSet, swapper: Any, clean: torch.Tensor, protected: torch.Tensor, ens: RecognizerEnsemble,
          targets: torch.Tensor, batch_size: int, common: dict[str, Any], protocol: str = "swap") -> None:
    """Record a swap (NullSwap Table 3) or manipulation (ID-Guard/ARS/retentive disruption) protocol run.

    A swapper puts each clean/protected source onto its target; another manipulator gives ``G(x)`` vs ``G(x')``.
    Recorded under ``protocol``: ID similarity per recognizer, L2, L2_face and both DSR rules.
    """
    from nullswap.evaluation.swap import swap_protocol

    res = swap_protocol(swapper, clean, protected, clean[targets], ens, batch_size=batch_size)
    for rec, d in res["per_recognizer"].items():
        for metric, v in d.items():
            rs.add(protocol=protocol, metric=metric, value=v, recognizer=rec, n=res["n"], **common)
    for metric in ("l2_disruption", "l2_face", "defense_success_rate", "dsr_idguard"):
        rs.add(protocol=protocol, metric=metric, value=res[metric], n=res["n"], **common)


def describe(rs: ResultSet) -> dict[str, Any]:
    """Short summary (for logs)."""
    return {"records": len(rs.records), **{k: rs.meta[k] for k in ("data", "probes", "gallery") if k in rs.meta}}


__all__ = ["PROTOCOLS", "EvalSet", "evaluate", "load_eval_set"]
