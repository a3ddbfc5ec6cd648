"""The evaluation harness: results records, table rendering, and a small end-to-end run on LFW."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from nullswap.cli.main import app
from nullswap.evaluation.results import ResultSet, render_tables


def test_results_round_trip_and_tables(tmp_path):
    rs = ResultSet(meta={"data": "x"})
    for p, t1 in (("clean", 0.9), ("pgd", 0.2)):
        rs.add(protocol="identification", protector=p, recognizer="r1", metric="top1", value=t1, n=10)
        rs.add(protocol="identification", protector=p, recognizer="r1", metric="top5", value=t1 + 0.05, n=10)
        rs.add(protocol="quality", protector=p, metric="psnr", value=40.0, n=10)
        rs.add(protocol="robustness", protector=p, recognizer="r1", perturbation="jpeg", level="90", metric="top1",
               value=t1, n=10)
    rs.to_json(tmp_path / "r.json")
    back = ResultSet.from_json(tmp_path / "r.json")
    assert back.records == rs.records and back.meta == {"data": "x"}
    t = render_tables(back)
    assert "| pgd | 0.250 / 0.200 | 0.250 / 0.200 |" in t["identification"]
    assert "| clean | 40.0000 |" in t["quality"]
    assert "| jpeg | 90 | 0.900 | 0.200 |" in t["robustness"]
    rs.to_csv(tmp_path / "r.csv")
    assert (tmp_path / "r.csv").read_text().count("\n") == 9


@pytest.mark.shared
def test_evaluate_cli_small_lfw(shared, tmp_path):
    r = CliRunner().invoke(app, [
        "evaluate", "--protector", "clean,fgsm", "--data", str(shared / "data" / "lfw"), "--max-identities", "8",
        "--max-probes", "6", "--recognizers", "mobilefacenet-casia,faceplugin-512", "--attack-recognizers",
        "mobilefacenet-casia", "--protocol", "quality,identification,robustness", "--perturbations", "jpeg",
        "--out", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "ev" / "results.json").read_text())
    recs = res["records"]
    top1 = {(x["protector"], x["recognizer"]): x["value"] for x in recs
            if x["protocol"] == "identification" and x["metric"] == "top1"}
    assert top1[("clean", "mobilefacenet-casia")] >= 0.8
    cos = {(x["protector"], x["recognizer"]): x["value"] for x in recs
           if x["protocol"] == "identification" and x["metric"] == "cosine"}
    assert cos[("clean", "mobilefacenet-casia")] == pytest.approx(1.0, abs=1e-5)
    assert cos[("fgsm", "mobilefacenet-casia")] < 0.9
    assert res["meta"]["perceptual"] in ("stlpips-alex", "lpips-alex")
    # protectors x recognizers x levels x metrics (top-1, top-5, cosine, PSR and dodging PSR at 3 thresholds)
    assert sum(x["protocol"] == "robustness" for x in recs) == 2 * 2 * 5 * 9
    for f in ("tables.md", "results.csv", "comparison.png", "robustness.png"):
        assert (tmp_path / "ev" / f).is_file()


def test_swap_targets_pair_other_identities():
    import torch

    from nullswap.evaluation.harness import _swap_targets

    labels = torch.tensor([0, 0, 1, 1, 2, 0])
    probes = torch.tensor([0, 1, 2, 5])  # identities 0, 0, 1, 0
    t = _swap_targets(labels, probes)
    assert t.tolist() == [2, 2, 3, 2]
    assert all(labels[probes[i]] != labels[probes[j]] for i, j in enumerate(t.tolist()))
    assert _swap_targets(torch.tensor([3, 3]), torch.tensor([0, 1])).tolist() == [1, 0]  # one identity: next probe


@pytest.mark.shared
def test_evaluate_cli_swap_protocol_with_shipped_swapper(shared, tmp_path):
    from nullswap.manipulators.autoencoder import ASSETS_DIR

    # a committed asset: never skipped
    assert (ASSETS_DIR / "swapper-celeba" / "model.safetensors").is_file(), "the shipped swapper-celeba is missing"
    r = CliRunner().invoke(app, [
        "evaluate", "--protector", "clean,fgsm", "--data", str(shared / "data" / "lfw"), "--max-identities", "6",
        "--max-probes", "6", "--template", "protector-128", "--recognizers", "mobilefacenet-casia,faceplugin-512",
        "--attack-recognizers", "mobilefacenet-casia", "--protocol", "swap", "--out", str(tmp_path / "sw")])
    assert r.exit_code == 0, r.output
    recs = json.loads((tmp_path / "sw" / "results.json").read_text())["records"]
    sim = {(x["protector"], x["recognizer"]): x["value"] for x in recs if x["metric"] == "id_sim"}
    assert sim[("clean", "mobilefacenet-casia")] == pytest.approx(1.0, abs=1e-4)  # same source -> same swap
    assert sim[("fgsm", "mobilefacenet-casia")] < sim[("clean", "mobilefacenet-casia")]
    dis = {x["protector"]: x["value"] for x in recs if x["metric"] == "l2_disruption"}
    assert dis["clean"] == pytest.approx(0.0, abs=1e-6) and dis["fgsm"] > 0
    assert "ID sim. mobilefacenet-casia" in (tmp_path / "sw" / "tables.md").read_text()
    bad = CliRunner().invoke(app, [
        "evaluate", "--protector", "clean", "--data", str(shared / "data" / "lfw"), "--max-identities", "2",
        "--max-probes", "2", "--recognizers", "mobilefacenet-casia", "--protocol", "swap", "--out",
        str(tmp_path / "x")])
    assert bad.exit_code == 2 and "template" in bad.output


def test_checkpoint_kind_from_format(tmp_path):
    from nullswap.cli.evaluate import _checkpoint_kind

    for fmt, kind in (("idguard-generator", "idguard"), ("ars-generator", "ars"), ("retentive-generator", "retentive"),
                      ("nullswap-generator", "nullswap"), ("something-else", "nullswap")):
        d = tmp_path / fmt
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"format": fmt}))
        assert _checkpoint_kind(d) == kind
    assert _checkpoint_kind(tmp_path / "missing") == "nullswap"


@pytest.mark.shared
def test_evaluate_cli_manipulation_protocol_with_shipped_surrogate(shared, tmp_path):
    from nullswap.manipulators.autoencoder import ASSETS_DIR

    # a committed asset: never skipped
    assert (ASSETS_DIR / "surrogate-ae" / "model.safetensors").is_file(), "the shipped surrogate-ae is missing"
    r = CliRunner().invoke(app, [
        "evaluate", "--protector", "clean,fgsm", "--data", str(shared / "data" / "lfw"), "--max-identities", "4",
        "--max-probes", "4", "--template", "protector-128", "--recognizers", "mobilefacenet-casia",
        "--attack-recognizers", "mobilefacenet-casia", "--protocol", "manipulation", "--out", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    recs = json.loads((tmp_path / "m" / "results.json").read_text())["records"]
    assert {x["protocol"] for x in recs} == {"manipulation", "cost"}  # cost: protect seconds per crop
    l2 = {x["protector"]: x["value"] for x in recs if x["metric"] == "l2_disruption"}
    assert l2["clean"] == pytest.approx(0.0, abs=1e-7) and l2["fgsm"] > 0  # G(x') differs from G(x)
    assert "## manipulation" in (tmp_path / "m" / "tables.md").read_text()


def _tiny_autoencoder_folder(folder):
    import torch

    from nullswap.manipulators.autoencoder import FaceAutoencoder, save_autoencoder

    torch.manual_seed(0)
    model = FaceAutoencoder({"image_size": 128, "channels": 4, "n_down": 2, "n_res": 1, "max_channels": 8})
    save_autoencoder(folder, model, {"step": 1})
    return model


def test_manipulator_checkpoint_folders_dispatch_by_format(tmp_path):
    import torch

    from nullswap.errors import InputError, WeightsError, WeightsNotFoundError
    from nullswap.evaluation.harness import load_manipulator
    from nullswap.manipulators.autoencoder import FaceAutoencoder
    from nullswap.manipulators.checkpoint import resolve_manipulator
    from nullswap.manipulators.swapper import SwapGenerator, SwapperConfig, save_swapper

    model = _tiny_autoencoder_folder(tmp_path / "ae")
    loaded = load_manipulator(str(tmp_path / "ae"), "manipulation")
    assert isinstance(loaded, FaceAutoencoder) and not loaded.training
    x = torch.rand(2, 3, 128, 128)
    assert torch.equal(loaded(x), model.eval()(x))
    cfg = SwapperConfig(channels=4, max_channels=8, n_blocks=1, latent_dim=16)
    save_swapper(tmp_path / "sw", SwapGenerator(cfg), cfg)
    assert resolve_manipulator(tmp_path / "sw") == ("swapper-celeba", tmp_path / "sw")
    assert resolve_manipulator("surrogate-ae") == ("surrogate-ae", None)
    # the first schema {"kind", "model"} still dispatches
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text(json.dumps({"kind": "surrogate-ae", "model": {}}))
    assert resolve_manipulator(tmp_path / "old")[0] == "surrogate-ae"
    # a protector's checkpoint is refused, naming both formats
    (tmp_path / "prot").mkdir()
    (tmp_path / "prot" / "config.json").write_text(json.dumps(
        {"format": "nullswap-generator", "version": 1, "config": {}, "meta": {}}))
    with pytest.raises(WeightsError, match=r"expected config.json format 'face-autoencoder' or 'swap-generator' "
                                           r"\(a trained manipulator\), got 'nullswap-generator'"):
        load_manipulator(str(tmp_path / "prot"), "swap")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsNotFoundError, match="config.json"):
        load_manipulator(tmp_path / "empty", "manipulation")
    with pytest.raises(InputError, match=r"expected a name among .*'surrogate-ae'.* or a checkpoint folder"):
        load_manipulator(str(tmp_path / "missing"), "manipulation")


def test_evaluate_cli_refuses_a_manipulator_folder_of_another_format_before_loading_data(tmp_path):
    (tmp_path / "prot").mkdir()
    (tmp_path / "prot" / "config.json").write_text(json.dumps(
        {"format": "idguard-generator", "version": 1, "config": {}, "meta": {}}))
    for option, proto in (("--manipulator", "manipulation"), ("--swapper", "swap")):
        r = CliRunner().invoke(app, [
            "evaluate", "--protector", "clean", "--data", str(tmp_path / "no-data"), "--protocol", proto, option,
            str(tmp_path / "prot"), "--out", str(tmp_path / "out")])
        assert r.exit_code == 2, r.output
        assert "got 'idguard-generator'" in " ".join(r.output.split())


@pytest.mark.shared
def test_evaluate_cli_manipulation_protocol_with_a_checkpoint_folder(shared, tmp_path):
    _tiny_autoencoder_folder(tmp_path / "ae")
    r = CliRunner().invoke(app, [
        "evaluate", "--protector", "clean", "--data", str(shared / "data" / "lfw"), "--max-identities", "2",
        "--max-probes", "2", "--template", "protector-128", "--recognizers", "mobilefacenet-casia",
        "--protocol", "manipulation", "--manipulator", str(tmp_path / "ae"), "--out", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    recs = json.loads((tmp_path / "m" / "results.json").read_text())["records"]
    l2 = {x["protector"]: x["value"] for x in recs if x["metric"] == "l2_disruption"}
    assert l2["clean"] == pytest.approx(0.0, abs=1e-7)
