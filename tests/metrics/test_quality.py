import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim

from nullswap.errors import InputError
from nullswap.metrics import (
    PSNR,
    SSIM,
    L2Distance,
    PerceptualMetric,
    l2_distance,
    mean_squared_error,
    perceptual_distance,
    psnr,
    ssim,
)
from nullswap.metrics.perceptual import create_perceptual


def _smooth(b, h=40, w=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(b, 3, 5, 6, generator=g, dtype=torch.float64)
    return torch.nn.functional.interpolate(low, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


def _pair(b=3, seed=0):
    x = _smooth(b, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    y = (x + 0.05 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x, y


def _np(t):
    return t.permute(1, 2, 0).numpy()


def test_psnr_matches_skimage():
    x, y = _pair()
    ours = psnr(x, y)
    assert ours.shape == (3,)
    for i in range(3):
        assert float(ours[i]) == pytest.approx(sk_psnr(_np(x[i]), _np(y[i]), data_range=1), abs=1e-4)


def test_ssim_matches_skimage():
    x, y = _pair()
    ours = ssim(x, y)
    assert ours.shape == (3,)
    for i in range(3):
        ref = sk_ssim(
            _np(x[i]),
            _np(y[i]),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1,
            channel_axis=2,
        )
        assert float(ours[i]) == pytest.approx(ref, abs=1e-4)


def test_mse_and_l2_definitions():
    x = torch.zeros(2, 3, 4, 4)
    y = x.clone()
    y[0, 0, 0, 0] = 0.5
    y[1] = 0.1
    assert torch.allclose(mean_squared_error(x, y), torch.tensor([0.25 / 48, 0.01]))
    assert torch.allclose(l2_distance(x, y), torch.tensor([0.5, math.sqrt(48 * 0.01)]))
    assert torch.isinf(psnr(x, x)).all()


def test_input_validation():
    with pytest.raises(InputError, match="same shape"):
        psnr(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(InputError, match="expected values in"):
        ssim(torch.rand(1, 3, 16, 16) + 2, torch.rand(1, 3, 16, 16))


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
@pytest.mark.parametrize(("cls", "fn"), [(PSNR, psnr), (SSIM, ssim), (L2Distance, l2_distance)])
def test_classes_accumulate_like_oneshot(cls, fn):
    x, y = _pair(4, seed=3)
    m = cls()
    m.update(x[:1], y[:1])
    m.update(x[1:], y[1:])
    assert float(m.compute()) == pytest.approx(float(fn(x, y).mean()), rel=1e-6)
    m.reset()
    assert math.isnan(float(m.compute()))


def test_perceptual_metric_accumulates_and_records_name():
    model = create_perceptual("stlpips-alex")
    x, y = (t.float() for t in _pair(3, seed=5))
    m = PerceptualMetric(model)
    assert m.metric_name == "stlpips-alex"
    m.update(x[:2], y[:2])
    m.update(x[2:], y[2:])
    ref = perceptual_distance(x, y, model)
    assert ref.shape == (3,) and (ref > 0).all()
    assert float(m.compute()) == pytest.approx(float(ref.mean()), rel=1e-5)
    assert np.isfinite(float(m.compute()))
