"""Verdicts, exit codes, set-up errors and output of ``nullswap protect``, without model weights.

The command's logic is driven through a fake :class:`~nullswap.protection.PhotoProtector` whose verdicts come from the
file names, so every documented outcome is asserted in milliseconds. The same outcomes on real faces with real
verifiers are in ``test_protect.py``.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import nullswap.protection as protection
from nullswap.cli.main import app
from nullswap.errors import InputError, WeightsError
from nullswap.verdict import (
    FaceVerdict,
    VerifierScore,
    choose_verifiers,
    face_outcome,
    optimised_recognizers,
    worst_outcome,
)

runner = CliRunner()
W80 = {"COLUMNS": "80"}
GPS = 0x8825


# --------------------------------------------------------------------------------------------------- verdict rules
def test_face_outcome_and_worst():
    assert face_outcome([True, True, True]) == "protected"
    assert face_outcome([True, False, None]) == "partial"  # None (no threshold) does not vote
    assert face_outcome([False, False]) == "weak"
    assert face_outcome([True, None]) == "protected"
    with pytest.raises(InputError, match="expected at least one"):
        face_outcome([None, None])
    assert worst_outcome(["protected", "weak", "partial"]) == "weak"
    assert worst_outcome(["protected", "partial"]) == "partial"
    assert worst_outcome([]) is None


def test_describe_spells_out_the_verdict():
    th = {"best": 0.3, "far_1e-02": 0.4, "far_1e-03": 0.5}
    v = FaceVerdict("partial", [VerifierScore("arcface-mbf", False, 0.1, th), VerifierScore("x", True, 0.2, th),
                                VerifierScore("y", False, 0.9, th)], "mid")
    assert v.describe() == "fooled 2 of 3 verifiers, ArcFace yes"
    d = v.to_dict()
    assert d["verifiers"]["y"]["fooled"] == {"best": False, "far_1e-02": False, "far_1e-03": False}
    assert d["verifiers"]["x"]["seen"] is True and d["strength"] == "mid"
    v2 = FaceVerdict("weak", [VerifierScore("arcface-mbf", False, 0.9, th)])
    assert v2.describe() == "fooled 0 of 1 verifier, ArcFace no"


def test_verification_set_has_arcface_and_an_unseen_recognizer():
    assert choose_verifiers(["dlib-resnet29", "mobilefacenet-casia"]) == [
        "arcface-mbf", "human-mobilefacenet", "faceplugin-512"]
    s = choose_verifiers(["human-mobilefacenet", "faceplugin-512", "arcface-mbf"])
    assert s[0] == "arcface-mbf" and len(s) == 2 and s[1] not in ("human-mobilefacenet", "faceplugin-512")
    assert choose_verifiers(None) == ["arcface-mbf", "human-mobilefacenet", "faceplugin-512"]
    assert choose_verifiers(["x"], ["a", "b", "a"]) == ["a", "b"]


def test_optimised_recognizers_from_ensemble_and_checkpoint(tmp_path):
    class Ens:
        names = ["dlib-resnet29", "mobilefacenet-casia"]

    class P:
        ensemble = Ens()

    assert optimised_recognizers(P()) == ["dlib-resnet29", "mobilefacenet-casia"]
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.json").write_text(json.dumps({"meta": {"recognizers": ["arcface-mbf"]}}))
    assert optimised_recognizers(object(), tmp_path / "a") == ["arcface-mbf"]
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text(json.dumps({"meta": {"config": {"recognizers": ["x"]}}}))
    assert optimised_recognizers(object(), tmp_path / "b") == ["x"]
    assert optimised_recognizers(object(), tmp_path / "missing") is None


def test_checkpoint_method_and_device(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text(json.dumps({"format": "idguard-generator"}))
    assert protection.checkpoint_method(tmp_path) == "idguard"
    (tmp_path / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(WeightsError, match="expected format"):
        protection.checkpoint_method(tmp_path)
    with pytest.raises(WeightsError, match="expected a folder with config.json"):
        protection.checkpoint_method(tmp_path / "nope")
    with pytest.raises(InputError, match="tpu"):
        protection.resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="no CUDA GPU"):
        protection.resolve_device("cuda")
    assert protection.resolve_device(None).type == "cpu"


# --------------------------------------------------------------------------------------------------- the fake
TH = {"best": 0.3, "far_1e-02": 0.4, "far_1e-03": 0.5}
FOOLED = {"prot": (True, True, True), "part": (True, False, False), "weak": (False, False, False)}


class _Verifier:
    names = ["arcface-mbf", "human-mobilefacenet", "faceplugin-512"]

    def is_seen(self, name: str) -> bool:
        return False

    def describe(self) -> dict[str, Any]:
        return {n: {"seen": False, "thresholds": TH} for n in self.names}


class FakePhotoProtector:
    """Stands in for PhotoProtector: verdicts from the file name (``prot_``, ``part_``, ``weak_``, ``boom_``)."""

    created: list[dict[str, Any]] = []

    def __init__(self, method: str = "auto", **kw: Any) -> None:
        if kw.get("checkpoint") is not None and method == "auto":
            method = protection.checkpoint_method(kw["checkpoint"])
        protection.resolve_device(kw.get("device"))
        self.method = "fake" if method == "auto" else method
        self.strength = kw.get("strength", "mid")
        self.until_protected = bool(kw.get("until_protected"))
        self.verifier = _Verifier() if kw.get("verify", True) else None
        self.seen = ["dlib-resnet29"]
        self.settings = {"method": self.method, "strength": self.strength}
        FakePhotoProtector.created.append(dict(kw, method=self.method))

    def load_report_recognizers(self) -> dict:
        return {}

    def protect_file(self, path: Path, *, report: bool = False) -> protection.ProtectedImage:
        from nullswap.faces.io import read_image

        kind = Path(path).name.split("_")[0]
        if kind == "boom":
            raise KeyboardInterrupt
        loaded = read_image(path)
        faces = []
        for k in kind.split("+"):
            v = None
            if self.verifier is not None:
                scores = [VerifierScore(n, False, 0.1 if f else 0.9, TH)
                          for n, f in zip(self.verifier.names, FOOLED[k], strict=True)]
                v = FaceVerdict(face_outcome([s.fooled for s in scores]), scores, self.strength, [self.strength])
            faces.append(protection.FaceResult([1.0, 2.0, 30.0, 40.0], [[0.0, 0.0]] * 5, 0.99, verdict=v))
        rep = {"faces": [{"index": i, "box": f.box, "protected": {"psnr": 40.0, "ssim": 0.99, "recognizers": {
            "dlib-resnet29": {"cosine": 0.5, "threshold": 0.9, "below_threshold": True}}}}
            for i, f in enumerate(faces)]} if report else None
        return protection.ProtectedImage(loaded.tensor, faces, loaded, self.method, dict(self.settings), rep)


@pytest.fixture
def fake(monkeypatch):
    FakePhotoProtector.created = []
    monkeypatch.setattr(protection, "PhotoProtector", FakePhotoProtector)
    return FakePhotoProtector


def _img(path: Path, exif: Image.Exif | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = (np.arange(32 * 32 * 3).reshape(32, 32, 3) % 251).astype(np.uint8)
    Image.fromarray(arr).save(path, **({"exif": exif.tobytes()} if exif is not None else {}))
    return path


def _run(args: list[str]) -> Any:
    return runner.invoke(app, ["protect", *args], env=W80)


# --------------------------------------------------------------------------------------------------- outcomes
def test_photo_status_follows_its_faces_and_fail_on_exit_codes(fake, tmp_path):
    d = tmp_path / "in"
    for n in ("prot_a.png", "part_b.png", "weak_c.png", "prot+weak_d.png"):
        _img(d / n)
    r = _run([str(d), "--out", str(tmp_path / "o1")])
    assert r.exit_code == 0, r.output
    rows = {ln.split()[0]: ln for ln in r.output.splitlines() if ln.split() and ln.split()[0].endswith(".png")}
    assert " protected " in rows["prot_a.png"] and " partial " in rows["part_b.png"]
    assert " weak " in rows["weak_c.png"] and " weak " in rows["prot+weak_d.png"]  # the worst face decides
    assert "fooled 1 of 3 verifiers, ArcFace yes" in r.output and "fooled 0 of 3 verifiers, ArcFace no" in r.output
    assert "photos: 1 protected, 1 partial, 2 weak" in r.output
    assert "faces: 2 protected, 1 partial, 2 weak" in r.output
    assert "unseen" in r.output  # the verifiers are marked seen/unseen
    assert "other recognizers may still match the face" in r.output  # a verdict covers its verifiers only
    assert all(len(ln) <= 80 for ln in r.output.splitlines()[:6]), r.output  # the header's lines fit 80 columns

    assert _run([str(d), "--out", str(tmp_path / "o2"), "--fail-on", "weak"]).exit_code == 3
    assert _run([str(d / "part_b.png"), "--out", str(tmp_path / "o3"), "--fail-on", "weak"]).exit_code == 0
    r = _run([str(d / "part_b.png"), "--out", str(tmp_path / "o4"), "--fail-on", "partial"])
    assert r.exit_code == 3 and "1 face verified weak or partial" in r.output
    assert _run([str(d / "prot_a.png"), "--out", str(tmp_path / "o5"), "--fail-on", "partial"]).exit_code == 0
    # a re-run skips the photo but keeps its verdict (and --fail-on still sees it)
    r = _run([str(d / "part_b.png"), "--out", str(tmp_path / "o4"), "--fail-on", "partial"])
    assert r.exit_code == 3 and "done before: 1 partial" in r.output
    bad = _run([str(d), "--fail-on", "bad"])
    assert bad.exit_code == 2 and "expected weak or partial" in bad.output
    off = _run([str(d), "--out", str(tmp_path / "o6"), "--no-verify"])
    assert off.exit_code == 0 and "unverified" in off.output and "verification off" in off.output


def test_until_protected_defaults_on_for_auto_only(fake, tmp_path):
    p = _img(tmp_path / "prot_a.png")
    _run([str(p), "--out", str(tmp_path / "a")])
    _run([str(p), "--out", str(tmp_path / "b"), "--method", "pgd"])
    _run([str(p), "--out", str(tmp_path / "c"), "--method", "pgd", "--until-protected"])
    _run([str(p), "--out", str(tmp_path / "d"), "--once"])
    assert [c["until_protected"] for c in fake.created] == [None, None, True, False]
    # (None: PhotoProtector's default, on exactly when the method is auto)


def test_table_fits_80_columns_and_summary_has_per_face_rows(fake, tmp_path):
    deep = tmp_path / ("a-very-long-folder-name-" * 3) / "and-another-long-one"
    _img(deep / "prot+part+weak_a_photo_with_a_long_name.png")
    _img(tmp_path / "x" / "weak_short.png")
    out = tmp_path / "out"
    r = _run([str(deep), str(tmp_path / "x"), "--out", str(out), "--report"])
    assert r.exit_code == 0, r.output
    assert max(len(ln) for ln in r.output.splitlines()) <= 80, r.output
    assert "…" in r.output  # the long name was shortened
    with open(out / "nullswap-summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4  # one row per face
    assert {r["outcome"] for r in rows} == {"protected", "partial", "weak"}
    assert all(Path(r["source"]).is_absolute() and Path(r["output"]).is_absolute() for r in rows)
    assert rows[0]["verify:arcface-mbf:cosine"] and rows[0]["protected:psnr"] == "40.0"
    doc = json.loads((out / "nullswap-summary.json").read_text())
    assert doc["verifiers"]["arcface-mbf"]["seen"] is False
    assert [f["verdict"]["outcome"] for f in doc["photos"][0]["faces"]] == ["protected", "partial", "weak"]


# --------------------------------------------------------------------------------------------------- before the work
def test_no_images_found(fake, tmp_path):
    (tmp_path / "empty").mkdir()
    r = _run([str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "no images found" in r.output
    os.symlink(tmp_path / "loop-b", tmp_path / "loop-a")
    os.symlink(tmp_path / "loop-a", tmp_path / "loop-b")
    r = _run([str(tmp_path / "loop-a")])
    assert r.exit_code == 2 and "no images found" in r.output and "looping symbolic link" in r.output
    (tmp_path / "empty" / "self").symlink_to(tmp_path / "empty")  # a loop inside a folder
    assert _run([str(tmp_path / "empty")]).exit_code == 2
    assert fake.created == []  # nothing was loaded


@pytest.mark.parametrize("device", ["tpu", "cuda"])
def test_bad_device_is_one_line(fake, tmp_path, device, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    p = _img(tmp_path / "prot_a.png")
    r = _run([str(p), "--out", str(tmp_path / "o"), "--device", device])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error device:") and "Traceback" not in r.output, r.output
    assert not list((tmp_path / "o").glob("*.png"))


def test_unwritable_output_fails_before_the_first_photo(fake, tmp_path):
    p = _img(tmp_path / "prot_a.png")
    (tmp_path / "file").write_text("")
    r = _run([str(p), "--out", str(tmp_path / "file" / "sub")])
    assert r.exit_code == 2 and "output folder" in r.output and "expected a folder this user can write to" in r.output
    assert fake.created == []


def test_checkpoint_without_method_uses_its_own(fake, tmp_path):
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "config.json").write_text(json.dumps({"format": "ars-generator"}))
    p = _img(tmp_path / "prot_a.png")
    r = _run([str(p), "--out", str(tmp_path / "o"), "--checkpoint", str(ck)])
    assert r.exit_code == 0 and "method ars" in r.output, r.output
    (ck / "config.json").write_text(json.dumps({"format": "?"}))
    r = _run([str(p), "--out", str(tmp_path / "o2"), "--checkpoint", str(ck)])
    assert r.exit_code == 2 and "expected format" in r.output and "Traceback" not in r.output


def test_interrupt_says_how_to_resume(fake, tmp_path):
    d = tmp_path / "in"
    _img(d / "a" / "prot_1.png")
    _img(d / "b" / "boom_2.png")
    _img(d / "c" / "prot_3.png")
    r = _run([str(d), "--out", str(tmp_path / "o")])
    assert r.exit_code == 130
    assert "interrupted after 1 photo; run the same command again to resume" in r.output
    assert (tmp_path / "o" / "prot_1.png").is_file() and not (tmp_path / "o" / "prot_3.png").exists()


def test_gps_is_stripped_unless_keep_gps(fake, tmp_path):
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    exif[GPS] = {1: "N", 2: (1.0, 2.0, 3.0)}
    p = _img(tmp_path / "in" / "prot_gps.png", exif)
    before = p.read_bytes()
    assert _run([str(p), "--out", str(tmp_path / "a")]).exit_code == 0
    a = Image.open(tmp_path / "a" / "prot_gps.png").getexif()
    assert GPS not in a and a.get(0x010F) == "TestCam"
    assert _run([str(p), "--out", str(tmp_path / "b"), "--keep-gps"]).exit_code == 0
    assert GPS in Image.open(tmp_path / "b" / "prot_gps.png").getexif()
    assert p.read_bytes() == before  # the input is never modified


# --------------------------------------------------------------------------------------------------- help
def test_help_documents_exit_codes_gps_and_shows_no_bool_tags():
    r = runner.invoke(app, ["protect", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    assert "<bool>" not in r.output
    for text in ("Exit codes", "130", "--keep-gps", "--fail-on", "--until-protected", "auto | nullswap | pgd"):
        assert text in r.output, text
    assert "<bool>" not in runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).output


def test_help_and_version_do_not_import_torch():
    code = ("import sys; from nullswap.cli.main import app; "
            "assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr
