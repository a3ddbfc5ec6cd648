"""ARS losses and the differentiable perturbation module ``p`` (ars.txt, Eq. 2, 7-10).

* Eq. 2: ``L_f = ||G(x_b) - y^||_2 + lambda ||eta_b||_2`` (``y^`` = a full-white image, ``lambda = 10``).
* Eq. 8: ``L_q = ||G(q(x~)) - y||_2`` with ``y = G(x)`` (the adv net wants the original manipulation back).
* Eq. 10: ``L_g = ||G(p(x~)) - y^||_2 + lambda_1 ||G(q(x~)) - y^||_2 + lambda_2 ||eta||_2``
  (``lambda_1 = lambda_2 = 10``).
  Choice: the perturbation module ``p`` is applied in the first term (the paper puts ``p`` on the robust path in
  Fig. 2 but prints Eq. 10 without it); ``q`` sees ``x~`` as in Eq. 9.
* ``p`` (Eq. 7 and the text): drop, resize, blur, JPEG (DCT high-frequency masking after Zhu et al.'s JPEG-Mask), each
  applied independently with probability 0.5 (per image).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nullswap.errors import InputError
from nullswap.losses.retentive import l2_distance


def dct_matrix(n: int = 8, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> torch.Tensor:
    """Orthonormal DCT-II matrix ``D[u, x] = c(u) cos((2x + 1) u pi / 2n)`` (JPEG's 8x8 transform)."""
    u = torch.arange(n, dtype=torch.float64)[:, None]
    x = torch.arange(n, dtype=torch.float64)[None]
    d = torch.cos((2 * x + 1) * u * math.pi / (2 * n)) * math.sqrt(2 / n)
    d[0] /= math.sqrt(2)
    return d.to(dtype=dtype, device=device)


def dct_lowpass_mask(keep: int, n: int = 8) -> torch.Tensor:
    """``(n, n)`` 0/1 mask keeping the ``keep x keep`` low-frequency DCT coefficients (JPEG-Mask, Zhu et al. 2018).

    Raises:
        InputError: ``keep`` outside ``[1, n]``.
    """
    if not 1 <= keep <= n:
        raise InputError(f"keep: expected an int in [1, {n}], got {keep!r}")
    m = torch.zeros(n, n)
    m[:keep, :keep] = 1
    return m


def block_dct(x: torch.Tensor, n: int = 8) -> torch.Tensor:
    """Blockwise 2-D DCT of ``(B, C, H, W)`` (H, W multiples of ``n``), returned as ``(B, C, H/n, W/n, n, n)``."""
    B, C, H, W = x.shape
    if H % n or W % n:
        raise InputError(f"block_dct: expected H and W divisible by {n}, got {(H, W)}")
    d = dct_matrix(n, x.dtype, x.device)
    blocks = x.reshape(B, C, H // n, n, W // n, n).permute(0, 1, 2, 4, 3, 5)
    return d @ blocks @ d.T


def block_idct(coef: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`block_dct`."""
    B, C, hb, wb, n, _ = coef.shape
    d = dct_matrix(n, coef.dtype, coef.device)
    blocks = d.T @ coef @ d
    return blocks.permute(0, 1, 2, 4, 3, 5).reshape(B, C, hb * n, wb * n)


def jpeg_mask(x: torch.Tensor, keep_y: int, keep_c: int) -> torch.Tensor:
    """Differentiable JPEG stand-in: YCbCr, 8x8 DCT, zero the high frequencies, inverse (ars.txt, ``p_jpeg``).

    Choice: the image is padded (replicate) to a multiple of 8 and cropped back.
    """
    import kornia

    H, W = x.shape[-2:]
    ph, pw = (-H) % 8, (-W) % 8
    xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
    ycc = kornia.color.rgb_to_ycbcr(xp)
    coef = block_dct(ycc)
    mask = torch.stack([dct_lowpass_mask(keep_y), dct_lowpass_mask(keep_c), dct_lowpass_mask(keep_c)])
    coef = coef * mask.to(coef)[None, :, None, None]
    out = kornia.color.ycbcr_to_rgb(block_idct(coef))
    return out[..., :H, :W]


def gaussian_kernel(size: int, sigma: float) -> torch.Tensor:
    """Normalised 2-D Gaussian ``(size, size)``."""
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    k = g[:, None] * g[None]
    return k / k.sum()


class PerturbationModule(nn.Module):
    """``p(x~, x)``: drop (Eq. 7), resize, blur, JPEG-mask, each applied with probability ``prob`` per image.

    Choices (the paper gives no ranges): drop keeps a pixel of ``x~`` with probability ``U(0.7, 1)`` (else the pixel
    of ``x``); resize scales by ``U(0.5, 0.9)`` (bilinear) and back; blur uses a predefined Gaussian kernel of size
    3, 5 or 7 with ``sigma = size / 4``; JPEG keeps ``k x k`` luma coefficients with ``k`` in 3..7 and
    ``min(k, 3) x min(k, 3)`` chroma ones (JPEG-Mask keeps 5x5 / 3x3).

    Args:
        prob: application probability of each function (paper: 0.5).
    """

    OPS = ("drop", "resize", "blur", "jpeg")

    def __init__(self, prob: float = 0.5) -> None:
        super().__init__()
        if not 0 <= prob <= 1:
            raise InputError(f"prob: expected a probability in [0, 1], got {prob!r}")
        self.prob = float(prob)

    @staticmethod
    def _rand(g: torch.Generator | None) -> float:
        return float(torch.rand((), generator=g))

    def op(self, name: str, y: torch.Tensor, x: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        """Apply one function to the whole batch (random parameters drawn from ``g``)."""
        H, W = y.shape[-2:]
        if name == "drop":
            keep = 0.7 + 0.3 * self._rand(g)
            m = (torch.rand(y.shape[0], 1, H, W, generator=g) < keep).to(y)
            return y * m + x * (1 - m)  # Eq. 7
        if name == "resize":
            s = 0.5 + 0.4 * self._rand(g)
            small = F.interpolate(y, size=(max(1, round(H * s)), max(1, round(W * s))), mode="bilinear",
                                  align_corners=False)
            return F.interpolate(small, size=(H, W), mode="bilinear", align_corners=False)
        if name == "blur":
            size = (3, 5, 7)[int(torch.randint(0, 3, (), generator=g))]
            k = gaussian_kernel(size, size / 4).to(y)[None, None].expand(y.shape[1], 1, size, size)
            return F.conv2d(F.pad(y, [size // 2] * 4, mode="reflect"), k, groups=y.shape[1])
        if name == "jpeg":
            keep = int(torch.randint(3, 8, (), generator=g))
            return jpeg_mask(y, keep, min(keep, 3))
        raise InputError(f"op: expected one of {self.OPS}, got {name!r}")

    def forward(self, y: torch.Tensor, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``p(y)`` for protected ``y`` and clean ``x`` (needed by drop)."""
        out = y
        for name in self.OPS:
            apply = (torch.rand(y.shape[0], generator=generator) < self.prob).to(y.device)
            if not bool(apply.any()):
                continue
            out = torch.where(apply[:, None, None, None], self.op(name, out, x, generator), out)
        return out


def white_target(like: torch.Tensor) -> torch.Tensor:
    """``y^``: the full-white protection target (Eq. 2), ones on the [0, 1] scale."""
    return torch.ones_like(like)


def basic_loss(out_b: torch.Tensor, eta_b: torch.Tensor, lam: float = 10.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 2: ``||G(x_b) - y^||_2 + lambda ||eta_b||_2``."""
    t = l2_distance(out_b, white_target(out_b))
    reg = l2_distance(eta_b, torch.zeros_like(eta_b))
    loss = t + lam * reg
    return loss, {"loss/basic": float(loss.detach()), "basic/target": float(t.detach()),
                  "basic/eta": float(reg.detach())}


def robust_loss(out_p: torch.Tensor, out_q: torch.Tensor, eta: torch.Tensor, lambda_1: float = 10.0,
                lambda_2: float = 10.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 10: ``||G(p(x~)) - y^||_2 + lambda_1 ||G(q(x~)) - y^||_2 + lambda_2 ||eta||_2``."""
    t = l2_distance(out_p, white_target(out_p))
    tq = l2_distance(out_q, white_target(out_q))
    reg = l2_distance(eta, torch.zeros_like(eta))
    loss = t + lambda_1 * tq + lambda_2 * reg
    return loss, {"loss/robust": float(loss.detach()), "robust/target": float(t.detach()),
                  "robust/target_q": float(tq.detach()), "robust/eta": float(reg.detach())}


def adv_net_loss(manipulate: Callable[[torch.Tensor], torch.Tensor], q_out: torch.Tensor,
                 y_clean: torch.Tensor) -> torch.Tensor:
    """Eq. 8: ``||G(q(x~)) - y||_2`` (``y = G(x)``), minimised by ``q_phi``."""
    return l2_distance(manipulate(q_out), y_clean)


__all__ = [
    "PerturbationModule",
    "adv_net_loss",
    "basic_loss",
    "block_dct",
    "block_idct",
    "dct_lowpass_mask",
    "dct_matrix",
    "gaussian_kernel",
    "jpeg_mask",
    "robust_loss",
    "white_target",
]
