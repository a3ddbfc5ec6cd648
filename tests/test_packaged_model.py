"""The NullSwap checkpoint shipped inside the package: hub-verified, loadable, and honest about its default use."""

from __future__ import annotations

import json

import pytest
import torch

from nullswap.hub import get_weight_spec, verify
from nullswap.protection import default_method, packaged_checkpoint
from nullswap.protectors import create_protector
from tests.conftest import need_shared


def test_packaged_checkpoint_verifies_and_loads():
    folder = packaged_checkpoint()
    assert folder is not None, "the package ships nullswap/assets/nullswap-default"
    assert verify(get_weight_spec("nullswap-default")).status == "ok"  # sha256 in the hub
    prot = create_protector("nullswap")
    assert prot.template == "protector-128" and prot.psnr_floor == 38.5  # the floor it was trained with
    x = torch.rand(2, 3, 128, 128)
    y = prot.protect(x, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    mse = (y - x).pow(2).mean((1, 2, 3))
    assert bool((10 * torch.log10(1 / mse) >= 38.5 - 1e-3).all())  # the inference guard holds
    meta = json.loads((folder / "config.json").read_text())["meta"]
    assert default_method() == ("nullswap" if meta.get("default_ok") is True or "auto" in meta else "pgd")
    if "auto" in meta:  # what auto runs is written with its evidence (MODEL_CARD.md)
        assert meta["auto"]["refine"] > 0 and "PGD" in meta["auto"]["evidence"]


@pytest.mark.shared
def test_packaged_model_moves_identity_of_held_out_faces(shared):
    """The shipped generator on CelebA test identities (never trained on): cosine drops, PSNR stays >= 38.5 dB.

    MODEL_CARD.md measured on 200 such crops with protect's guard: mobilefacenet-casia 0.450, faceplugin-512 0.439,
    human-mobilefacenet (never trained on) 0.617, at 38.5 dB.
    """
    from nullswap.datasets.faces import AlignedFaces, identity_disjoint_split, scan_faces
    from nullswap.metrics.quality import psnr
    from nullswap.recognizers.ensemble import RecognizerEnsemble

    root = shared / "data" / "celeba"
    if not root.is_dir():
        need_shared("../shared/data/celeba")
    recs = identity_disjoint_split(scan_faces(root), (0.8, 0.1, 0.1), seed=0)["test"][::40][:12]
    x = AlignedFaces(recs, template="protector-128").tensor()
    with torch.no_grad():
        y = create_protector("nullswap").protect(x, generator=torch.Generator().manual_seed(0))
        ens = RecognizerEnsemble(["mobilefacenet-casia", "human-mobilefacenet"], source_template="protector-128")
        cos = [float((a * b).sum(1).mean()) for a, b in zip(ens(x), ens(y), strict=True)]
    assert float(psnr(y, x).min()) >= 38.5 - 1e-3
    assert cos[0] < 0.6, cos  # a training recognizer
    assert cos[1] < 0.8, cos  # one it never saw


def _packaged_with_meta(tmp_path, monkeypatch, **meta_update):
    """A copy of the packaged config.json with ``meta`` updated, served as the packaged checkpoint's."""
    import nullswap.protection as protection

    cfg = json.loads((packaged_checkpoint() / "config.json").read_text())
    cfg["meta"] = {k: v for k, v in cfg["meta"].items() if k not in ("auto", "default_ok")} | meta_update
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    monkeypatch.setattr(protection, "packaged_checkpoint", lambda: tmp_path)


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({}, {"method": "pgd"}),
        ({"default_ok": False}, {"method": "pgd"}),
        ({"default_ok": True}, {"method": "nullswap"}),
        ({"auto": {"refine": 10, "psnr_floor": 36.5, "evidence": "MODEL_CARD.md"}},
         {"method": "nullswap", "refine": 10, "psnr_floor": 36.5}),
        ({"auto": {"refine": True, "psnr_floor": "x"}}, {"method": "nullswap"}),  # malformed values ignored
        ({"auto": {"refine": 10, "psnr_floor": 36.5, "refine_blur": 1.0}},
         {"method": "nullswap", "refine": 10, "psnr_floor": 36.5, "refine_blur": 1.0}),
        ({"auto": {"refine_blur": 1.0}}, {"method": "nullswap"}),  # a blur without refine steps means nothing
    ],
)
def test_auto_recipe_follows_the_packaged_config(tmp_path, monkeypatch, meta, expected):
    from nullswap.protection import auto_recipe

    _packaged_with_meta(tmp_path, monkeypatch, **meta)
    assert auto_recipe() == expected
    assert default_method() == expected["method"]


def test_auto_uses_the_packaged_refine_and_floor(tmp_path, monkeypatch):
    from nullswap.protection import PhotoProtector, auto_recipe

    _packaged_with_meta(tmp_path, monkeypatch, auto={"refine": 10, "psnr_floor": 36.5})
    pp = PhotoProtector("auto", verify=False)
    assert pp.method == "nullswap" and pp.protector.refine == 10 and pp.protector.psnr_floor == 36.5
    assert pp.settings["refine"] == 10 and pp.settings["psnr_floor"] == 36.5 and pp.until_protected
    assert pp.protector_at("high").psnr_floor == 32.5  # the next strength lowers the floor by 4 dB
    pp = PhotoProtector("auto", verify=False, refine=3)  # an explicit --refine wins
    assert pp.protector.refine == 3
    pp = PhotoProtector("nullswap", verify=False)  # an explicit method: the one pass at the trained floor
    assert pp.protector.refine == 0 and pp.protector.psnr_floor == 38.5 and "psnr_floor" not in pp.settings
    assert pp.protector.refine_blur == 0.0 and "refine_blur" not in pp.settings
    _packaged_with_meta(tmp_path, monkeypatch, auto={"refine": 10, "psnr_floor": 36.5, "refine_blur": 1.0})
    pp = PhotoProtector("auto", verify=False)
    assert pp.protector.refine_blur == 1.0 and pp.settings["refine_blur"] == 1.0
    assert pp.protector_at("high").refine_blur == 1.0  # the redo at high keeps the recipe
    assert pp.protector.refine_chroma == 1.0 and "refine_chroma" not in pp.settings
    _packaged_with_meta(tmp_path, monkeypatch, auto={"refine": 10, "psnr_floor": 36.5, "refine_chroma": 0.5,
                                                      "refine_masking": True})
    pp = PhotoProtector("auto", verify=False)
    assert pp.protector.refine_chroma == 0.5 and pp.settings["refine_chroma"] == 0.5
    assert pp.protector.refine_masking and pp.settings["refine_masking"] is True
    assert pp.protector_at("high").refine_chroma == 0.5  # the redo at high keeps the recipe
    # malformed values are ignored
    _packaged_with_meta(tmp_path, monkeypatch, auto={"refine": 10, "refine_chroma": 2, "refine_masking": "yes"})
    assert "refine_chroma" not in auto_recipe() and "refine_masking" not in auto_recipe()
