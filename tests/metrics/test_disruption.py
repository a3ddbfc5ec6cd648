import pytest
import torch

from nullswap.errors import InputError
from nullswap.metrics import (
    DefenseSuccessRate,
    L2Disruption,
    L2Face,
    SuccessRate,
    SuccessRateMask,
    defense_success,
    defense_success_rate,
    face_region_mask,
    l2_disruption,
    l2_face,
    l2_mask,
    manipulation_mask,
    success_rate,
    success_rate_mask,
)


def _const(*vals, h=8, w=8):
    return torch.stack([torch.full((3, h, w), float(v)) for v in vals])


def test_l2_is_mse_on_minus_one_one():
    y = _const(0.5, 0.5)
    y_hat = _const(0.6, 0.5)
    # [-1,1]: difference 0.2 -> 0.04; [0,1]: 0.1 -> 0.01
    assert torch.allclose(l2_disruption(y, y_hat), torch.tensor([0.04, 0.0]))
    assert torch.allclose(l2_disruption(y, y_hat, to_minus_one_one=False), torch.tensor([0.01, 0.0]))


def test_l2_face_eq13_hand_computed():
    y = _const(0.5)
    y_hat = y.clone()
    y_hat[0, :, :2, :] = 1.0  # 16 changed pixels: [-1,1] difference 1.0
    mask = torch.zeros(1, 1, 8, 8)
    mask[0, 0, :4, :] = 1  # 32 face pixels, half of them changed
    assert torch.allclose(l2_face(y, y_hat, mask), torch.tensor([0.5]))
    assert torch.allclose(l2_disruption(y, y_hat), torch.tensor([0.25]))
    # empty mask: 0, never counted as disrupted
    assert torch.allclose(l2_face(y, y_hat, torch.zeros(1, 1, 8, 8)), torch.tensor([0.0]))
    with pytest.raises(InputError, match="binary"):
        l2_face(y, y_hat, mask * 0.5)
    with pytest.raises(InputError, match="shape"):
        l2_face(y, y_hat, torch.ones(1, 8, 8))


def test_dsr_idguard_and_l2_rules_hand_computed():
    clean = _const(0.5, 0.5, 0.5, 0.5)
    prot = _const(0.7, 0.7, 0.5, 0.52)  # L2 on [-1,1]: .16, .16, 0, .0016
    mask = torch.ones(4, 1, 8, 8)
    id_sim = torch.tensor([0.2, 0.6, 0.1, 0.3])
    # idguard: L2_face > .05 and sim < .4 -> [T, F, F, F]
    ok = defense_success(clean, prot, rule="idguard", face_mask=mask, id_sim=id_sim)
    assert ok.tolist() == [True, False, False, False]
    assert defense_success_rate(clean, prot, rule="idguard", face_mask=mask, id_sim=id_sim) == 0.25
    # l2 rule ignores identity -> [T, T, F, F]
    assert defense_success_rate(clean, prot, rule="l2") == 0.5
    assert success_rate(clean, prot) == 0.5
    with pytest.raises(InputError, match="face_mask and id_sim"):
        defense_success_rate(clean, prot, rule="idguard")
    with pytest.raises(InputError, match="rule"):
        defense_success_rate(clean, prot, rule="psnr")  # type: ignore[arg-type]


def test_sr_mask_hand_computed():
    x = _const(0.5, 0.5)
    y = x.clone()
    y[:, :, :4, :] = 0.8  # manipulation changes the top half: sum_c |2*0.3| = 1.8 > 0.5
    mask = manipulation_mask(x, y)
    assert mask.shape == (2, 1, 8, 8) and mask[:, :, :4].all() and not mask[:, :, 4:].any()
    y_hat = y.clone()
    y_hat[0, :, :4, :] = 0.6  # inside mask: [-1,1] diff .4 -> .16
    y_hat[1, :, 4:, :] = 0.0  # outside the mask only
    assert torch.allclose(l2_mask(x, y, y_hat), torch.tensor([0.16, 0.0]))
    assert success_rate_mask(x, y, y_hat) == 0.5
    assert success_rate(y, y_hat) == 1.0  # whole-image SR counts image 1 too


def test_face_region_mask_geometry():
    lm = torch.tensor([[[40.0, 50.0], [60.0, 50.0], [50.0, 60.0], [42.0, 70.0], [58.0, 70.0]]])
    m = face_region_mask(lm, 100)
    assert m.shape == (1, 1, 100, 100) and set(m.unique().tolist()) <= {0.0, 1.0}
    for x, y in lm[0].tolist():  # every landmark is inside
        assert m[0, 0, int(y), int(x)] == 1
    assert m[0, 0, 50, 50] == 1 and m[0, 0, 5, 5] == 0 and m[0, 0, 50, 80] == 0
    # vertical extent: 0.5 d above the eyes (d = 20) to 0.6 d below the mouth
    rows = m[0, 0].any(dim=1).nonzero().flatten()
    assert int(rows.min()) == 40 and int(rows.max()) == 82
    cols = m[0, 0].any(dim=0).nonzero().flatten()
    assert int(cols.min()) == 29 and int(cols.max()) == 71  # semi-axis 1.05 * iod = 21
    assert face_region_mask(lm, (100, 120), scale=1.5).sum() > m.sum()
    with pytest.raises(InputError, match=r"\(B,5,2\)"):
        face_region_mask(torch.zeros(1, 68, 2), 100)


def test_classes_accumulate_like_oneshot():
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(5, 3, 8, 8, generator=g)
    prot = (clean + 0.15 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    inputs = (clean + 0.4 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    mask = (torch.rand(5, 1, 8, 8, generator=g) > 0.5).float()
    id_sim = torch.tensor([0.1, 0.5, 0.3, 0.2, 0.9])
    parts = (slice(0, 2), slice(2, 5))

    m = L2Disruption()
    f = L2Face()
    d = DefenseSuccessRate("idguard")
    dl = DefenseSuccessRate("l2", l2_threshold=0.08)
    sr = SuccessRate(threshold=0.08)
    srm = SuccessRateMask(threshold=0.08)
    for s in parts:
        m.update(clean[s], prot[s])
        f.update(clean[s], prot[s], mask[s])
        d.update(clean[s], prot[s], mask[s], id_sim[s])
        dl.update(clean[s], prot[s])
        sr.update(clean[s], prot[s])
        srm.update(inputs[s], clean[s], prot[s])
    assert float(m.compute()) == pytest.approx(float(l2_disruption(clean, prot).mean()), rel=1e-6)
    assert float(f.compute()) == pytest.approx(float(l2_face(clean, prot, mask).mean()), rel=1e-6)
    assert float(d.compute()) == pytest.approx(
        defense_success_rate(clean, prot, rule="idguard", face_mask=mask, id_sim=id_sim)
    )
    assert float(dl.compute()) == pytest.approx(success_rate(clean, prot, 0.08))
    assert float(sr.compute()) == pytest.approx(success_rate(clean, prot, 0.08))
    assert float(srm.compute()) == pytest.approx(success_rate_mask(inputs, clean, prot, 0.08))
