import math

import pytest
import torch

from nullswap.errors import InputError, UnknownModelError
from nullswap.faces.alignment import (
    align_faces,
    estimate_similarity,
    invert_affine,
    rewarp,
    template_to_template,
    transform_points,
    warp_affine,
)
from nullswap.faces.templates import get_template, list_templates


def _similarity(angle, scale, tx, ty):
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    return torch.tensor([[c, -s, tx], [s, c, ty]])


def test_estimate_similarity_recovers_known_transform():
    src = torch.rand(3, 5, 2) * 100
    Ms = torch.stack([_similarity(0.3, 1.7, 5, -3), _similarity(-1.2, 0.5, 0, 40), _similarity(2.9, 3.0, -7, 7)])
    dst = transform_points(Ms, src)
    assert torch.allclose(estimate_similarity(src, dst), Ms, atol=1e-4)


def test_invert_affine_is_exact():
    M = torch.stack([_similarity(0.7, 1.3, 12.0, -4.0)]).double()
    p = torch.rand(1, 7, 2, dtype=torch.float64) * 50
    back = transform_points(invert_affine(M), transform_points(M, p))
    assert torch.allclose(back, p, atol=1e-10)


def test_warp_identity_and_integer_shift_are_exact():
    img = torch.rand(1, 3, 20, 30)
    assert torch.allclose(warp_affine(img, torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]), (20, 30)), img, atol=1e-6)
    shifted = warp_affine(img, torch.tensor([[1.0, 0, -3], [0, 1.0, -2]]), (10, 10))  # crop starting at (3, 2)
    assert torch.allclose(shifted, img[:, :, 2:12, 3:13], atol=1e-6)


def test_align_faces_maps_landmarks_onto_template_and_gradients_flow():
    t = get_template("arcface-112")
    M_true = _similarity(0.2, 2.0, 30, 40)
    lm_img = transform_points(invert_affine(M_true[None]), t.points_tensor()[None])  # template points seen in image
    img = torch.rand(1, 3, 300, 300, requires_grad=True)
    crops, M = align_faces(img, lm_img, t)
    assert crops.shape == (1, 3, 112, 112)
    assert torch.allclose(transform_points(M, lm_img), t.points_tensor()[None], atol=1e-3)
    crops.sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0


def test_rewarp_between_templates_matches_direct_alignment():
    img = torch.rand(1, 3, 400, 400)
    pts = get_template("arcface-112").points_tensor()[None]
    lm = transform_points(invert_affine(_similarity(0.1, 1.2, -60, -50)[None]), pts)
    c256, _ = align_faces(img, lm, "protector-256")
    direct, _ = align_faces(img, lm, "arcface-112")
    via = rewarp(c256, "protector-256", "arcface-112")
    # the 256 crop is larger than the 112 one, so re-warping only adds one more bilinear resampling
    assert (via - direct).abs().mean() < 0.03
    eye = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    assert template_to_template("arcface-112", "arcface-112").allclose(eye, atol=1e-5)


def test_templates_registered_and_inside_their_crops():
    for name in ("arcface-112", "arcface-112x96", "protector-256", "dlib-150"):
        t = get_template(name)
        p = t.points_tensor()
        assert p.shape == (5, 2)
        assert (p[:, 0] > 0).all() and (p[:, 0] < t.size[1]).all() and (p[:, 1] < t.size[0]).all()
        assert p[0, 0] < p[1, 0] and p[3, 0] < p[4, 0]  # left eye/mouth left of right eye/mouth
    assert "protector-256" in list_templates()
    with pytest.raises(UnknownModelError):
        get_template("nope")


def test_bad_inputs_raise():
    with pytest.raises(InputError):
        align_faces(torch.rand(1, 3, 10, 10), torch.rand(2, 4, 2), "arcface-112")
    with pytest.raises(InputError):
        align_faces(torch.rand(2, 3, 10, 10), torch.rand(1, 5, 2), "arcface-112")
    with pytest.raises(InputError, match=r"\[0,1\]"):
        align_faces(torch.rand(1, 3, 10, 10) * 255, torch.rand(1, 5, 2), "arcface-112")
