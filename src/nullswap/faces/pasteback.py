"""Paste modified face crops back into the full-resolution photo through a feathered face mask.

Choice (the papers work on crops only): by default the *difference* between the modified and the original crop is
warped back and added to the photo (``mode="delta"``), so the photo keeps its full-resolution detail, an unmodified
crop returns the photo bit-for-bit, and pixels outside the mask are never touched. ``mode="replace"`` blends the
warped crop itself instead.
"""

from __future__ import annotations

import math

import torch

from nullswap.checks import check_image_batch
from nullswap.errors import InputError
from nullswap.faces.alignment import compose_affine, invert_affine, warp_affine
from nullswap.faces.templates import AlignmentTemplate, get_template


def face_mask(
    size: tuple[int, int],
    *,
    center: tuple[float, float] = (0.5, 0.53),
    radii: tuple[float, float] = (0.40, 0.45),
    feather: float = 0.2,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A feathered elliptical face mask in crop coordinates.

    Args:
        size: (height, width) of the crop.
        center: ellipse centre as fractions of (width, height).
        radii: ellipse radii as fractions of (width, height). Choice: with the default the ellipse covers the face of
            every template in :mod:`nullswap.faces.templates` and stays inside the crop, so the mask is exactly 0 at
            the crop border.
        feather: width of the smooth fall-off as a fraction of the radius (smoothstep 1 -> 0 at the ellipse).
        device: device of the mask.

    Returns:
        ``(H, W)`` float mask in [0, 1], exactly 0 outside the ellipse.
    """
    h, w = size
    ys = torch.arange(h, dtype=torch.float32, device=device)[:, None]
    xs = torch.arange(w, dtype=torch.float32, device=device)[None, :]
    cx, cy = center[0] * (w - 1), center[1] * (h - 1)
    rx, ry = radii[0] * w, radii[1] * h
    r = torch.sqrt(((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2)
    t = ((1.0 - r) / max(feather, 1e-6)).clamp(0, 1)
    return t * t * (3 - 2 * t)


def _window(M: torch.Tensor, crop_size: tuple[int, int], H: int, W: int) -> tuple[int, int, int, int] | None:
    """Integer image window [x0, x1) x [y0, y1) covering the crop's footprint, clipped to the image."""
    h, w = crop_size
    corners = torch.tensor([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], dtype=M.dtype, device=M.device)
    Minv = invert_affine(M)
    pts = corners @ Minv[:, :2].T + Minv[:, 2]
    x0 = max(int(math.floor(float(pts[:, 0].min()))) - 1, 0)
    y0 = max(int(math.floor(float(pts[:, 1].min()))) - 1, 0)
    x1 = min(int(math.ceil(float(pts[:, 0].max()))) + 2, W)
    y1 = min(int(math.ceil(float(pts[:, 1].max()))) + 2, H)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def paste_back(
    image: torch.Tensor,
    crops: torch.Tensor,
    matrices: torch.Tensor,
    template: str | AlignmentTemplate,
    *,
    original_crops: torch.Tensor | None = None,
    mode: str = "delta",
    mask: torch.Tensor | None = None,
    return_mask: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Warp modified crops back into ``image`` with a feathered mask.

    Only a window around each face is resampled, so the cost does not grow with the photo's resolution.

    Args:
        image: ``(3,H,W)`` RGB in [0,1] (the original photo).
        crops: ``(N,3,h,w)`` modified crops aligned with ``matrices`` (image -> crop) to ``template``.
        matrices: ``(N,2,3)`` alignment matrices from :func:`nullswap.faces.alignment.align_faces`.
        template: the crops' template.
        original_crops: the unmodified crops for ``mode="delta"`` (recomputed from ``image`` when omitted).
        mode: ``"delta"`` (add the warped difference) or ``"replace"`` (blend the warped crop).
        mask: ``(h,w)`` crop-space mask (default :func:`face_mask`).
        return_mask: also return the ``(H,W)`` union of the pasted masks.

    Returns:
        The new ``(3,H,W)`` image (clamped to [0,1]); with ``return_mask``, ``(image, mask)``.
    """
    check_image_batch(image.unsqueeze(0), "image")
    t = get_template(template)
    if crops.ndim != 4 or tuple(crops.shape[-2:]) != tuple(t.size) or crops.shape[1] != 3:
        raise InputError(
            f"crops: expected (N,3,{t.size[0]},{t.size[1]}) for template {t.name!r}, got {tuple(crops.shape)}"
        )
    if matrices.shape != (crops.shape[0], 2, 3):
        raise InputError(f"matrices: expected ({crops.shape[0]},2,3), got {tuple(matrices.shape)}")
    if mode not in ("delta", "replace"):
        raise InputError(f"mode: expected 'delta' or 'replace', got {mode!r}")
    _, H, W = image.shape
    out = image.clone()
    full_mask = torch.zeros(H, W, dtype=image.dtype, device=image.device)
    m_crop = (mask if mask is not None else face_mask(t.size, device=image.device)).to(image.dtype)
    for i in range(crops.shape[0]):
        M = matrices[i].to(torch.float64)
        win = _window(M, t.size, H, W)
        if win is None:
            continue
        x0, y0, x1, y1 = win
        shift = torch.tensor([[1.0, 0.0, x0], [0.0, 1.0, y0]], dtype=torch.float64, device=M.device)
        M_local = compose_affine(M, shift)  # window pixel -> crop pixel
        back = invert_affine(M_local).to(image.dtype)  # crop pixel -> window pixel
        size = (y1 - y0, x1 - x0)
        if mode == "delta":
            orig = original_crops[i] if original_crops is not None else None
            if orig is None:
                orig = warp_affine(image.unsqueeze(0), M.to(image.dtype).unsqueeze(0), t.size)[0]
            payload = crops[i].to(image.dtype) - orig.to(image.dtype)
        else:
            payload = crops[i].to(image.dtype)
        stacked = torch.cat([payload, m_crop.unsqueeze(0)], 0).unsqueeze(0)
        warped = warp_affine(stacked, back.unsqueeze(0), size)[0]
        pw, mw = warped[:3], warped[3].clamp(0, 1)
        region = out[:, y0:y1, x0:x1]
        new = region + mw * pw if mode == "delta" else region * (1 - mw) + mw * pw
        # exactly the input where the mask is 0
        out[:, y0:y1, x0:x1] = torch.where(mw > 0, new.clamp(0, 1), region)
        full_mask[y0:y1, x0:x1] = torch.maximum(full_mask[y0:y1, x0:x1], mw)
    return (out, full_mask) if return_mask else out
