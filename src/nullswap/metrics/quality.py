"""Image-quality metrics between a clean image and its protected version (NullSwap Table 1; ARS "Metrics").

NullSwap Sec. 4 (Table 1) reports the average PSNR, SSIM and LPIPS between clean and perturbed source images; ARS
reports MSE, PSNR, LPIPS and SSIM between the clean and the disrupted manipulation outputs. Every function here takes
two RGB batches ``(B, 3, H, W)`` in ``[0, 1]`` and returns one value per image, shape ``(B,)``; every class
accumulates those values over ``update`` calls and its ``compute()`` returns their **mean over images** (so a dataset
PSNR is the average of per-image PSNRs, as in NullSwap Table 1, not the PSNR of the pooled MSE).
"""

from __future__ import annotations

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from nullswap.checks import check_image_batch, check_same_shape
from nullswap.errors import InputError
from nullswap.metrics._base import _MeanMetric
from nullswap.metrics.perceptual import PerceptualDistance, PerceptualName, create_perceptual

__all__ = [
    "L2Distance",
    "PSNR",
    "PerceptualMetric",
    "SSIM",
    "l2_distance",
    "mean_squared_error",
    "perceptual_distance",
    "psnr",
    "ssim",
]


_SSIM_PAD = 5  # radius of the 11x11 Gaussian window (scikit-image: int(3.5 * sigma + 0.5) with sigma = 1.5)


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    check_image_batch(x, "x")
    check_image_batch(y, "y")
    check_same_shape(x, y, ("x", "y"))


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image peak signal-to-noise ratio ``10 log10(data_range^2 / MSE)`` in dB, MSE over ``(C, H, W)``.

    Identical images give ``inf``. Computed with ``torchmetrics.functional.peak_signal_noise_ratio``.

    Args:
        x: ``(B, 3, H, W)`` in ``[0, 1]``.
        y: same shape as ``x``.
        data_range: the range of pixel values (1 for ``[0, 1]`` images).

    Returns:
        ``(B,)`` PSNR values.
    """
    _check_pair(x, y)
    return peak_signal_noise_ratio(x, y, data_range=data_range, reduction="none", dim=(1, 2, 3))


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image structural similarity (Wang et al. 2004) with an 11x11 Gaussian window, sigma 1.5.

    Equal to scikit-image's ``structural_similarity(..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1, channel_axis=...)``: the SSIM map averaged over valid pixels and
    channels, excluding the 5-pixel border where the window leaves the image. The SSIM map is computed with
    ``torchmetrics.functional.structural_similarity_index_measure`` (``return_full_image=True``).

    Args:
        x: ``(B, 3, H, W)`` in ``[0, 1]``, ``H, W > 10``.
        y: same shape as ``x``.
        data_range: the range of pixel values.

    Returns:
        ``(B,)`` SSIM values.
    """
    _check_pair(x, y)
    if min(x.shape[-2:]) <= 2 * _SSIM_PAD:
        raise InputError(f"x: expected images larger than 10x10 for SSIM, got {tuple(x.shape)}")
    out = structural_similarity_index_measure(
        x, y, gaussian_kernel=True, sigma=1.5, kernel_size=11, data_range=data_range, return_full_image=True
    )
    ssim_map = out[1]
    assert isinstance(ssim_map, torch.Tensor)
    # torchmetrics averages the SSIM map over the reflect-padded border too; scikit-image (and Wang et al.'s
    # reference code) only over pixels whose window lies inside the image: crop the window radius.
    p = _SSIM_PAD
    return ssim_map[..., p:-p, p:-p].flatten(1).mean(dim=1)


def mean_squared_error(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error ``mean_{c,h,w} (x - y)^2`` on the ``[0, 1]`` scale; shape ``(B,)``."""
    _check_pair(x, y)
    return (x - y).pow(2).flatten(1).mean(dim=1)


def l2_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image Euclidean (L2) norm of the difference, ``||x - y||_2`` over all ``C*H*W`` values; shape ``(B,)``.

    This is a norm, not a mean: it grows with the image size (``l2 = sqrt(C*H*W * mse)``). For the *disruption*
    "L2" of Ruiz et al. / ID-Guard / ARS, which is a mean squared error on ``[-1, 1]`` images, see
    :func:`nullswap.metrics.disruption.l2_disruption`.
    """
    _check_pair(x, y)
    return torch.linalg.vector_norm((x - y).flatten(1), ord=2, dim=1)


def perceptual_distance(x: torch.Tensor, y: torch.Tensor, model: PerceptualDistance) -> torch.Tensor:
    """Per-image perceptual distance (LPIPS or ST-LPIPS, per ``model.name``); shape ``(B,)``.

    Args:
        x: ``(B, 3, H, W)`` in ``[0, 1]``.
        y: same shape.
        model: from :func:`nullswap.metrics.perceptual.create_perceptual`.
    """
    _check_pair(x, y)
    return model(x, y)


class PSNR(_MeanMetric):
    """Mean over images of :func:`psnr` (NullSwap Table 1)."""

    higher_is_better = True

    def __init__(self, data_range: float = 1.0, **kwargs: object) -> None:
        """Set the pixel ``data_range``; ``kwargs`` go to :class:`torchmetrics.Metric`."""
        super().__init__(**kwargs)
        self.data_range = data_range

    def update(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Add the PSNR of each image pair of the batch."""
        self._accumulate(psnr(x, y, self.data_range))


class SSIM(_MeanMetric):
    """Mean over images of :func:`ssim` (NullSwap Table 1)."""

    higher_is_better = True

    def __init__(self, data_range: float = 1.0, **kwargs: object) -> None:
        """Set the pixel ``data_range``; ``kwargs`` go to :class:`torchmetrics.Metric`."""
        super().__init__(**kwargs)
        self.data_range = data_range

    def update(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Add the SSIM of each image pair of the batch."""
        self._accumulate(ssim(x, y, self.data_range))


class L2Distance(_MeanMetric):
    """Mean over images of :func:`l2_distance` (the per-image norm of the difference)."""

    higher_is_better = False

    def update(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Add the L2 norm of each image pair's difference."""
        self._accumulate(l2_distance(x, y))


class PerceptualMetric(_MeanMetric):
    """Mean over images of :func:`perceptual_distance` (the LPIPS column of NullSwap Table 1).

    Attributes:
        model: the :class:`~nullswap.metrics.perceptual.PerceptualDistance` used.
        metric_name: ``model.name`` (``"lpips-alex"`` or ``"stlpips-alex"``); report it with the value.
    """

    higher_is_better = False

    def __init__(
        self, model: PerceptualDistance | None = None, name: PerceptualName = "auto", **kwargs: object
    ) -> None:
        """Use ``model``, or build one with :func:`~nullswap.metrics.perceptual.create_perceptual` ``(name)``."""
        super().__init__(**kwargs)
        self.model = model if model is not None else create_perceptual(name)

    @property
    def metric_name(self) -> str:
        """Which perceptual metric the values are."""
        return self.model.name

    def update(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Add the perceptual distance of each image pair (computed without gradients)."""
        with torch.no_grad():
            self._accumulate(perceptual_distance(x, y, self.model))
