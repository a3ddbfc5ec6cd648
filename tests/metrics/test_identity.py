import math

import pytest
import torch

from nullswap.errors import InputError
from nullswap.metrics import (
    CosineSimilarity,
    IdentificationAccuracy,
    ProtectionSuccessRate,
    cosine_similarity,
    identification_accuracy,
    protection_success_rate,
)


def _unit(deg):
    r = math.radians(deg)
    return [math.cos(r), math.sin(r)]


# gallery on the unit circle: identity 0 at 0 and 10 deg, identity 1 at 90 deg, identity 2 at 180 deg
GALLERY = torch.tensor([_unit(0), _unit(10), _unit(90), _unit(180)])
GLABELS = torch.tensor([0, 0, 1, 2])


def test_cosine_similarity():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    b = torch.tensor([[0.0, 3.0], [2.0, 2.0], [-1.0, 0.0]])
    assert torch.allclose(cosine_similarity(a, b), torch.tensor([0.0, 1.0, -1.0]))
    with pytest.raises(InputError, match="same shape"):
        cosine_similarity(a, b[:2])


def test_identification_top1_top5_hand_computed():
    probes = torch.tensor([_unit(5), _unit(60), _unit(130), _unit(-100)])
    labels = torch.tensor([0, 0, 2, 0])
    # probe 0 (5 deg): nearest id 0 -> top1 hit
    # probe 1 (60 deg): id 1 (30 deg away) beats id 0 (50 deg away) -> miss at 1, hit at 2
    # probe 2 (130 deg): id 1 (40) before id 2 (50) -> miss at 1, hit at 2
    # probe 3 (-100 deg): id 2 (80) before id 0 (100, via 0 deg) before id 1 (170) -> rank 2 -> hit at 2
    acc = identification_accuracy(GALLERY, GLABELS, probes, labels, topk=(1, 2, 5))
    assert acc == {1: 0.25, 2: 1.0, 5: 1.0}


def test_topk_counts_distinct_identities():
    # identity 0 owns the two images nearest to the probe: top-2 over identities must still reach identity 1
    probe = torch.tensor([_unit(40)])
    acc = identification_accuracy(GALLERY, GLABELS, probe, torch.tensor([1]), topk=(1, 2))
    assert acc == {1: 0.0, 2: 1.0}


def test_exclude_own_gallery_image():
    # probe equals gallery image 1 (identity 0); excluding it, identity 0 still has image 0 at 10 deg
    probe = torch.tensor([_unit(10), _unit(90)])
    labels = torch.tensor([0, 1])
    assert identification_accuracy(GALLERY, GLABELS, probe, labels, topk=1) == {1: 1.0}
    acc = identification_accuracy(GALLERY, GLABELS, probe, labels, topk=(1, 5), exclude=torch.tensor([1, 2]))
    # probe 1's only gallery image of identity 1 is excluded -> miss at every k
    assert acc == {1: 0.5, 5: 0.5}
    with pytest.raises(InputError, match="exclude"):
        identification_accuracy(GALLERY, GLABELS, probe, labels, exclude=torch.tensor([0, 9]))


def test_unknown_identity_is_a_miss_and_validation():
    acc = identification_accuracy(GALLERY, GLABELS, torch.tensor([_unit(0)]), torch.tensor([7]), topk=(1, 5))
    assert acc == {1: 0.0, 5: 0.0}
    with pytest.raises(InputError, match="topk"):
        identification_accuracy(GALLERY, GLABELS, GALLERY, GLABELS, topk=(0,))
    with pytest.raises(InputError, match="probe_labels"):
        identification_accuracy(GALLERY, GLABELS, GALLERY, torch.tensor([0.0, 1, 1, 2]))


def test_protection_success_rate_hand_computed():
    clean = torch.tensor([_unit(0), _unit(0), _unit(0), _unit(0)])
    prot = torch.tensor([_unit(10), _unit(70), _unit(90), _unit(180)])  # cos: .985, .342, 0, -1
    assert protection_success_rate(clean, prot, threshold=0.4) == 0.75
    assert protection_success_rate(clean, prot, threshold=0.0) == 0.25  # strict: cos 0 is not < 0


def test_classes_accumulate_like_oneshot():
    g = torch.Generator().manual_seed(0)
    gal, glab = torch.randn(12, 8, generator=g), torch.arange(12) % 4
    probes, plab = torch.randn(7, 8, generator=g), torch.randint(0, 4, (7,), generator=g)
    excl = torch.tensor([0, -1, 3, -1, 5, 6, -1])
    ref = identification_accuracy(gal, glab, probes, plab, topk=(1, 2), exclude=excl)
    m = IdentificationAccuracy(gal, glab, topk=(1, 2))
    m.update(probes[:3], plab[:3], exclude=excl[:3])
    m.update(probes[3:], plab[3:], exclude=excl[3:])
    out = m.compute()
    assert {k: float(v) for k, v in out.items()} == pytest.approx(ref)

    clean, prot = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    psr = ProtectionSuccessRate(threshold=0.1)
    cos = CosineSimilarity()
    for s in (slice(0, 2), slice(2, 6)):
        psr.update(clean[s], prot[s])
        cos.update(clean[s], prot[s])
    assert float(psr.compute()) == pytest.approx(protection_success_rate(clean, prot, 0.1))
    assert float(cos.compute()) == pytest.approx(float(cosine_similarity(clean, prot).mean()), rel=1e-6)


def test_dodging_success_rate_matches_brute_force():
    import torch.nn.functional as F

    from nullswap.metrics.identity import dodging_success_rate

    g = torch.Generator().manual_seed(0)
    gallery = F.normalize(torch.randn(12, 8, generator=g), dim=1)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 4, 4])
    probes = torch.tensor([0, 3, 5, 6, 11])  # identity 2 (index 5) has no other photo: left out
    prot = F.normalize(gallery[probes] + 0.8 * torch.randn(5, 8, generator=g), dim=1)
    t = 0.3
    rates = []
    for i, p in enumerate(probes.tolist()):
        others = [j for j in range(12) if labels[j] == labels[p] and j != p]
        if others:
            rates.append(sum(float(prot[i] @ gallery[j]) < t for j in others) / len(others))
    assert dodging_success_rate(prot, gallery, probes, labels, t) == pytest.approx(sum(rates) / len(rates))
    assert dodging_success_rate(gallery[probes], gallery, probes, labels, -2.0) == 0.0
    assert math.isnan(dodging_success_rate(prot[2:3], gallery, probes[2:3], labels, t))
