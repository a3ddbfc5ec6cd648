"""Identity metrics on face-recognition embeddings (NullSwap Sec. 4, Tables 2-5; ID-Guard "ID sim.").

* :func:`cosine_similarity`: NullSwap Eq. 12 / Table 3 and ID-Guard's "ID sim." (ArcFace cosine between outputs).
* :func:`identification_accuracy`: NullSwap Tables 2 and 4 -- a face-identification task in which each protected
  image (probe) is matched by cosine similarity against a gallery of embeddings with identity labels; top-1 and top-5
  accuracies, lower meaning better cloaking.
* :func:`protection_success_rate`: the fraction of protected images whose embedding is no longer similar to the clean
  one (cosine below a verification threshold).

Embeddings are ``(N, D)`` float tensors; they need not be L2-normalised (every function normalises).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from nullswap.errors import InputError
from nullswap.metrics._base import _MeanMetric

__all__ = [
    "CosineSimilarity",
    "IdentificationAccuracy",
    "ProtectionSuccessRate",
    "cosine_similarity",
    "identification_accuracy",
    "protection_success_rate",
]


def _check_embeddings(e: object, name: str) -> torch.Tensor:
    if not isinstance(e, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor of shape (N,D), got {type(e).__name__}")
    if e.ndim != 2 or not e.is_floating_point():
        raise InputError(f"{name}: expected a float tensor of shape (N,D), got shape {tuple(e.shape)} dtype {e.dtype}")
    return e


def _check_labels(labels: object, n: int, name: str) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.is_floating_point():
        got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise InputError(f"{name}: expected an integer tensor of shape ({n},), got {got}")
    if labels.shape[0] != n:
        raise InputError(f"{name}: expected shape ({n},), got {tuple(labels.shape)}")
    return labels


def cosine_similarity(e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity ``<e1_i, e2_i> / (|e1_i| |e2_i|)``, shape ``(B,)`` (NullSwap Eq. 12).

    Args:
        e1: ``(B, D)`` embeddings.
        e2: ``(B, D)`` embeddings.
    """
    _check_embeddings(e1, "e1")
    _check_embeddings(e2, "e2")
    if e1.shape != e2.shape:
        raise InputError(f"e1 and e2 must have the same shape, got {tuple(e1.shape)} and {tuple(e2.shape)}")
    return F.cosine_similarity(e1, e2, dim=1, eps=1e-12)


def _check_topk(topk: Sequence[int] | int) -> tuple[int, ...]:
    ks = (topk,) if isinstance(topk, int) else tuple(topk)
    if not ks or any(not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in ks):
        raise InputError(f"topk: expected positive integers, got {topk!r}")
    return ks


def _identification_hits(
    gallery_embeddings: torch.Tensor,
    gallery_labels: torch.Tensor,
    probe_embeddings: torch.Tensor,
    probe_labels: torch.Tensor,
    topk: tuple[int, ...],
    exclude: torch.Tensor | None,
) -> torch.Tensor:
    """``(len(topk), P)`` booleans: probe ``p``'s identity is among its ``k`` nearest identities."""
    G, P = gallery_embeddings.shape[0], probe_embeddings.shape[0]
    _check_labels(gallery_labels, G, "gallery_labels")
    _check_labels(probe_labels, P, "probe_labels")
    if gallery_embeddings.shape[1] != probe_embeddings.shape[1]:
        raise InputError(
            f"probe_embeddings: expected dimension {gallery_embeddings.shape[1]} (the gallery's), "
            f"got {probe_embeddings.shape[1]}"
        )
    if G == 0:
        raise InputError("gallery_embeddings: expected at least one gallery embedding, got 0")
    device = probe_embeddings.device
    gal = F.normalize(gallery_embeddings.to(device, torch.float32), dim=1, eps=1e-12)
    prb = F.normalize(probe_embeddings.to(torch.float32), dim=1, eps=1e-12)
    sim = prb @ gal.T  # (P, G)
    if exclude is not None:
        exclude = _check_labels(exclude, P, "exclude").to(device)
        if ((exclude < -1) | (exclude >= G)).any():
            raise InputError(f"exclude: expected gallery indices in [0, {G}) or -1 (none), got {exclude.tolist()}")
        rows = torch.nonzero(exclude >= 0).flatten()
        sim[rows, exclude[rows]] = float("-inf")
    ids, gal_idx = torch.unique(gallery_labels.to(device), return_inverse=True)
    # best similarity per (probe, identity): max over that identity's gallery images
    per_id = torch.full((P, ids.numel()), float("-inf"), device=device)
    per_id.scatter_reduce_(1, gal_idx.expand(P, G), sim, reduce="amax", include_self=True)
    match = probe_labels.to(device)[:, None] == ids[None, :]  # (P, I)
    has_id = match.any(dim=1)
    true_score = torch.where(match, per_id, torch.full_like(per_id, float("-inf"))).amax(dim=1)
    # rank = number of *other* identities strictly more similar: ties go to the true identity
    rank = (per_id > true_score[:, None]).sum(dim=1)
    valid = has_id & torch.isfinite(true_score)
    return torch.stack([valid & (rank < k) for k in topk])


