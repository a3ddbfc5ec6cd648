"""``nullswap protect`` and the batch rules: outputs, resume, reports, and every bad input's documented outcome."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from nullswap.batch import expand_inputs, plan_outputs
from nullswap.cli.main import app
from nullswap.protectors import Protector, register_protector

runner = CliRunner()
FAST = ["--method", "fgsm", "--strength", "low", "--seed", "0", "--recognizers", "mobilefacenet-casia"]


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _small_photo(src: Path, dst: Path, mode: str = "RGB", size: int = 400) -> Path:
    im = Image.open(src).convert("RGB")
    im.thumbnail((size, size))
    if mode != "RGB":
        im = im.convert(mode)
    dst.parent.mkdir(parents=True, exist_ok=True)
    im.save(dst)
    return dst


def test_expand_and_plan_rules(tmp_path):
    a = tmp_path / "a"
    b = tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        Image.new("RGB", (8, 8)).save(d / "x.jpg")
    (a / "x.protected.jpg").write_bytes(b"")
    (a / "notes.txt").write_text("hi")
    photos, bad = expand_inputs([str(a), str(b / "x.jpg"), str(tmp_path / "nope.jpg"), str(a / "notes.txt"),
                                 str(tmp_path / "*.png")])
    assert photos == [a / "x.jpg", b / "x.jpg"]
    assert sorted(o.message.split(" ")[0] for o in bad) == ["no", "not", "the"]
    jobs = plan_outputs(photos, tmp_path / "out")
    assert [j.output.name for j in jobs] == ["x.jpg", "x-2.jpg"]  # two inputs never share an output
    jobs = plan_outputs(photos, None)
    assert [j.output for j in jobs] == [a / "x.protected.jpg", b / "x.protected.jpg"]
    assert plan_outputs([a / "x.jpg"], a)[0].output == a / "x.protected.jpg"


@pytest.mark.shared
def test_bad_inputs_each_get_their_outcome_and_originals_are_untouched(shared, tmp_path):
    photos = shared / "data" / "photos"
    d = tmp_path / "in"
    _small_photo(photos / "obama1.jpg", d / "face.jpg")
    _small_photo(photos / "tomhanks.png", d / "rgba.png", "RGBA")
    _small_photo(photos / "biden_biden.jpg", d / "cmyk.jpg", "CMYK")
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(d / "noface.png")
    good = (d / "face.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (d / "readme.txt").write_text("not a photo")
    before = {p.name: _sha(p) for p in d.iterdir()}

    out = tmp_path / "out"
    out.mkdir()
    (out / "face.jpg").write_bytes(b"someone else's file")  # a name collision in the output folder
    r = runner.invoke(app, ["protect", str(d), "--out", str(out), *FAST], env={"COLUMNS": "200"})
    assert r.exit_code == 1, r.output  # the truncated JPEG failed
    assert "truncated.jpg" in r.output
    assert (out / "face.jpg").read_bytes() == b"someone else's file"  # never overwritten
    assert (out / "face-2.jpg").is_file()
    assert (out / "rgba.png").is_file() and Image.open(out / "rgba.png").mode == "RGBA"
    assert (out / "cmyk.jpg").is_file()
    assert not (out / "noface.png").exists()  # no face: nothing written, not a failure
    assert {p.name: _sha(p) for p in d.iterdir()} == before  # originals byte-identical

    # resume: a second run skips what was done (the truncated file still fails)
    r2 = runner.invoke(app, ["protect", str(d), "--out", str(out), *FAST], env={"COLUMNS": "200"})
    assert r2.exit_code == 1 and "3 skipped" in r2.output

    # a read-only output folder: the run stops before the first photo, exit 2
    if os.geteuid() != 0:  # root ignores permissions
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        r3 = runner.invoke(app, ["protect", str(d / "face.jpg"), "--out", str(ro), *FAST])
        assert r3.exit_code == 2 and "output folder" in r3.output
        ro.chmod(0o700)


@pytest.mark.shared
def test_protect_group_photo_with_report(shared, tmp_path):
    src = _small_photo(shared / "data" / "photos" / "group_t1.jpg", tmp_path / "in" / "group.png", size=900)
    r = runner.invoke(app, ["protect", str(src), "--out", str(tmp_path / "out"), "--report", *FAST,
                            ], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "out" / "group.report.json").read_text())
    assert len(rep["faces"]) >= 4
    f0 = rep["faces"][0]
    assert f0["protected"]["psnr"] > 30 and 0 < f0["protected"]["ssim"] <= 1
    assert "mobilefacenet-casia" in f0["protected"]["recognizers"]
    assert "jpeg75" in f0
    # every face has a verdict from arcface-mbf plus recognizers fgsm did not attack, marked seen/unseen
    v0 = f0["verdict"]
    assert v0["outcome"] in ("protected", "partial", "weak") and v0["strength"] == "low"
    assert "arcface-mbf" in v0["verifiers"] and all(x["seen"] is False for x in v0["verifiers"].values())
    assert set(v0["verifiers"]["human-mobilefacenet"]["thresholds"]) == {"best", "far_1e-02", "far_1e-03"}
    assert f0["protected"]["recognizers"]["mobilefacenet-casia"]["seen"] is True
    assert r.output.count("fooled ") >= len(rep["faces"])  # one spelled-out verdict per face
    # every face was changed, pixels away from the faces were not (PNG: lossless)
    a = np.asarray(Image.open(src)).astype(int)
    b = np.asarray(Image.open(tmp_path / "out" / "group.png")).astype(int)
    assert a.shape == b.shape
    outside = np.ones(a.shape[:2], bool)
    for f in rep["faces"]:
        x0, y0, x1, y1 = f["box"]
        w, h = x1 - x0, y1 - y0
        ys, xs = slice(max(0, int(y0 - h)), int(y1 + h)), slice(max(0, int(x0 - w)), int(x1 + w))
        outside[ys, xs] = False
        assert np.abs(a[int(y0):int(y1), int(x0):int(x1)] - b[int(y0):int(y1), int(x0):int(x1)]).max() > 0
    assert np.array_equal(a[outside], b[outside])
    assert (tmp_path / "out" / "nullswap-summary.json").is_file()


@pytest.mark.shared
def test_python_api_protect(shared):
    import nullswap

    img = torch.rand(3, 64, 64)
    out = nullswap.protect(img, method="fgsm", strength="low", recognizers=["mobilefacenet-casia"])
    assert out.faces == [] and torch.equal(out.image, img)  # no face: unchanged
    p = nullswap.protect(shared / "data" / "photos" / "obama1.jpg", method="fgsm", strength="low",
                         recognizers=["mobilefacenet-casia"], seed=0)
    assert len(p.faces) == 1 and p.image.shape == p.source.tensor.shape
    diff = (p.image - p.source.tensor).abs()
    assert 0 < float(diff.max()) <= 4 / 255 + 2 / 255  # within eps (+ paste-back resampling)


class _Stub(Protector):
    """A protector that changes nothing, or (``roll`` at ``high``) shifts the face so no recognizer matches it."""

    name = "test-stub"

    def __init__(self, roll: bool) -> None:
        super().__init__()
        self.roll = roll

    def protect(self, faces: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        return faces.roll(faces.shape[-1] // 2, -1) if self.roll else faces.clone()


register_protector("test-noop", "test stub: returns the crops unchanged")(
    lambda strength="mid", device=None: _Stub(False))
register_protector("test-high-only", "test stub: works at strength high only")(
    lambda strength="mid", device=None: _Stub(strength == "high"))
register_protector("test-mid-and-up", "test stub: works at strength mid and high")(
    lambda strength="mid", device=None: _Stub(strength != "low"))


@pytest.mark.shared
def test_weak_face_is_labelled_weak_and_until_protected_escalates(shared, tmp_path):
    d = tmp_path / "in"
    src = _small_photo(shared / "data" / "photos" / "obama1.jpg", d / "face.jpg")
    before = _sha(src)
    out = tmp_path / "out"
    # a protector that does nothing: weak on every verifier, even after trying every strength
    r = runner.invoke(app, ["protect", str(src), "--out", str(out / "a"), "--method", "test-noop", "--strength", "low",
                            "--until-protected", "--fail-on", "weak", "--report"], env={"COLUMNS": "80"})
    assert r.exit_code == 3, r.output
    assert "fooled 0 of" in r.output and "1 face verified weak" in r.output
    rep = json.loads((out / "a" / "face.report.json").read_text())
    v = rep["faces"][0]["verdict"]
    assert v["outcome"] == "weak" and v["strengths_tried"] == ["low", "mid", "high"]
    assert all(x["cosine"] > 0.99 for x in v["verifiers"].values())
    assert max(len(ln) for ln in r.output.splitlines()) <= 80
    # weak at low and mid, redone until high fools every verifier: protected, at the strength it needed
    r = runner.invoke(app, ["protect", str(src), "--out", str(out / "b"), "--method", "test-high-only",
                            "--strength", "low", "--until-protected", "--fail-on", "partial"])
    assert r.exit_code == 0, r.output
    man = json.loads((out / "b" / ".nullswap-manifest.json").read_text())
    assert man["face.jpg"]["status"] == "protected" and man["face.jpg"]["verdicts"][0]["strength"] == "high"
    # weak at low, protected at mid: redone once, at mid (a face is verified after each step up, not sent past mid)
    r = runner.invoke(app, ["protect", str(src), "--out", str(out / "m"), "--method", "test-mid-and-up",
                            "--strength", "low", "--until-protected", "--fail-on", "partial", "--report"])
    assert r.exit_code == 0, r.output
    v = json.loads((out / "m" / "face.report.json").read_text())["faces"][0]["verdict"]
    assert v["outcome"] == "protected" and v["strength"] == "mid" and v["strengths_tried"] == ["low", "mid"]
    # without --until-protected (not auto): one pass, weak
    r = runner.invoke(app, ["protect", str(src), "--out", str(out / "c"), "--method", "test-high-only",
                            "--strength", "low", "--fail-on", "weak"])
    assert r.exit_code == 3, r.output
    assert _sha(src) == before  # the input's bytes are unchanged


@pytest.mark.shared
def test_shipped_checkpoint_without_method_and_bad_combinations(shared, tmp_path):
    from nullswap.protection import packaged_checkpoint

    ck = packaged_checkpoint()
    if ck is None:
        pytest.skip("no packaged NullSwap checkpoint")
    src = _small_photo(shared / "data" / "photos" / "obama1.jpg", tmp_path / "in" / "face.png", size=300)
    r = runner.invoke(app, ["protect", str(src), "--out", str(tmp_path / "o"), "--checkpoint", str(ck),
                            "--no-verify"])
    assert r.exit_code == 0 and "method nullswap" in r.output, r.output
    r = runner.invoke(app, ["protect", str(src), "--out", str(tmp_path / "o2"), "--checkpoint", str(ck),
                            "--method", "pgd"])
    assert r.exit_code == 2 and "expected no checkpoint" in r.output and "Traceback" not in r.output


@pytest.mark.shared
def test_recognizers_set_what_autos_refinement_attacks_and_count_as_seen(shared, caplog):
    """``--recognizers`` with auto: the refinement attacks them (every strength), the verdict counts them as seen and
    picks its unseen verifier elsewhere; unknown names fail up front; the one pass alone ignores them, saying so."""
    import logging

    from nullswap.errors import InputError
    from nullswap.protection import PhotoProtector, packaged_checkpoint
    from nullswap.verdict import optimised_recognizers

    pp = PhotoProtector("auto", recognizers=["dlib-resnet29", "human-mobilefacenet", "dlib-resnet29"], device="cpu",
                        seed=0)
    assert pp.method == "nullswap" and pp.protector.refine > 0
    assert pp.protector._refine_spec == ["dlib-resnet29", "human-mobilefacenet"]
    assert pp.protector_at("high")._refine_spec == ["dlib-resnet29", "human-mobilefacenet"]
    trained = optimised_recognizers(pp.protector, packaged_checkpoint())
    assert set(pp.seen) == set(trained) | {"human-mobilefacenet"}
    assert "human-mobilefacenet" not in pp.verifier.names and "arcface-mbf" in pp.verifier.names
    assert any(pp.verifier.is_seen(n) is False for n in pp.verifier.names)  # still one the method did not attack
    assert pp.settings["recognizers"] == ["dlib-resnet29", "human-mobilefacenet"]
    assert pp.verifier.one_torch_thread  # gradient steps: the verifiers' pool threads on one PyTorch thread
    img = torch.from_numpy(np.array(Image.open(shared / "data" / "photos" / "obama1.jpg").convert("RGB").resize(
        (370, 208)))).permute(2, 0, 1).float() / 255
    out = pp.protect_tensor(img)
    (face,) = out.faces
    assert {s.name: s.seen for s in face.verdict.scores}["arcface-mbf"] is True
    with pytest.raises(InputError, match="expected registered names"):
        PhotoProtector("auto", recognizers=["no-such-net"], verify=False, device="cpu")
    with caplog.at_level(logging.WARNING, logger="nullswap.protection"):
        one = PhotoProtector("nullswap", recognizers=["dlib-resnet29"], verify=False, device="cpu")
    assert one.protector.refine == 0 and "ignored" in caplog.text


@pytest.mark.shared
def test_verifier_pool_threads_follow_the_gradient_steps(shared):
    """One PyTorch thread per verifier pool thread where gradient steps run (refinement, PGD), the plain pool for
    the one pass alone (nullswap.threads)."""
    from nullswap.protection import PhotoProtector

    assert PhotoProtector("pgd", strength="low", device="cpu").verifier.one_torch_thread
    assert PhotoProtector("nullswap", refine=2, device="cpu").verifier.one_torch_thread
    assert not PhotoProtector("nullswap", device="cpu").verifier.one_torch_thread


@pytest.mark.shared
def test_stronger_pgd_reuses_the_loaded_recognizers(shared):
    from nullswap.protection import PhotoProtector

    pp = PhotoProtector("pgd", strength="low", verify=False, device="cpu")
    assert pp.until_protected is False  # on only for auto
    hi = pp.protector_at("high")
    assert hi.ensemble is pp.protector.ensemble and hi.eps == pytest.approx(16 / 255) and hi.steps == 100
    assert pp.protector_at("high") is hi


@pytest.mark.shared
def test_report_says_how_often_the_inference_guard_rescaled(photos_dir):
    from nullswap.protection import PhotoProtector

    pp = PhotoProtector("nullswap", strength="high", seed=0, verify=False)
    res = pp.protect_file(photos_dir / "obama1.jpg", report=True)
    g = res.report["psnr_guard"]
    assert g["crops"] == len(res.faces) >= 1 and 0 <= g["rescaled"] <= g["crops"]
    assert 0 < g["min_scale"] <= 1 and g["floor_db"] == pp.protector_at("high").psnr_floor
