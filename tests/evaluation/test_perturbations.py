import pytest
import torch

from nullswap.errors import InputError
from nullswap.evaluation.perturbations import (
    PERTURBATIONS,
    Perturbation,
    apply_perturbation,
    get_perturbation,
    list_perturbations,
)


def _smooth_images(b: int = 2, size: int = 48) -> torch.Tensor:
    """Natural-ish images (smooth gradients plus a little texture) so blur/JPEG effects are meaningful."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    base = torch.stack([xx, yy, (xx + yy) / 2], 0).expand(b, 3, size, size)
    tex = 0.3 * torch.rand(b, 3, size, size, generator=g)
    return (0.6 * base + tex).clamp(0, 1)


def test_registry_lists_seven_kinds_with_five_levels():
    names = list_perturbations()
    assert names == ["jpeg", "gaussian_blur", "downscale", "pixel_drop", "saturation", "contrast", "gaussian_noise"]
    for n in names:
        p = get_perturbation(n)
        assert isinstance(p, Perturbation) and len(p.levels) == 5


@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_each_level_keeps_shape_range_and_grows_in_strength(name):
    x = _smooth_images()
    mses = []
    for i in range(5):
        y = apply_perturbation(x, name, i, generator=torch.Generator().manual_seed(1))
        assert y.shape == x.shape and y.dtype == x.dtype
        assert float(y.min()) >= 0 and float(y.max()) <= 1
        assert not torch.equal(y, x)
        mses.append(float(((y - x) ** 2).mean()))
    assert all(a < b for a, b in zip(mses, mses[1:], strict=False)), f"{name}: MSE not increasing {mses}"


@pytest.mark.parametrize("name", [n for n, p in PERTURBATIONS.items() if p.identity is not None])
def test_identity_value_leaves_images_unchanged(name):
    x = _smooth_images()
    p = PERTURBATIONS[name]
    assert torch.equal(apply_perturbation(x, name, float(p.identity)), x)


def test_jpeg_real_codec_is_deterministic_and_quantised():
    x = _smooth_images()
    a = apply_perturbation(x, "jpeg", 2)
    b = apply_perturbation(x, "jpeg", 50)  # explicit quality value == level 2
    assert torch.equal(a, b)
    assert not torch.equal(a, x)
    assert torch.allclose(a * 255, (a * 255).round(), atol=1e-4)  # decoded through uint8
    assert not torch.equal(apply_perturbation(x, "jpeg", 75), a)  # a non-table quality works


def test_random_perturbations_are_seedable():
    x = _smooth_images()
    for name in ("pixel_drop", "gaussian_noise"):
        a = apply_perturbation(x, name, 3, generator=torch.Generator().manual_seed(7))
        b = apply_perturbation(x, name, 3, generator=torch.Generator().manual_seed(7))
        c = apply_perturbation(x, name, 3, generator=torch.Generator().manual_seed(8))
        assert torch.equal(a, b) and not torch.equal(a, c)


def test_pixel_drop_fraction_and_whole_pixels():
    x = torch.full((1, 3, 64, 64), 0.5)
    y = apply_perturbation(x, "pixel_drop", 0.3, generator=torch.Generator().manual_seed(0))
    dropped = y == 0
    assert torch.equal(dropped[:, 0], dropped[:, 1]) and torch.equal(dropped[:, 0], dropped[:, 2])
    assert abs(float(dropped[:, 0].float().mean()) - 0.3) < 0.03


def test_saturation_zero_is_grayscale():
    y = apply_perturbation(_smooth_images(), "saturation", 4)
    assert torch.allclose(y[:, 0], y[:, 1], atol=1e-6) and torch.allclose(y[:, 1], y[:, 2], atol=1e-6)


def test_bad_name_and_levels_raise_input_error():
    x = _smooth_images(1, 16)
    with pytest.raises(InputError, match="jpeg"):
        apply_perturbation(x, "nope", 0)
    with pytest.raises(InputError, match="quality"):
        apply_perturbation(x, "jpeg", 101)
    with pytest.raises(InputError, match="integer"):
        apply_perturbation(x, "jpeg", 50.5)
    with pytest.raises(InputError):
        apply_perturbation(x, "gaussian_blur", -1.0)
    with pytest.raises(InputError):
        apply_perturbation(x, "contrast", "high")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        apply_perturbation(x, "contrast", True)
    with pytest.raises(InputError, match="range"):
        apply_perturbation(x * 2, "contrast", 0)
    with pytest.raises(KeyError):
        get_perturbation("nope")


def test_empty_batch_and_small_images():
    assert apply_perturbation(torch.rand(0, 3, 8, 8), "jpeg", 0).shape == (0, 3, 8, 8)
    tiny = torch.rand(1, 3, 5, 5)
    for name in PERTURBATIONS:
        assert apply_perturbation(tiny, name, 4, generator=torch.Generator().manual_seed(0)).shape == tiny.shape