def identification_accuracy(
    gallery_embeddings: torch.Tensor,
    gallery_labels: torch.Tensor,
    probe_embeddings: torch.Tensor,
    probe_labels: torch.Tensor,
    topk: Sequence[int] | int = (1, 5),
    exclude: torch.Tensor | None = None,
) -> dict[int, float]:
    """Top-k face-identification accuracy by cosine similarity (NullSwap Sec. 4, Tables 2 and 4).

    Each probe (e.g. a protected image) is compared with every gallery embedding by cosine similarity. Identities
    are scored by their **best-matching gallery image** (max over that identity's images) and ranked; the probe is
    correct at ``k`` when its true identity is among the ``k`` highest-ranked *distinct identities* (so top-5 means
    five different people, not five images that may all be the same person). NullSwap does not spell out this
    detail; ranking identities is the standard closed-set identification protocol.

    Conventions: ties are resolved in favour of the true identity (conservative for a protection claim: the attacker's
    recognizer gets the benefit of the doubt); a probe whose identity has no (non-excluded) gallery image counts as
    a miss.

    Args:
        gallery_embeddings: ``(G, D)``.
        gallery_labels: ``(G,)`` integer identity labels.
        probe_embeddings: ``(P, D)``.
        probe_labels: ``(P,)`` integer identity labels.
        topk: the ``k`` values.
        exclude: optional ``(P,)`` gallery index to ignore for each probe (``-1``: none), e.g. the probe's own clean
            image when the gallery holds the clean test set.

    Returns:
        ``{k: accuracy}`` with accuracies in ``[0, 1]`` (``nan`` when there are no probes).

    Raises:
        InputError: on mismatched shapes, non-integer labels, bad ``topk`` or out-of-range ``exclude``.
    """
    ks = _check_topk(topk)
    _check_embeddings(gallery_embeddings, "gallery_embeddings")
    _check_embeddings(probe_embeddings, "probe_embeddings")
    hits = _identification_hits(gallery_embeddings, gallery_labels, probe_embeddings, probe_labels, ks, exclude)
    n = hits.shape[1]
    return {k: (float(hits[i].sum()) / n if n else float("nan")) for i, k in enumerate(ks)}


def protection_success_rate(clean_emb: torch.Tensor, protected_emb: torch.Tensor, threshold: float) -> float:
    """Fraction of images whose protected embedding is no longer matched to the clean one.

    ``PSR = mean_i [cos(e_i, e'_i) < threshold]`` with ``e_i`` / ``e'_i`` the embeddings of the clean / protected
    image (NullSwap's identity-cloaking goal; ``threshold`` is the recognizer's verification threshold, e.g. its
    LFW-calibrated one).

    Args:
        clean_emb: ``(B, D)``.
        protected_emb: ``(B, D)``.
        threshold: cosine threshold; a pair below it counts as a successful protection.

    Returns:
        The rate in ``[0, 1]`` (``nan`` for an empty batch).
    """
    sim = cosine_similarity(clean_emb, protected_emb)
    return float((sim < threshold).float().mean()) if sim.numel() else float("nan")


