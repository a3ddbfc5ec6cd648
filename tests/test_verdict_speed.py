"""The batched, cached verification (issue 14) gives the verdicts of the one-face-at-a-time path, on real weights."""

from __future__ import annotations

import threading

import pytest
import torch

from nullswap.faces.io import read_image
from nullswap.verdict import Verifier, VerifyCache, choose_verifiers


@pytest.fixture(scope="module")
def group(photos_dir):
    """The group photo (6 faces), its landmarks, and a copy with every face's box changed a little."""
    from nullswap.faces.detection import create_detector

    img = read_image(photos_dir / "group_t1.jpg").tensor
    det = create_detector("scrfd").detect(img)[0]
    assert len(det) >= 2
    prot = img.clone()
    g = torch.Generator().manual_seed(0)
    for x0, y0, x1, y1 in det.boxes.round().int().tolist():
        patch = prot[:, max(y0, 0) : y1, max(x0, 0) : x1]
        patch.add_(torch.randn(patch.shape, generator=g) * 0.06).clamp_(0, 1)
    return img, prot, det.landmarks


@pytest.fixture(scope="module")
def verifier(shared):
    return Verifier(choose_verifiers(None), seen=[], device="cpu")


@pytest.mark.shared
def test_batched_cosines_equal_the_per_face_path(group, verifier):
    clean, prot, lms = group
    batched = verifier.cosines(clean, prot, lms)
    per_face = verifier.cosines_per_face(clean, prot, lms)
    assert list(batched) == list(per_face) == verifier.names
    for name in verifier.names:
        assert len(batched[name]) == lms.shape[0]
        assert batched[name] == pytest.approx(per_face[name], abs=1e-5), name
        assert min(batched[name]) < 0.999  # the change is seen: the comparison is not trivially 1 == 1


@pytest.mark.shared
def test_parallel_verifiers_give_the_sequential_cosines(group, verifier, monkeypatch):
    clean, prot, lms = group
    assert verifier.parallel and len(verifier.models) >= 2
    seen: list[tuple[str, bool, bool]] = []
    for rec in verifier.models.values():
        fwd = rec.forward

        def spy(x, fwd=fwd):
            seen.append((threading.current_thread().name, torch.is_inference_mode_enabled(), x.requires_grad))
            return fwd(x)

        monkeypatch.setattr(rec, "forward", spy)
    par = verifier.cosines(clean, prot, lms)
    threads = {name for name, _, _ in seen}
    assert "MainThread" in threads and 2 <= len(threads) <= len(verifier.models)  # the caller takes one verifier
    assert all(inf and not grad for _, inf, grad in seen)  # inference mode in the pool thread too
    assert verifier._pool.submit(torch.get_num_threads).result() == 1  # no OpenMP team beside the caller's
    seq = Verifier(verifier.names, seen=[], device="cpu", parallel=False)  # the models are loaded once per process
    ref = seq.cosines(clean, prot, lms)
    for name in verifier.names:
        assert par[name] == pytest.approx(ref[name], abs=1e-6), name


@pytest.mark.shared
def test_cache_reuses_clean_and_unchanged_faces(group, verifier, monkeypatch):
    clean, prot, lms = group
    calls: list[int] = []
    for rec in verifier.models.values():
        monkeypatch.setattr(rec, "forward", _counting(rec.forward, calls))
    cache = VerifyCache()
    first = verifier.cosines(clean, prot, lms, cache=cache)
    n = int(lms.shape[0])
    assert calls == [2 * n] * len(verifier.models)  # clean + protected of every face, one forward per verifier
    calls.clear()
    again = verifier.cosines(clean, prot, lms, cache=cache)
    assert again == first and calls == []  # nothing changed: no forward at all
    prot2 = prot.clone()
    x0, y0, x1, y1 = (int(v) for v in lms[0].amin(0).tolist() + lms[0].amax(0).tolist())
    prot2[:, y0:y1, x0:x1] = clean[:, y0:y1, x0:x1]  # face 1 back to clean around its landmarks
    calls.clear()
    third = verifier.cosines(clean, prot2, lms, cache=cache)
    fresh = verifier.cosines(clean, prot2, lms)
    assert calls[: len(verifier.models)] == [1] * len(verifier.models)  # only the changed face is embedded again
    for name in verifier.names:
        assert third[name] == pytest.approx(fresh[name], abs=1e-5)
        assert third[name][1:] == first[name][1:]
    other = verifier.cosines(clean, prot, lms[1:], cache=cache)  # other faces: the cache starts over
    assert all(len(v) == n - 1 for v in other.values())


@pytest.mark.shared
def test_verifier_models_are_loaded_once_per_process(verifier):
    again = Verifier(verifier.names, seen=None, device="cpu")
    assert all(again.models[n] is verifier.models[n] for n in verifier.names)


def _counting(forward, calls):
    def wrapped(x):
        calls.append(int(x.shape[0]))
        return forward(x)

    return wrapped


@pytest.mark.shared
def test_verdict_is_on_the_written_file(photos_dir, tmp_path):
    """The verdict's cosines are those of the saved JPEG's faces, and the save writes the bytes verified."""
    from nullswap.protection import PhotoProtector

    pp = PhotoProtector("nullswap", seed=0, device="cpu")
    res = pp.protect_file(photos_dir / "obama1.jpg")
    assert res.faces and res.encoded is not None and pp.timings["written"] > 0
    out = res.save(tmp_path / "out.jpg")
    assert out.read_bytes() == res.encoded.data
    lms = torch.tensor([f.landmarks for f in res.faces])
    on_disk = pp.verifier.cosines(read_image(photos_dir / "obama1.jpg").tensor, read_image(out).tensor, lms)
    in_memory = pp.verifier.cosines(res.source.tensor, res.image, lms)
    for i, face in enumerate(res.faces):
        for score in face.verdict.scores:
            assert score.cosine == pytest.approx(on_disk[score.name][i], abs=1e-5), score.name
    assert any(abs(on_disk[n][i] - in_memory[n][i]) > 1e-5 for n in on_disk for i in range(len(res.faces)))
