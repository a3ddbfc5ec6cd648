"""Similarity alignment of faces to a template, its differentiable warp, and the exact inverse.

Conventions: an affine matrix ``M`` of shape ``(2, 3)`` maps *source image* pixel coordinates (x, y), pixel centres at
integers, to *crop* pixel coordinates: ``[x', y'] = M @ [x, y, 1]``. Warps sample with bilinear interpolation and zero
padding (``align_corners=True`` pixel-centre convention), through :func:`torch.nn.functional.grid_sample`, so gradients
flow to the image (and to ``M``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nullswap.checks import check_image_batch
from nullswap.errors import InputError
from nullswap.faces.templates import AlignmentTemplate, get_template


def estimate_similarity(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Least-squares similarity transform (rotation, uniform scale, translation) mapping ``src`` onto ``dst``.

    Umeyama (1991), "Least-squares estimation of transformation parameters between two point patterns", Eq. (40)-(42),
    without reflection.

    Args:
        src: ``(B, N, 2)`` or ``(N, 2)`` source points.
        dst: ``(B, N, 2)`` or ``(N, 2)`` destination points (broadcast over the batch).

    Returns:
        ``(B, 2, 3)`` (or ``(2, 3)`` for unbatched input) matrices ``M`` with ``dst ~= M @ [src; 1]``.
    """
    unbatched = src.ndim == 2
    s = src.unsqueeze(0) if unbatched else src
    d = dst.unsqueeze(0) if dst.ndim == 2 else dst
    if s.shape[-1] != 2 or s.shape[-2] < 2:
        raise InputError(f"estimate_similarity: expected points (B,N,2) with N>=2, got {tuple(src.shape)}")
    s64, d64 = s.double(), d.double().expand(s.shape[0], -1, -1)
    mu_s, mu_d = s64.mean(1, keepdim=True), d64.mean(1, keepdim=True)
    sc, dc = s64 - mu_s, d64 - mu_d
    var_s = (sc**2).sum(dim=(1, 2)) / s.shape[1]
    cov = dc.transpose(1, 2) @ sc / s.shape[1]  # (B,2,2)
    U, S, Vh = torch.linalg.svd(cov)
    det = torch.det(U) * torch.det(Vh)
    Dm = torch.ones(s.shape[0], 2, dtype=torch.float64, device=s.device)
    Dm[:, 1] = torch.where(det < 0, -1.0, 1.0)
    R = U @ torch.diag_embed(Dm) @ Vh
    scale = (S * Dm).sum(1) / var_s
    t = mu_d.squeeze(1) - scale[:, None] * (R @ mu_s.transpose(1, 2)).squeeze(2)
    M = torch.cat([scale[:, None, None] * R, t[:, :, None]], dim=2).to(src.dtype)
    return M[0] if unbatched else M


def invert_affine(M: torch.Tensor) -> torch.Tensor:
    """Exact inverse of ``(…, 2, 3)`` affine matrices."""
    A, t = M[..., :2], M[..., 2:]
    Ai = torch.linalg.inv(A)
    return torch.cat([Ai, -Ai @ t], dim=-1)


def compose_affine(M2: torch.Tensor, M1: torch.Tensor) -> torch.Tensor:
    """The affine map ``M2 ∘ M1`` (apply ``M1`` first)."""
    A2, t2 = M2[..., :2], M2[..., 2:]
    return torch.cat([A2 @ M1[..., :2], A2 @ M1[..., 2:] + t2], dim=-1)


