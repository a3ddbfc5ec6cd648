"""Disruption metrics: how much a protection changes a manipulation's output (ID-Guard Sec. IV-A.4; ARS "Metrics").

Notation: ``y = G(x)`` is the manipulation's output on the clean image (``out_clean``), ``y_hat = G(x + delta)`` its
output on the protected image (``out_protected``).

Scale convention. The papers compute these on images normalised to ``[-1, 1]`` (ID-Guard Sec. IV-A.5: "the pixel
value is normalized to [-1,1]"; Ruiz et al. 2020 and Huang et al. 2022, whose SR / SR_mask ARS adopts, evaluate
``tanh`` generator outputs in ``[-1, 1]``), and their thresholds (0.05, 0.5) refer to that scale. nullswap's images
are in ``[0, 1]``, so by default (``to_minus_one_one=True``) inputs are mapped with ``2x - 1`` first; a squared
difference on ``[-1, 1]`` is 4 times the one on ``[0, 1]``.

Definitions (per image):

* ``L2`` (:func:`l2_disruption`): ``mean_{c,i,j} (y - y_hat)^2`` -- a **mean squared error**, not a norm, as
  ``F.mse_loss(gen, gen_noattack)`` in Ruiz et al. 2020's evaluation. Ruiz et al. 2020 / CMUA count a defense
  successful when ``L2 > 0.05``; this is ARS's **SR** (:func:`success_rate`) and ID-Guard's "previous works" rule
  (``rule="l2"``).
* ``L2_face`` (:func:`l2_face`, ID-Guard Eq. 13): ``sum_{c,i,j} Face_ij (y - y_hat)^2 / (C * sum_{i,j} Face_ij)``,
  the mean squared error over the face pixels (Eq. 13 writes the pixel sum; for colour images the channel mean is
  taken, as in the CMUA/ID-Guard evaluation code ``/(mask.sum()*3)``).
* **DSR** (:func:`defense_success_rate`, ID-Guard): success iff ``L2_face > 0.05`` **and** ``ID sim < 0.4``, ID sim
  being the ArcFace cosine similarity between the two outputs.
* **SR_mask** (:func:`success_rate_mask`, Huang et al. 2022 "CMUA-Watermark", adopted by ARS): the mask marks the
  pixels the manipulation actually changed, ``M_ij = [sum_c |y - x|_cij > 0.5]`` (``x`` the clean input), and
  success iff ``sum_{c,i,j} M (y - y_hat)^2 / (C * sum M) > 0.05``.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch

from nullswap.checks import check_image_batch, check_same_shape
from nullswap.errors import InputError
from nullswap.metrics._base import _MeanMetric

log = logging.getLogger(__name__)

__all__ = [
    "DefenseSuccessRate",
    "L2Disruption",
    "L2Face",
    "SuccessRate",
    "SuccessRateMask",
    "defense_success",
    "defense_success_rate",
    "face_region_mask",
    "l2_disruption",
    "l2_face",
    "l2_mask",
    "manipulation_mask",
    "success_rate",
    "success_rate_mask",
]

#: Success threshold on L2 / L2_face / masked L2 (Ruiz et al. 2020; CMUA; ID-Guard), on the [-1, 1] scale.
L2_THRESHOLD = 0.05
#: ID-Guard's identity-similarity threshold: success needs ArcFace cosine below it.
ID_SIM_THRESHOLD = 0.4
#: CMUA's threshold on the channel-summed absolute change ``sum_c |G(x) - x|`` defining SR_mask's mask ([-1, 1]).
MASK_THRESHOLD = 0.5

Rule = Literal["idguard", "l2"]


def _pair(out_clean: torch.Tensor, out_protected: torch.Tensor, to_minus_one_one: bool) -> tuple[torch.Tensor, ...]:
    check_image_batch(out_clean, "out_clean")
    check_image_batch(out_protected, "out_protected")
    check_same_shape(out_clean, out_protected, ("out_clean", "out_protected"))
    if to_minus_one_one:
        return 2 * out_clean - 1, 2 * out_protected - 1
    return out_clean, out_protected


def _check_mask(mask: object, like: torch.Tensor, name: str) -> torch.Tensor:
    B, _, H, W = like.shape
    if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != (B, 1, H, W):
        got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise InputError(f"{name}: expected a binary tensor of shape ({B}, 1, {H}, {W}), got {got}")
    m = mask.to(like.dtype)
    if ((m != 0) & (m != 1)).any():
        raise InputError(f"{name}: expected binary values {{0, 1}}, got values in [{float(m.min())}, {float(m.max())}]")
    return m


def _masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor, what: str) -> torch.Tensor:
    """``sum M (a-b)^2 / (C sum M)`` per image; 0 (with a warning) where the mask is empty."""
    C = a.shape[1]
    num = (mask * (a - b).pow(2)).flatten(1).sum(dim=1)
    den = C * mask.flatten(1).sum(dim=1)
    empty = den == 0
    if bool(empty.any()):
        log.warning(
            "%s: empty mask for images %s; their value is set to 0", what, torch.nonzero(empty).flatten().tolist()
        )
    return torch.where(empty, torch.zeros_like(num), num / den.clamp_min(1))


def l2_disruption(
    out_clean: torch.Tensor, out_protected: torch.Tensor, *, to_minus_one_one: bool = True
) -> torch.Tensor:
    """Per-image disruption ``L2 = mean_{c,i,j} (y - y_hat)^2`` (Ruiz et al. 2020; ID-Guard's L2; ARS's MSE).

    Args:
        out_clean: manipulation output on the clean image, ``(B, 3, H, W)`` in ``[0, 1]``.
        out_protected: manipulation output on the protected image, same shape.
        to_minus_one_one: compute on the papers' ``[-1, 1]`` scale (default) rather than ``[0, 1]``.

    Returns:
        ``(B,)`` mean squared errors.
    """
    y, y_hat = _pair(out_clean, out_protected, to_minus_one_one)
    return (y - y_hat).pow(2).flatten(1).mean(dim=1)


def l2_face(
    out_clean: torch.Tensor, out_protected: torch.Tensor, face_mask: torch.Tensor, *, to_minus_one_one: bool = True
) -> torch.Tensor:
    """Per-image ``L2_face`` of ID-Guard Eq. 13: the mean squared difference over the face pixels.

    ``L2_face = sum_{c,i,j} Face_ij (y - y_hat)^2 / (C * sum_{i,j} Face_ij)``. An image with an empty mask gets 0
    (and a logged warning), i.e. it never counts as disrupted.

    Args:
        out_clean: ``(B, 3, H, W)`` in ``[0, 1]``.
        out_protected: same shape.
        face_mask: ``(B, 1, H, W)`` binary face mask (ID-Guard uses dlib; see :func:`face_region_mask`).
        to_minus_one_one: compute on the papers' ``[-1, 1]`` scale (default).

    Returns:
        ``(B,)`` values.
    """
    y, y_hat = _pair(out_clean, out_protected, to_minus_one_one)
    return _masked_mse(y, y_hat, _check_mask(face_mask, y, "face_mask"), "l2_face")


def face_region_mask(landmarks: torch.Tensor, size: int | tuple[int, int], scale: float = 1.0) -> torch.Tensor:
    """Binary face mask from 5 facial landmarks: an ellipse fitted to the eye-mouth geometry.

    ID-Guard computes its face mask with dlib; no face parser is bundled here, so the mask approximates the region
    dlib's 68 landmarks enclose (eyebrows to chin, cheek to cheek) from the 5 points. With ``e`` the mid-point of
    the eyes, ``m`` the mid-point of the mouth corners, ``d = |m - e|`` and ``iod`` the inter-ocular distance, the
    ellipse has its vertical axis along ``e -> m`` (so it follows head roll), spans from ``0.5 d`` above the eyes to
    ``0.6 d`` below the mouth (centre ``e + 0.55 d u``, vertical semi-axis ``1.05 d``) and has horizontal semi-axis
    ``1.05 iod``; ``scale`` multiplies both semi-axes.

    Args:
        landmarks: ``(B, 5, 2)`` pixel coordinates ``(x, y)`` in the usual order: left eye, right eye, nose, left and
            right mouth corners (as nullswap's detectors return them).
        size: ``H`` (square) or ``(H, W)`` of the mask.
        scale: enlarges (> 1) or shrinks (< 1) the ellipse.

    Returns:
        ``(B, 1, H, W)`` float mask with values in ``{0, 1}``.
    """
    if not isinstance(landmarks, torch.Tensor) or landmarks.ndim != 3 or tuple(landmarks.shape[1:]) != (5, 2):
        got = tuple(landmarks.shape) if isinstance(landmarks, torch.Tensor) else type(landmarks).__name__
        raise InputError(f"landmarks: expected a tensor of shape (B,5,2), got {got}")
    if not torch.isfinite(landmarks).all():
        raise InputError("landmarks: expected finite coordinates, got NaN or inf")
    H, W = (size, size) if isinstance(size, int) else size
    if H < 1 or W < 1:
        raise InputError(f"size: expected positive (H, W), got {(H, W)}")
    if scale <= 0:
        raise InputError(f"scale: expected a positive number, got {scale}")
    lm = landmarks.to(torch.float32)
    eye = (lm[:, 0] + lm[:, 1]) / 2
    mouth = (lm[:, 3] + lm[:, 4]) / 2
    down = mouth - eye
    d = torch.linalg.vector_norm(down, dim=1).clamp_min(1e-6)
    iod = torch.linalg.vector_norm(lm[:, 1] - lm[:, 0], dim=1).clamp_min(1e-6)
    u = down / d[:, None]  # unit vector eyes -> mouth
    v = torch.stack([-u[:, 1], u[:, 0]], dim=1)  # perpendicular
    center = eye + 0.55 * d[:, None] * u
    a = 1.05 * iod * scale  # horizontal semi-axis
    b = 1.05 * d * scale  # vertical semi-axis
    ys, xs = torch.meshgrid(
        torch.arange(H, dtype=torch.float32, device=lm.device),
        torch.arange(W, dtype=torch.float32, device=lm.device),
        indexing="ij",
    )
    px = xs[None] - center[:, 0, None, None]
    py = ys[None] - center[:, 1, None, None]
    along_u = px * u[:, 0, None, None] + py * u[:, 1, None, None]
    along_v = px * v[:, 0, None, None] + py * v[:, 1, None, None]
    inside = (along_v / a[:, None, None]) ** 2 + (along_u / b[:, None, None]) ** 2 <= 1
    return inside[:, None].to(landmarks.dtype if landmarks.is_floating_point() else torch.float32)


def defense_success(
    out_clean: torch.Tensor,
    out_protected: torch.Tensor,
    *,
    rule: Rule = "idguard",
    face_mask: torch.Tensor | None = None,
    id_sim: torch.Tensor | None = None,
    l2_threshold: float = L2_THRESHOLD,
    id_threshold: float = ID_SIM_THRESHOLD,
    to_minus_one_one: bool = True,
) -> torch.Tensor:
    """Per-image defense success, ``(B,)`` booleans.

    * ``rule="idguard"`` (ID-Guard): ``L2_face > l2_threshold and id_sim < id_threshold`` (0.05 and 0.4).
    * ``rule="l2"`` (Ruiz et al. 2020, CMUA; the rule ID-Guard calls incomplete): ``L2 > l2_threshold``.

    Args:
        out_clean: manipulation output on the clean image, ``(B, 3, H, W)`` in ``[0, 1]``.
        out_protected: manipulation output on the protected image.
        rule: ``"idguard"`` or ``"l2"``.
        face_mask: ``(B, 1, H, W)`` binary face mask, required by ``"idguard"``.
        id_sim: ``(B,)`` ArcFace cosine similarity between ``out_clean`` and ``out_protected`` (e.g.
            :func:`nullswap.metrics.identity.cosine_similarity` of their embeddings), required by ``"idguard"``.
        l2_threshold: success threshold on L2 / L2_face.
        id_threshold: success threshold on ID sim.
        to_minus_one_one: compute L2 on the papers' ``[-1, 1]`` scale (default).
    """
    if rule == "l2":
        return l2_disruption(out_clean, out_protected, to_minus_one_one=to_minus_one_one) > l2_threshold
    if rule != "idguard":
        raise InputError(f"rule: expected 'idguard' or 'l2', got {rule!r}")
    if face_mask is None or id_sim is None:
        raise InputError("rule 'idguard': expected face_mask and id_sim, got None")
    B = out_clean.shape[0] if isinstance(out_clean, torch.Tensor) else -1
    if not isinstance(id_sim, torch.Tensor) or tuple(id_sim.shape) != (B,):
        got = tuple(id_sim.shape) if isinstance(id_sim, torch.Tensor) else type(id_sim).__name__
        raise InputError(f"id_sim: expected a tensor of shape ({B},), got {got}")
    l2f = l2_face(out_clean, out_protected, face_mask, to_minus_one_one=to_minus_one_one)
    return (l2f > l2_threshold) & (id_sim.to(l2f.device) < id_threshold)


def defense_success_rate(
    out_clean: torch.Tensor,
    out_protected: torch.Tensor,
    *,
    rule: Rule = "idguard",
    face_mask: torch.Tensor | None = None,
    id_sim: torch.Tensor | None = None,
    l2_threshold: float = L2_THRESHOLD,
    id_threshold: float = ID_SIM_THRESHOLD,
    to_minus_one_one: bool = True,
) -> float:
    """Defense success rate (DSR, ID-Guard Tables I-VII): the fraction of images where :func:`defense_success` holds.

    See :func:`defense_success` for the arguments. Returns ``nan`` for an empty batch.
    """
    ok = defense_success(
        out_clean,
        out_protected,
        rule=rule,
        face_mask=face_mask,
        id_sim=id_sim,
        l2_threshold=l2_threshold,
        id_threshold=id_threshold,
        to_minus_one_one=to_minus_one_one,
    )
    return float(ok.float().mean()) if ok.numel() else float("nan")


def success_rate(
    out_clean: torch.Tensor,
    out_protected: torch.Tensor,
    threshold: float = L2_THRESHOLD,
    *,
    to_minus_one_one: bool = True,
) -> float:
    """ARS's SR (Ruiz et al. 2020): fraction of images with :func:`l2_disruption` ``> threshold`` (0.05)."""
    return defense_success_rate(
        out_clean, out_protected, rule="l2", l2_threshold=threshold, to_minus_one_one=to_minus_one_one
    )


def manipulation_mask(
    inputs: torch.Tensor, out_clean: torch.Tensor, threshold: float = MASK_THRESHOLD, *, to_minus_one_one: bool = True
) -> torch.Tensor:
    """CMUA's SR_mask mask: pixels the manipulation changed, ``[sum_c |G(x) - x| > threshold]``, ``(B, 1, H, W)``.

    Args:
        inputs: the clean image ``x`` given to the manipulation, ``(B, 3, H, W)`` in ``[0, 1]``.
        out_clean: ``G(x)``, same shape.
        threshold: on the channel-summed absolute difference (0.5 on the ``[-1, 1]`` scale, Huang et al. 2022).
        to_minus_one_one: compare on the ``[-1, 1]`` scale (default).
    """
    x, y = _pair(inputs, out_clean, to_minus_one_one)
    return ((y - x).abs().sum(dim=1, keepdim=True) > threshold).to(y.dtype)


def l2_mask(
    inputs: torch.Tensor,
    out_clean: torch.Tensor,
    out_protected: torch.Tensor,
    *,
    mask_threshold: float = MASK_THRESHOLD,
    to_minus_one_one: bool = True,
) -> torch.Tensor:
    """Per-image masked L2 of SR_mask: ``sum M (y - y_hat)^2 / (C sum M)`` with ``M`` = :func:`manipulation_mask`.

    Images where the manipulation changed nothing (empty mask) get 0 and a logged warning.
    """
    mask = manipulation_mask(inputs, out_clean, mask_threshold, to_minus_one_one=to_minus_one_one)
    y, y_hat = _pair(out_clean, out_protected, to_minus_one_one)
    return _masked_mse(y, y_hat, mask, "l2_mask")


def success_rate_mask(
    inputs: torch.Tensor,
    out_clean: torch.Tensor,
    out_protected: torch.Tensor,
    threshold: float = L2_THRESHOLD,
    *,
    mask_threshold: float = MASK_THRESHOLD,
    to_minus_one_one: bool = True,
) -> float:
    """ARS's SR_mask (Huang et al. 2022): fraction of images with :func:`l2_mask` ``> threshold`` (0.05)."""
    v = l2_mask(inputs, out_clean, out_protected, mask_threshold=mask_threshold, to_minus_one_one=to_minus_one_one)
    return float((v > threshold).float().mean()) if v.numel() else float("nan")


class L2Disruption(_MeanMetric):
    """Mean over images of :func:`l2_disruption` (ID-Guard / ARS "L2" / "MSE")."""

    higher_is_better = True

    def __init__(self, *, to_minus_one_one: bool = True, **kwargs: object) -> None:
        """``kwargs`` go to :class:`torchmetrics.Metric`."""
        super().__init__(**kwargs)
        self.to_minus_one_one = to_minus_one_one

    def update(self, out_clean: torch.Tensor, out_protected: torch.Tensor) -> None:
        """Add each image's L2."""
        self._accumulate(l2_disruption(out_clean, out_protected, to_minus_one_one=self.to_minus_one_one))


class L2Face(_MeanMetric):
    """Mean over images of :func:`l2_face` (ID-Guard Eq. 13, "L2_face" column)."""

    higher_is_better = True

    def __init__(self, *, to_minus_one_one: bool = True, **kwargs: object) -> None:
        """``kwargs`` go to :class:`torchmetrics.Metric`."""
        super().__init__(**kwargs)
        self.to_minus_one_one = to_minus_one_one

    def update(self, out_clean: torch.Tensor, out_protected: torch.Tensor, face_mask: torch.Tensor) -> None:
        """Add each image's L2_face."""
        self._accumulate(l2_face(out_clean, out_protected, face_mask, to_minus_one_one=self.to_minus_one_one))


class DefenseSuccessRate(_MeanMetric):
    """Running :func:`defense_success_rate` (ID-Guard DSR with ``rule="idguard"``; Ruiz/CMUA with ``rule="l2"``)."""

    higher_is_better = True

    def __init__(
        self,
        rule: Rule = "idguard",
        *,
        l2_threshold: float = L2_THRESHOLD,
        id_threshold: float = ID_SIM_THRESHOLD,
        to_minus_one_one: bool = True,
        **kwargs: object,
    ) -> None:
        """Fix the rule and thresholds; ``kwargs`` go to :class:`torchmetrics.Metric`."""
        if rule not in ("idguard", "l2"):
            raise InputError(f"rule: expected 'idguard' or 'l2', got {rule!r}")
        super().__init__(**kwargs)
        self.rule: Rule = rule
        self.l2_threshold = l2_threshold
        self.id_threshold = id_threshold
        self.to_minus_one_one = to_minus_one_one

    def update(
        self,
        out_clean: torch.Tensor,
        out_protected: torch.Tensor,
        face_mask: torch.Tensor | None = None,
        id_sim: torch.Tensor | None = None,
    ) -> None:
        """Add each image's success (``face_mask`` and ``id_sim`` are needed by the ``"idguard"`` rule)."""
        ok = defense_success(
            out_clean,
            out_protected,
            rule=self.rule,
            face_mask=face_mask,
            id_sim=id_sim,
            l2_threshold=self.l2_threshold,
            id_threshold=self.id_threshold,
            to_minus_one_one=self.to_minus_one_one,
        )
        self._accumulate(ok.float())


class SuccessRate(DefenseSuccessRate):
    """Running ARS SR (Ruiz et al. 2020): fraction of images with L2 > ``threshold``."""

    def __init__(self, threshold: float = L2_THRESHOLD, *, to_minus_one_one: bool = True, **kwargs: object) -> None:
        """``kwargs`` go to :class:`torchmetrics.Metric`."""
        super().__init__("l2", l2_threshold=threshold, to_minus_one_one=to_minus_one_one, **kwargs)

    def update(self, out_clean: torch.Tensor, out_protected: torch.Tensor) -> None:  # type: ignore[override]
        """Add each image's success."""
        super().update(out_clean, out_protected)


class SuccessRateMask(_MeanMetric):
    """Running ARS SR_mask (Huang et al. 2022): fraction of images with :func:`l2_mask` > ``threshold``."""

    higher_is_better = True

    def __init__(
        self,
        threshold: float = L2_THRESHOLD,
        *,
        mask_threshold: float = MASK_THRESHOLD,
        to_minus_one_one: bool = True,
        **kwargs: object,
    ) -> None:
        """``kwargs`` go to :class:`torchmetrics.Metric`."""
        super().__init__(**kwargs)
        self.threshold = threshold
        self.mask_threshold = mask_threshold
        self.to_minus_one_one = to_minus_one_one

    def update(self, inputs: torch.Tensor, out_clean: torch.Tensor, out_protected: torch.Tensor) -> None:
        """Add each image's success; ``inputs`` is the clean image given to the manipulation."""
        v = l2_mask(
            inputs,
            out_clean,
            out_protected,
            mask_threshold=self.mask_threshold,
            to_minus_one_one=self.to_minus_one_one,
        )
        self._accumulate((v > self.threshold).float())
