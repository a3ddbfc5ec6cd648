"""The face-swap protocol (NullSwap Table 3): identity similarity between swaps made from clean and protected sources.

NullSwap (nullswap.txt, Sec. 4.3, Table 3) protects the *source* face: a swapper fed the protected source should
produce a face whose identity no longer matches the clean source. For targets ``t`` and sources ``s`` (clean) /
``s'`` (protected) the protocol computes ``y = G(t, s)`` and ``y' = G(t, s')`` and reports, per recognizer, the mean
cosine similarities

* ``id_sim``: ``cos(e(y), e(y'))`` -- the paper's "ID Sim." between swaps from clean and protected sources;
* ``clean_swap_to_source``: ``cos(e(y), e(s))`` -- how well the swapper transfers the identity at all;
* ``protected_swap_to_source``: ``cos(e(y'), e(s))`` -- what protection leaves of the source identity;
* ``protected_swap_to_target``: ``cos(e(y'), e(t))``;

and the pixel disruption of the swap (:mod:`nullswap.metrics.disruption`): mean ``l2_disruption(y, y')``, mean
``l2_face(y, y')`` (ID-Guard Eq. 13) over the face ellipse of the crop template's 5 landmarks, and the defense
success rates with rule ``"l2"`` (Ruiz et al. 2020) and with ID-Guard's rule (``L2_face > 0.05`` and ID sim
``< 0.4``). Choice: ID-Guard measures ID sim with ArcFace, which is not obtainable here; the rule uses the first
recognizer of the ensemble, named in the result as ``dsr_idguard_recognizer``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from nullswap.errors import InputError

log = logging.getLogger(__name__)

DEFAULT_SWAPPER = "swapper-celeba"


def _assets(name: str) -> Path:
    from nullswap.manipulators.checkpoint import ASSETS_DIR

    return ASSETS_DIR / name


def swap_protocol_available(name: str = DEFAULT_SWAPPER) -> None:
    """Raise :class:`InputError` when no trained face-swap model ``name`` is installed to run the swap protocol."""
    try:
        from nullswap.manipulators import list_manipulators
    except ImportError:
        list_manipulators = None  # noqa: N806
    folder = _assets(name) if list_manipulators is not None else None
    if folder is None or not (folder / "model.safetensors").is_file() or not (folder / "config.json").is_file():
        raise InputError(
            f"protocol 'swap': expected trained face-swap weights for {name!r} (nullswap/assets/manipulators/{name}), "
            "got none installed; train them with `nullswap train --config configs/swapper.yaml` and copy the "
            "export folder there, or use --protocol quality, identification or robustness"
        )


def _check(x: torch.Tensor, what: str, like: torch.Tensor | None = None) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"{what}: expected crops (B,3,H,W), got {got}")
    if like is not None and x.shape != like.shape:
        raise InputError(f"{what}: expected shape {tuple(like.shape)} (as the clean sources), got {tuple(x.shape)}")


@torch.no_grad()
def swap_protocol(
    swapper: Any,
    sources_clean: torch.Tensor,
    sources_protected: torch.Tensor,
    targets: torch.Tensor,
    recognizers: Any,
    *,
    batch_size: int = 16,
    l2_threshold: float | None = None,
) -> dict[str, Any]:
    """Run the NullSwap Table 3 protocol.

    Args:
        swapper: a :class:`~nullswap.manipulators.base.FaceSwapper` (``swap(target, source)``), or any other
            :class:`~nullswap.manipulators.base.Manipulator` (then ``y = G(s)``, ``y' = G(s')`` and ``targets``
            only serve the ``protected_swap_to_target`` similarity): the ID-Guard / ARS / retentive disruption
            setting, where ``id_sim`` is the ID similarity of the two manipulated outputs.
        sources_clean: clean source crops ``(N,3,H,W)`` in [0,1], aligned to ``swapper.template``.
        sources_protected: the same sources after protection.
        targets: target crops ``(N,3,H,W)`` (pair ``i`` swaps source ``i`` onto target ``i``).
        recognizers: a :class:`~nullswap.recognizers.ensemble.RecognizerEnsemble` whose ``source_template`` is the
            swapper's template.
        batch_size: crops per forward pass.
        l2_threshold: success threshold of the ``"l2"`` rule (default: the metrics module's).

    Returns:
        ``{"n", "swapper", "recognizers", "per_recognizer": {name: {"id_sim", "clean_swap_to_source",
        "protected_swap_to_source", "protected_swap_to_target"}}, "id_sim_mean", "l2_disruption", "l2_face",
        "defense_success_rate", "dsr_idguard", "dsr_idguard_recognizer"}``.

    Raises:
        InputError: mismatching shapes, an empty batch, or a recognizer ensemble fed from another template.
    """
    from nullswap.faces.templates import get_template
    from nullswap.metrics.disruption import (
        L2_THRESHOLD,
        defense_success_rate,
        face_region_mask,
        l2_disruption,
        l2_face,
    )

    _check(sources_clean, "sources_clean")
    _check(sources_protected, "sources_protected", sources_clean)
    _check(targets, "targets", sources_clean)
    if sources_clean.shape[0] == 0:
        raise InputError("swap protocol: expected at least one source/target pair, got 0")
    template = getattr(swapper, "template", None)
    if getattr(recognizers, "source_template", template) != template:
        raise InputError(f"swap protocol: expected recognizers fed from the swapper's template {template!r}, "
                         f"got {recognizers.source_template!r}")
    was = swapper.training
    swapper.eval()
    dev = next((p.device for p in swapper.parameters()), torch.device("cpu"))
    names = list(recognizers.names)
    sims: dict[str, dict[str, list[torch.Tensor]]] = {n: {} for n in names}
    clean_out, prot_out = [], []
    for i in range(0, sources_clean.shape[0], batch_size):
        s = sources_clean[i : i + batch_size].to(dev)
        sp = sources_protected[i : i + batch_size].to(dev)
        t = targets[i : i + batch_size].to(dev)
        if hasattr(swapper, "swap"):
            y, yp = swapper.swap(t, s).clamp(0, 1), swapper.swap(t, sp).clamp(0, 1)
        else:  # a manipulator without a source (ID-Guard/ARS/retentive setting): y = G(x), y' = G(x')
            y, yp = swapper(s).clamp(0, 1), swapper(sp).clamp(0, 1)
        clean_out.append(y.cpu())
        prot_out.append(yp.cpu())
        for n, ey, eyp, es, et in zip(names, recognizers(y), recognizers(yp), recognizers(s), recognizers(t),
                                      strict=True):
            for key, a, b in (("id_sim", ey, eyp), ("clean_swap_to_source", ey, es),
                              ("protected_swap_to_source", eyp, es), ("protected_swap_to_target", eyp, et)):
                sims[n].setdefault(key, []).append((a * b).sum(1).cpu())
    swapper.train(was)
    y_all, yp_all = torch.cat(clean_out), torch.cat(prot_out)
    per = {n: {k: float(torch.cat(v).mean()) for k, v in d.items()} for n, d in sims.items()}
    thr = L2_THRESHOLD if l2_threshold is None else float(l2_threshold)
    n_all, (h, w) = y_all.shape[0], y_all.shape[-2:]
    tpl = get_template(template or "protector-128")  # the face ellipse from the template's landmarks, rescaled
    pts = tpl.points_tensor() * torch.tensor([w / tpl.size[1], h / tpl.size[0]])
    mask = face_region_mask(pts[None].expand(n_all, 5, 2), (h, w))
    first = names[0]
    id_sim_first = torch.cat(sims[first]["id_sim"])
    out = {
        "n": int(y_all.shape[0]),
        "swapper": getattr(swapper, "name", type(swapper).__name__),
        "recognizers": names,
        "per_recognizer": per,
        "id_sim_mean": float(sum(p["id_sim"] for p in per.values()) / len(per)),
        "l2_disruption": float(l2_disruption(y_all, yp_all).mean()),
        "l2_face": float(l2_face(y_all, yp_all, mask).mean()),
        "defense_success_rate": defense_success_rate(y_all, yp_all, rule="l2", l2_threshold=thr),
        "dsr_idguard": defense_success_rate(y_all, yp_all, rule="idguard", face_mask=mask, id_sim=id_sim_first,
                                            l2_threshold=thr),
        "dsr_idguard_recognizer": first,
    }
    log.info("swap protocol (%d pairs, %s): %s", out["n"], out["swapper"],
             {k: v for k, v in out.items() if k not in ("per_recognizer", "recognizers", "dsr_idguard_recognizer")})
    return out


__all__ = ["swap_protocol", "swap_protocol_available"]