def transform_points(M: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """Apply ``(B,2,3)`` matrices to ``(B,N,2)`` points."""
    return pts @ M[..., :2].transpose(-1, -2) + M[..., 2].unsqueeze(-2)


def warp_affine(
    image: torch.Tensor, M: torch.Tensor, out_size: tuple[int, int], mode: str = "bilinear"
) -> torch.Tensor:
    """Warp ``image`` ``(B,C,H,W)`` into an ``out_size`` = (h, w) canvas with the forward map ``M`` (source -> output).

    Differentiable in ``image`` and ``M``. Pixels whose source falls outside the image are 0.
    """
    B, _, H, W = image.shape
    h, w = out_size
    if M.ndim == 2:
        M = M.unsqueeze(0).expand(B, -1, -1)
    Minv = invert_affine(M.to(image.dtype))
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=image.dtype, device=image.device),
        torch.arange(w, dtype=image.dtype, device=image.device),
        indexing="ij",
    )
    grid = torch.stack([xs, ys, torch.ones_like(xs)], -1).reshape(1, h * w, 3)
    src = grid @ Minv.transpose(1, 2)  # (B, h*w, 2) source pixel coords
    # normalise with the align_corners=True convention: pixel 0 -> -1, pixel W-1 -> +1
    sx = 2.0 * src[..., 0] / max(W - 1, 1) - 1.0
    sy = 2.0 * src[..., 1] / max(H - 1, 1) - 1.0
    g = torch.stack([sx, sy], -1).reshape(B, h, w, 2)
    return F.grid_sample(image, g, mode=mode, padding_mode="zeros", align_corners=True)


def alignment_matrices(landmarks: torch.Tensor, template: str | AlignmentTemplate) -> torch.Tensor:
    """``(N,2,3)`` similarity matrices taking image landmarks ``(N,5,2)`` onto ``template``'s points."""
    t = get_template(template)
    if landmarks.ndim != 3 or landmarks.shape[1:] != (5, 2):
        raise InputError(f"landmarks: expected shape (N,5,2), got {tuple(landmarks.shape)}")
    return estimate_similarity(landmarks.float(), t.points_tensor(device=landmarks.device))


def align_faces(
    image: torch.Tensor, landmarks: torch.Tensor, template: str | AlignmentTemplate, *, check_range: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop and align every face of one image.

    Args:
        image: ``(1,3,H,W)`` or ``(3,H,W)`` RGB in [0,1].
        landmarks: ``(N,5,2)`` landmarks of N faces in ``image`` pixel coordinates.
        template: a template name or object.
        check_range: check that ``image`` holds values in [0,1] (``False``: shape and dtype only, no pass over the
            photo; for pixels known to be, e.g. a :meth:`~nullswap.faces.io.LoadedImage.float_canvas`).

    Returns:
        ``(crops, M)``: crops ``(N,3,h,w)`` and the ``(N,2,3)`` matrices (image -> crop) used, for paste-back.
    """
    img = image.unsqueeze(0) if image.ndim == 3 else image
    check_image_batch(img, "image", check_range=check_range)
    if img.shape[0] != 1:
        raise InputError(f"align_faces: expected one image (1,3,H,W), got batch of {img.shape[0]}")
    t = get_template(template)
    M = alignment_matrices(landmarks.to(img.device), t)
    if M.shape[0] == 0:
        return img.new_zeros(0, 3, *t.size), M
    crops = warp_affine(img.expand(M.shape[0], -1, -1, -1), M, t.size)
    return crops, M


def template_to_template(src: str | AlignmentTemplate, dst: str | AlignmentTemplate) -> torch.Tensor:
    """``(2,3)`` similarity taking crop coordinates of template ``src`` to those of ``dst``.

    Used to feed a recognizer from a protector's crop: ``warp_affine(crop_src, M, dst.size)``.
    """
    s, d = get_template(src), get_template(dst)
    return estimate_similarity(s.points_tensor(dtype=torch.float64), d.points_tensor(dtype=torch.float64)).float()


def rewarp(crops: torch.Tensor, src: str | AlignmentTemplate, dst: str | AlignmentTemplate) -> torch.Tensor:
    """Differentiably re-align crops made for template ``src`` into template ``dst`` (size included)."""
    M = template_to_template(src, dst).to(crops.device)
    return warp_affine(crops, M, get_template(dst).size)
