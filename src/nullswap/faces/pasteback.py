"""Paste modified face crops back into the full-resolution photo through a feathered face mask.

Choice (the papers work on crops only): by default the *difference* between the modified and the original crop is
warped back and added to the photo (``mode="delta"``), so the photo keeps its full-resolution detail, an unmodified
crop returns the photo bit-for-bit, and pixels outside the mask are never touched. ``mode="replace"`` blends the
warped crop itself instead.

Memory: the work is done per face region. :func:`face_patches` returns, per face, only the window of the photo its
crop covers (:class:`FacePatch`); :func:`apply_patches` writes them into a photo in place. Nothing of the photo's
full size is allocated except the result :func:`paste_back` returns (its ``inplace=True`` writes into ``image``
instead) and the mask when ``return_mask`` asks for it. :func:`face_region` and :func:`region_views` give the
bounding region of the faces, so whatever only looks at the faces (verification) works on that region.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

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


#: Window rows per strip in :func:`face_patches` (bounds its temporaries; the result does not depend on it).
STRIP_ROWS = 256


@dataclass
class FacePatch:
    """One face's pasted window of the photo.

    Attributes:
        box: ``(x0, y0, x1, y1)``: the window ``[x0, x1) x [y0, y1)`` in photo pixels.
        pixels: ``(3, y1-y0, x1-x0)`` the window's new pixels (every earlier face's patch already applied).
        mask: ``(y1-y0, x1-x0)`` the face's feathered mask in the window (0: the pixel is the input's).
    """

    box: tuple[int, int, int, int]
    pixels: torch.Tensor
    mask: torch.Tensor


def face_patches(
    image: torch.Tensor,
    crops: torch.Tensor,
    matrices: torch.Tensor,
    template: str | AlignmentTemplate,
    *,
    original_crops: torch.Tensor | None = None,
    mode: str = "delta",
    mask: torch.Tensor | None = None,
    strip_rows: int | None = STRIP_ROWS,
    check_range: bool = True,
) -> list[FacePatch]:
    """The pasted window of every face, computed on its window only (``image`` is not modified or copied).

    Applying the patches in order (:func:`apply_patches`) gives exactly :func:`paste_back`'s result: where windows
    overlap, a later face's window already holds the earlier faces' changes.

    Memory and time: a patch's box is the part of the crop's footprint that the feathered mask can reach (outside
    it the pixels are the input's, so the patched photo is the same), computed in strips of ``strip_rows`` rows
    (``None``: in one piece) with the per-pixel arithmetic of the whole footprint (bit-identical results): the
    temporaries are a strip's and the held memory is the box's pixels and mask (16 bytes per pixel, float32).

    Args: as :func:`paste_back`, and
        strip_rows: rows per strip (``None``: the whole window at once).
        check_range: check that ``image`` holds values in [0,1] (``False``: only its shape and dtype; for a photo
            whose pixels are known to be, e.g. a :meth:`~nullswap.faces.io.LoadedImage.float_canvas`).

    Raises:
        InputError: bad crop or matrix shapes, or an unknown mode.
    """
    check_image_batch(image.unsqueeze(0), "image", check_range=check_range)
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
    m_crop = (mask if mask is not None else face_mask(t.size, device=image.device)).to(image.dtype)
    patches: list[FacePatch] = []
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
        # only the part of the window the mask can reach (outside it the pixels are the input's): same arithmetic
        # per pixel (window coordinates), fewer pixels
        ry0, rx0, ry1, rx1 = _mask_reach(m_crop, M, (x0, y0, x1, y1))
        hh, ww = ry1 - ry0, rx1 - rx0
        pixels = torch.empty((3, hh, ww), dtype=image.dtype, device=image.device)
        mask_w = torch.empty((hh, ww), dtype=image.dtype, device=image.device)
        step = max(hh, 1) if strip_rows is None else max(1, int(strip_rows))
        for r0 in range(ry0, ry1, step):  # row strips: the temporaries stay a strip of the window
            r1 = min(r0 + step, ry1)
            warped = _warp_rows(stacked, back, size, r0, r1, rx0, rx1)[0]
            pw, mw = warped[:3], warped[3].clamp(0, 1)
            region = image[:, y0 + r0:y0 + r1, x0 + rx0:x0 + rx1].clone()
            for p in patches:  # earlier faces overlapping this window
                _apply_one(region, p, (x0 + rx0, y0 + r0))
            new = region + mw * pw if mode == "delta" else region * (1 - mw) + mw * pw
            # exactly the input where the mask is 0
            pixels[:, r0 - ry0:r1 - ry0] = torch.where(mw > 0, new.clamp(0, 1), region)
            mask_w[r0 - ry0:r1 - ry0] = mw
        patches.append(FacePatch((x0 + rx0, y0 + ry0, x0 + rx1, y0 + ry1), pixels, mask_w))
    return patches


def _mask_reach(mask: torch.Tensor, M: torch.Tensor, win: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """Rows and columns ``(r0, c0, r1, c1)`` of the window ``win`` where the warped ``mask`` can be non-zero.

    A window pixel samples the crop bilinearly at its 4 neighbours, so it gets a non-zero mask only when it maps
    within 1 crop pixel of the mask's support; the support is grown by 2 crop pixels and its footprint by the
    margins of :func:`_window` (rounding). The whole window when the mask has no support.
    """
    x0, y0, x1, y1 = win
    full = (0, 0, y1 - y0, x1 - x0)
    rows = torch.nonzero(mask.detach().amax(1) > 0).flatten()
    cols = torch.nonzero(mask.detach().amax(0) > 0).flatten()
    if rows.numel() == 0:
        return full
    h, w = int(mask.shape[0]), int(mask.shape[1])
    cy0, cy1 = max(int(rows[0]) - 2, 0), min(int(rows[-1]) + 2, h - 1)
    cx0, cx1 = max(int(cols[0]) - 2, 0), min(int(cols[-1]) + 2, w - 1)
    corners = torch.tensor([[cx0, cy0], [cx1, cy0], [cx0, cy1], [cx1, cy1]], dtype=M.dtype, device=M.device)
    Minv = invert_affine(M)
    pts = corners @ Minv[:, :2].T + Minv[:, 2]
    c0 = max(int(math.floor(float(pts[:, 0].min()))) - 1 - x0, 0)
    r0 = max(int(math.floor(float(pts[:, 1].min()))) - 1 - y0, 0)
    c1 = min(int(math.ceil(float(pts[:, 0].max()))) + 2 - x0, x1 - x0)
    r1 = min(int(math.ceil(float(pts[:, 1].max()))) + 2 - y0, y1 - y0)
    if c1 <= c0 or r1 <= r0:
        return full
    return r0, c0, r1, c1


def _warp_rows(image: torch.Tensor, M: torch.Tensor, out_size: tuple[int, int], r0: int, r1: int,
               c0: int = 0, c1: int | None = None) -> torch.Tensor:
    """Rows ``[r0, r1)``, columns ``[c0, c1)`` of ``warp_affine(image, M, out_size)``, with its arithmetic per pixel."""
    B, _, H, W = image.shape
    c1 = out_size[1] if c1 is None else c1
    w = c1 - c0
    if M.ndim == 2:
        M = M.unsqueeze(0).expand(B, -1, -1)
    Minv = invert_affine(M.to(image.dtype))
    ys, xs = torch.meshgrid(
        torch.arange(r0, r1, dtype=image.dtype, device=image.device),
        torch.arange(c0, c1, dtype=image.dtype, device=image.device),
        indexing="ij",
    )
    grid = torch.stack([xs, ys, torch.ones_like(xs)], -1).reshape(1, (r1 - r0) * w, 3)
    src = grid @ Minv.transpose(1, 2)
    sx = 2.0 * src[..., 0] / max(W - 1, 1) - 1.0
    sy = 2.0 * src[..., 1] / max(H - 1, 1) - 1.0
    g = torch.stack([sx, sy], -1).reshape(B, r1 - r0, w, 2)
    return F.grid_sample(image, g, mode="bilinear", padding_mode="zeros", align_corners=True)


def _overlap(
    box: tuple[int, int, int, int], origin: tuple[int, int], shape: tuple[int, int]
) -> tuple[slice, slice, slice, slice] | None:
    """Slices (dst rows, dst cols, src rows, src cols) of ``box`` inside a canvas at ``origin`` of ``shape``."""
    ox, oy = origin
    x0, y0, x1, y1 = box
    ax0, ay0 = max(x0, ox), max(y0, oy)
    ax1, ay1 = min(x1, ox + shape[1]), min(y1, oy + shape[0])
    if ax1 <= ax0 or ay1 <= ay0:
        return None
    return (slice(ay0 - oy, ay1 - oy), slice(ax0 - ox, ax1 - ox), slice(ay0 - y0, ay1 - y0), slice(ax0 - x0, ax1 - x0))


def _apply_one(canvas: torch.Tensor, patch: FacePatch, origin: tuple[int, int]) -> None:
    sl = _overlap(patch.box, origin, (int(canvas.shape[-2]), int(canvas.shape[-1])))
    if sl is not None:
        dy, dx, sy, sx = sl
        canvas[:, dy, dx] = patch.pixels[:, sy, sx].to(canvas.dtype)


def apply_patches(canvas: torch.Tensor, patches: Iterable[FacePatch], origin: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Write ``patches`` into ``canvas`` in place, in order, and return it.

    Args:
        canvas: ``(C,h,w)``: the photo, or a region of it whose top-left pixel is ``origin`` = (x, y) in the photo
            (parts of a patch outside the canvas are left out).
        patches: from :func:`face_patches`.
        origin: the canvas's offset in the photo.
    """
    for p in patches:
        _apply_one(canvas, p, origin)
    return canvas


def patch_mask(
    patches: Iterable[FacePatch], size: tuple[int, int], *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The ``(H,W)`` union (maximum) of the patches' masks, for ``size`` = (H, W) (a full-size allocation)."""
    out = torch.zeros(size, dtype=dtype)
    for p in patches:
        x0, y0, x1, y1 = p.box
        out[y0:y1, x0:x1] = torch.maximum(out[y0:y1, x0:x1], p.mask.to(dtype).cpu())
    return out


def face_region(
    matrices: Sequence[torch.Tensor] | torch.Tensor, crop_sizes: Sequence[tuple[int, int]], size: tuple[int, int]
) -> tuple[int, int, int, int] | None:
    """The bounding region ``(x0, y0, x1, y1)`` of every crop's footprint in a photo of ``size`` = (H, W).

    Args:
        matrices: per template, ``(N,2,3)`` image -> crop matrices (e.g. :func:`alignment_matrices`).
        crop_sizes: per template, its crop size (h, w).
        size: the photo's (H, W).

    Returns:
        The region, clipped to the photo; ``None`` when no crop touches it. A crop's footprint that leaves the photo
        leaves it on a side where the region reaches the photo's border, so aligning faces from the region gives the
        crops aligning them from the photo gives (both pad with zeros outside the photo).
    """
    H, W = size
    boxes = []
    for Ms, cs in zip(matrices, crop_sizes, strict=True):
        for M in Ms:
            win = _window(M.to(torch.float64), cs, H, W)
            if win is not None:
                boxes.append(win)
    if not boxes:
        return None
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def region_views(
    image: torch.Tensor, patches: Sequence[FacePatch], landmarks: torch.Tensor, region: tuple[int, int, int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The clean and the patched photo restricted to ``region``, and the landmarks in the region's pixels.

    Args:
        image: ``(3,H,W)`` the clean photo (not modified: the clean view is a view of it, the patched one a copy of
            the region only).
        patches: from :func:`face_patches`.
        landmarks: ``(N,K,2)`` in photo pixels.
        region: ``(x0, y0, x1, y1)`` from :func:`face_region`.

    Returns:
        ``(clean, patched, landmarks)`` with ``clean``/``patched`` ``(3, y1-y0, x1-x0)``.
    """
    x0, y0, x1, y1 = region
    clean = image[:, y0:y1, x0:x1]
    patched = apply_patches(clean.clone(), patches, (x0, y0))
    shift = torch.tensor([x0, y0], dtype=landmarks.dtype, device=landmarks.device)
    return clean, patched, landmarks - shift


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
    inplace: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Warp modified crops back into ``image`` with a feathered mask.

    Only a window around each face is resampled (:func:`face_patches`), so the cost does not grow with the photo's
    resolution; the one full-size allocation is the returned copy (none with ``inplace``).

    Args:
        image: ``(3,H,W)`` RGB in [0,1] (the original photo).
        crops: ``(N,3,h,w)`` modified crops aligned with ``matrices`` (image -> crop) to ``template``.
        matrices: ``(N,2,3)`` alignment matrices from :func:`nullswap.faces.alignment.align_faces`.
        template: the crops' template.
        original_crops: the unmodified crops for ``mode="delta"`` (recomputed from ``image`` when omitted).
        mode: ``"delta"`` (add the warped difference) or ``"replace"`` (blend the warped crop).
        mask: ``(h,w)`` crop-space mask (default :func:`face_mask`).
        return_mask: also return the ``(H,W)`` union of the pasted masks.
        inplace: write into ``image`` instead of a copy.

    Returns:
        The new ``(3,H,W)`` image (clamped to [0,1]); with ``return_mask``, ``(image, mask)``.
    """
    patches = face_patches(image, crops, matrices, template, original_crops=original_crops, mode=mode, mask=mask)
    out = apply_patches(image if inplace else image.clone(), patches)
    if not return_mask:
        return out
    return out, patch_mask(patches, (int(image.shape[1]), int(image.shape[2])), dtype=image.dtype).to(image.device)
