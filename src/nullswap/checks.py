"""Input contracts for public tensors (in the spirit of kornia's ``KORNIA_CHECK``).

Public image tensors in nullswap are RGB float tensors of shape ``(B, 3, H, W)`` with values in ``[0, 1]``.
"""

from __future__ import annotations

import torch

from nullswap.errors import InputError


def check_image_batch(x: object, name: str = "image", *, check_range: bool = True, tol: float = 1e-4) -> torch.Tensor:
    """Validate an RGB image batch and return it unchanged.

    Args:
        x: the candidate tensor.
        name: argument name used in the error message.
        check_range: also require values in ``[0, 1]`` (up to ``tol``).
        tol: tolerance for the range check.

    Returns:
        ``x`` itself.

    Raises:
        InputError: stating the expected and the actual type, shape, dtype or range.
    """
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor of shape (B,3,H,W), got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 3:
        raise InputError(f"{name}: expected shape (B,3,H,W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"{name}: expected a floating point tensor with values in [0,1], got dtype {x.dtype}")
    if check_range and x.numel() > 0:
        lo, hi = float(x.detach().amin()), float(x.detach().amax())
        if lo < -tol or hi > 1 + tol:
            raise InputError(f"{name}: expected values in [0,1], got range [{lo:.4g}, {hi:.4g}]")
    return x


def check_same_shape(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str] = ("a", "b")) -> None:
    """Require two tensors to have the same shape.

    Raises:
        InputError: naming both shapes.
    """
    if a.shape != b.shape:
        raise InputError(
            f"{names[0]} and {names[1]} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
