import time

import pytest
import torch
from torch import nn

from nullswap.attacks import FGSMProtector, PGDProtector, fgsm, identity_similarity, pgd
from nullswap.errors import InputError
from nullswap.protectors.base import create_protector, list_protectors
from nullswap.recognizers.base import FaceRecognizer, RecognizerInfo
from nullswap.recognizers.ensemble import RecognizerEnsemble


class TinyRecognizer(FaceRecognizer):
    """A small random conv net on 112x112 arcface crops (fast, deterministic per seed)."""

    def __init__(self, seed: int, dim: int = 32) -> None:
        super().__init__(RecognizerInfo(f"tiny-{seed}", dim, (112, 112), "arcface-112", "x*2-1"))
        torch.manual_seed(seed)
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 5, stride=4), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(256, dim),
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1)


@pytest.fixture(scope="module")
def ensemble():
    return RecognizerEnsemble([TinyRecognizer(0), TinyRecognizer(1)])


@pytest.fixture(scope="module")
def crops():
    return torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))


def _mean_cos(ens, adv, clean):
    with torch.no_grad():
        return float(identity_similarity(ens, adv, ens(clean)).mean())


def test_pgd_stays_in_budget_and_lowers_similarity(ensemble, crops):
    eps = 8 / 255
    adv = pgd(crops, ensemble, eps=eps, steps=10, generator=torch.Generator().manual_seed(0))
    assert adv.shape == crops.shape and not adv.requires_grad
    assert float((adv - crops).abs().max()) <= eps + 1e-6
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    cos = _mean_cos(ensemble, adv, crops)
    assert cos < 0.9, cos


def test_pgd_reports_each_step_without_changing_the_result(ensemble, crops):
    steps: list[tuple[int, int]] = []
    ref = pgd(crops, ensemble, steps=4, generator=torch.Generator().manual_seed(0))
    adv = pgd(crops, ensemble, steps=4, generator=torch.Generator().manual_seed(0),
              on_step=lambda done, total: steps.append((done, total)))
    assert torch.equal(adv, ref) and steps == [(1, 4), (2, 4), (3, 4), (4, 4)]
    prot = PGDProtector(ensemble, strength="low", steps=3, template="arcface-112")
    prot.on_step = lambda done, total: steps.append((done, total))
    steps.clear()
    prot.protect(torch.rand(1, 3, 112, 112), generator=torch.Generator().manual_seed(0))
    assert steps == [(1, 3), (2, 3), (3, 3)]


def test_fgsm_stays_in_budget_and_lowers_similarity(ensemble, crops):
    eps = 8 / 255
    adv = fgsm(crops, ensemble, eps, generator=torch.Generator().manual_seed(0))
    assert float((adv - crops).abs().max()) <= eps + 1e-6
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    assert _mean_cos(ensemble, adv, crops) < 0.999


def test_pgd_beats_fgsm_and_noise(ensemble, crops):
    eps = 8 / 255
    g = torch.Generator().manual_seed(3)
    noise = (crops + eps * (2 * torch.rand(crops.shape, generator=g) - 1)).clamp(0, 1)
    c_pgd = _mean_cos(ensemble, pgd(crops, ensemble, eps=eps, steps=10, generator=g), crops)
    c_fgsm = _mean_cos(ensemble, fgsm(crops, ensemble, eps, generator=g), crops)
    assert c_pgd < c_fgsm and c_pgd < _mean_cos(ensemble, noise, crops)