def dodging_success_rate(
    protected_emb: torch.Tensor, gallery_emb: torch.Tensor, probe_index: torch.Tensor, labels: torch.Tensor,
    threshold: float,
) -> float:
    """Dodging protection success rate: protected faces not verified against *other* clean photos of their person.

    AMT-GAN (Hu et al., CVPR 2022) and CLIP2Protect (Shamshad et al., CVPR 2023) count a protected face as a success
    when a verifier no longer matches it to a clean photo of the same person. Here, per probe ``i`` with identity
    ``y_i``: ``s_i = mean_{j != i, y_j = y_i} [cos(e'_i, g_j) < threshold]`` over every other clean gallery photo of
    that person, and ``PSR = mean_i s_i`` over probes that have at least one such photo. Choice: averaging over all
    of a person's other photos (instead of one reference photo, which the papers leave unspecified) gives a lower-
    variance estimate on small galleries.

    Args:
        protected_emb: ``(P, D)`` L2-normalised embeddings of the protected probes.
        gallery_emb: ``(N, D)`` L2-normalised embeddings of all clean images.
        probe_index: ``(P,)`` gallery index of each probe's own clean image (left out).
        labels: ``(N,)`` identity labels of the gallery.
        threshold: cosine threshold of the verifier.

    Returns:
        The rate in ``[0, 1]``; ``nan`` when no probe has another photo of its person.
    """
    sims = protected_emb.float() @ gallery_emb.float().T  # (P, N)
    labels = torch.as_tensor(labels)
    same = labels[probe_index].unsqueeze(1) == labels.unsqueeze(0)
    same[torch.arange(len(probe_index)), probe_index] = False
    counts = same.sum(1)
    ok = counts > 0
    if not bool(ok.any()):
        return float("nan")
    below = ((sims < threshold) & same).sum(1).float()
    return float((below[ok] / counts[ok].float()).mean())


class CosineSimilarity(_MeanMetric):
    """Mean row-wise :func:`cosine_similarity` (NullSwap Table 3; ID-Guard "ID sim.")."""

    higher_is_better = False

    def update(self, e1: torch.Tensor, e2: torch.Tensor) -> None:
        """Add the cosine similarity of each embedding pair."""
        self._accumulate(cosine_similarity(e1, e2))


class ProtectionSuccessRate(_MeanMetric):
    """Running :func:`protection_success_rate` over all pairs seen."""

    higher_is_better = True

    def __init__(self, threshold: float, **kwargs: object) -> None:
        """Set the cosine ``threshold``; ``kwargs`` go to :class:`torchmetrics.Metric`."""
        super().__init__(**kwargs)
        self.threshold = float(threshold)

    def update(self, clean_emb: torch.Tensor, protected_emb: torch.Tensor) -> None:
        """Add each pair's success (cosine < threshold)."""
        self._accumulate((cosine_similarity(clean_emb, protected_emb) < self.threshold).float())


class IdentificationAccuracy(_MeanMetric):
    """Running :func:`identification_accuracy` of probes against a fixed gallery (NullSwap Tables 2 and 4).

    ``compute()`` returns ``{k: accuracy}`` as floats-in-tensors.
    """

    higher_is_better = False  # for a protection: lower accuracy = better cloaking

    def __init__(
        self,
        gallery_embeddings: torch.Tensor,
        gallery_labels: torch.Tensor,
        topk: Sequence[int] | int = (1, 5),
        **kwargs: object,
    ) -> None:
        """Fix the gallery and the ``k`` values; ``kwargs`` go to :class:`torchmetrics.Metric`."""
        super().__init__(**kwargs)
        self.topk = _check_topk(topk)
        _check_embeddings(gallery_embeddings, "gallery_embeddings")
        _check_labels(gallery_labels, gallery_embeddings.shape[0], "gallery_labels")
        self.register_buffer("gallery_embeddings", gallery_embeddings.detach().clone())
        self.register_buffer("gallery_labels", gallery_labels.detach().clone())
        self.add_state("hits", default=torch.zeros(len(self.topk), dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self, probe_embeddings: torch.Tensor, probe_labels: torch.Tensor, exclude: torch.Tensor | None = None
    ) -> None:
        """Score a batch of probes (see :func:`identification_accuracy` for ``exclude``)."""
        _check_embeddings(probe_embeddings, "probe_embeddings")
        hits = _identification_hits(
            self.gallery_embeddings, self.gallery_labels, probe_embeddings.detach(), probe_labels, self.topk, exclude
        )
        self.hits += hits.sum(dim=1).to(self.hits.device)
        self.count += hits.shape[1]

    def compute(self) -> dict[int, torch.Tensor]:  # type: ignore[override]
        """``{k: top-k accuracy}`` over all probes seen (NaN before any update)."""
        n = int(self.count)
        return {
            k: (self.hits[i].double() / n if n else torch.tensor(float("nan"), dtype=torch.float64))
            for i, k in enumerate(self.topk)
        }