def test_seeded_random_start_is_repeatable(ensemble, crops):
    a = pgd(crops, ensemble, eps=4 / 255, steps=3, generator=torch.Generator().manual_seed(5))
    b = pgd(crops, ensemble, eps=4 / 255, steps=3, generator=torch.Generator().manual_seed(5))
    c = pgd(crops, ensemble, eps=4 / 255, steps=3, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    d = pgd(crops, ensemble, eps=4 / 255, steps=3, random_start=False)
    assert torch.equal(d, pgd(crops, ensemble, eps=4 / 255, steps=3, random_start=False))
    f1 = fgsm(crops, ensemble, 4 / 255, generator=torch.Generator().manual_seed(5))
    assert torch.equal(f1, fgsm(crops, ensemble, 4 / 255, generator=torch.Generator().manual_seed(5)))
    plain = fgsm(crops, ensemble, 4 / 255, random_start=False)  # gradient ~0 at the clean point: stays in budget
    assert float((plain - crops).abs().max()) <= 4 / 255 + 1e-6


def test_modes_flags_and_grads_restored_and_works_under_no_grad(crops):
    rec = TinyRecognizer(2)
    ens = RecognizerEnsemble([rec])
    ens.train()  # ensemble flag on, recognizers stay eval
    rec.net[1].train()  # odd state on purpose: must come back as it was
    p0 = next(rec.parameters())
    p0.requires_grad_(True)
    modes = [m.training for m in ens.modules()]
    flags = [p.requires_grad for p in ens.parameters()]
    bn_mean = rec.net[1].running_mean.clone()
    with torch.no_grad():
        adv = pgd(crops, ens, eps=4 / 255, steps=2, generator=torch.Generator().manual_seed(0))
        adv2 = fgsm(crops, ens, 4 / 255)
    with torch.inference_mode():
        adv3 = pgd(crops, ens, eps=4 / 255, steps=1, random_start=False)
    assert not torch.equal(adv, crops) and not torch.equal(adv2, crops) and adv3.shape == crops.shape
    assert [m.training for m in ens.modules()] == modes
    assert [p.requires_grad for p in ens.parameters()] == flags
    assert all(p.grad is None for p in ens.parameters())
    assert torch.equal(rec.net[1].running_mean, bn_mean)  # attacked in eval mode: BN stats untouched


def test_bad_arguments(ensemble, crops):
    with pytest.raises(InputError, match="eps"):
        pgd(crops, ensemble, eps=-1)
    with pytest.raises(InputError, match="steps"):
        pgd(crops, ensemble, steps=0)
    with pytest.raises(InputError, match="alpha"):
        pgd(crops, ensemble, alpha=0)
    with pytest.raises(InputError, match="range"):
        fgsm(crops * 3, ensemble)
    with pytest.raises(InputError, match="strength"):
        PGDProtector(recognizers=[TinyRecognizer(0)], strength="max")  # type: ignore[arg-type]


def test_protectors_registered_with_strength_table_and_overrides(crops):
    assert {"pgd", "fgsm"} <= set(list_protectors())
    p = create_protector("pgd", recognizers=[TinyRecognizer(0)], strength="low")
    assert isinstance(p, PGDProtector) and p.eps == pytest.approx(4 / 255) and p.steps == 20
    p = create_protector("pgd", recognizers=[TinyRecognizer(0)], strength="high", steps=2)
    assert p.eps == pytest.approx(16 / 255) and p.steps == 2
    out = p.protect(crops, generator=torch.Generator().manual_seed(0))
    assert out.shape == crops.shape and float((out - crops).abs().max()) <= 16 / 255 + 1e-6
    f = create_protector("fgsm", recognizers=[TinyRecognizer(0)], eps=2 / 255)
    assert isinstance(f, FGSMProtector) and f.eps == pytest.approx(2 / 255)
    out = f.protect(crops)
    assert float((out - crops).abs().max()) <= 2 / 255 + 1e-6
    with pytest.raises(InputError, match="size"):
        f.protect(torch.rand(1, 3, 128, 128))


def test_registry_recognizer_random_weights_by_name(crops):
    from nullswap.recognizers import create_recognizer

    p = PGDProtector(recognizers=[create_recognizer("dlib-resnet29", pretrained=False)], steps=2)
    out = p.protect(crops[:1], generator=torch.Generator().manual_seed(0))
    assert float((out - crops[:1]).abs().max()) <= 8 / 255 + 1e-6


@pytest.mark.shared
def test_real_recognizers_pgd_cloaks_identity(shared):
    from nullswap.faces.alignment import align_faces
    from nullswap.faces.detection import create_detector
    from nullswap.faces.io import read_image

    imgs = sorted((shared / "data" / "lfw" / "images").glob("*/*_0001.jpg"))[:2]
    det = create_detector("mtcnn")
    crops = []
    for path in imgs:
        img = read_image(path).tensor
        d = det.detect(img)[0]
        assert len(d) >= 1, path
        c, _ = align_faces(img, d.landmarks[d.scores.argmax()][None], "protector-256")
        crops.append(c)
    x = torch.cat(crops)
    t0 = time.perf_counter()
    p = create_protector("pgd", steps=10)  # dlib-resnet29 + mobilefacenet-casia, eps 8/255
    adv = p.protect(x, generator=torch.Generator().manual_seed(0))
    elapsed = time.perf_counter() - t0
    cos = _mean_cos(p.ensemble, adv, x)
    with torch.no_grad():
        pairs = zip(p.ensemble(adv), p.ensemble(x), strict=True)
        per_rec = [float(torch.cosine_similarity(a, c).mean()) for a, c in pairs]
    assert float((adv - x).abs().max()) <= 8 / 255 + 1e-6
    # measured (LFW AJ_Lamas_0001, Aaron_Eckhart_0001): mean 0.06; dlib-resnet29 0.75, mobilefacenet-casia -0.63;
    # uniform noise of the same budget keeps both above 0.99
    assert cos < 0.5, f"mean cosine after PGD-10 {cos:.3f}"
    assert max(per_rec) < 0.9, per_rec
    assert elapsed < 60, elapsed


def test_photo_protector_moves_face_progress_per_attack_step():
    """Long photos: the face bar advances per attack step (fractional faces), ends at the face count, and the
    protector's step callback is cleared after the call."""
    from nullswap.protection import PhotoProtector
    from nullswap.protectors.base import Protector

    class Stepper(Protector):  # an iterative protector: 4 steps per call, returns its input
        name = "stepper"

        def protect(self, faces, *, generator=None):
            for k in range(4):
                if self.on_step is not None:
                    self.on_step(k + 1, 4)
            return faces.clone()

    pp = PhotoProtector("nullswap", verify=False, batch_size=4)
    stepper = Stepper()
    pp._protectors["mid"] = stepper
    seen: list[float] = []
    pp.on_progress = lambda done, total, strength: seen.append(done) if total == 10 and strength == "mid" else None
    out = pp._cloak(torch.rand(10, 3, 128, 128), "mid", None)
    assert out.shape == (10, 3, 128, 128) and stepper.on_step is None
    assert seen[0] == 0 and seen[-1] == 10 and seen == sorted(seen)
    assert 1.0 in seen and 9.0 in seen  # a quarter of the first call's 4 faces; half of the last call's 2
    assert len(seen) == 1 + 3 * (4 + 1)  # the start, then per call: 4 steps + the call's end
