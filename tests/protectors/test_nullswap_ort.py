"""The NullSwap one pass under onnxruntime (nullswap.protectors.nullswap.ort_generator) against PyTorch."""

import pytest
import torch

from nullswap.errors import InputError
from nullswap.protectors.base import create_protector
from nullswap.protectors.nullswap import NullSwapConfig, save_nullswap
from nullswap.protectors.nullswap import ort_generator as og
from nullswap.protectors.nullswap.inference import fuse_for_inference
from nullswap.recognizers.ort_runner import OrtUnavailableError
from tests.protectors.test_nullswap_inference import SMALL, _trained_like

pytest.importorskip("onnxruntime")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NULLSWAP_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(og, "_SESSIONS", {})


def _gen(seed=0, **kw):
    return _trained_like(NullSwapConfig(image_size=64, **{**SMALL, **kw}), seed)


@pytest.mark.parametrize(("scale", "kw"), [(1.0, {}), (0.55, {}), (2.0, {}), (1.0, {"detail_channels": 8})])
def test_ort_one_pass_matches_pytorch_seeded(scale, kw):
    g = _gen(**kw)
    ort = og.create_ort_generator(g)
    for b in (1, 3):  # the batch dimension is free
        x = torch.rand(b, 3, 64, 64, generator=torch.Generator().manual_seed(b))
        with torch.no_grad():
            ref = g(x, generator=torch.Generator().manual_seed(7), perturbation_scale=scale)
            out = ort(x, generator=torch.Generator().manual_seed(7), perturbation_scale=scale)
        assert float((ref - x).abs().max()) > 1e-3  # the cloak changes the image
        assert out.shape == x.shape and out.dtype == x.dtype
        assert float((out - ref).abs().max()) < 1e-5
    # no noise, and the residual factor 0 (handled by PyTorch: the graph's cap would divide by 0)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert float((ort(x, noise_scale=0.0) - g(x, noise_scale=0.0)).abs().max()) < 1e-5
        assert torch.equal(ort(x, perturbation_scale=0.0), g(x, perturbation_scale=0.0))
    with pytest.raises(InputError, match="gradient"):
        ort(x.requires_grad_(True))
    with pytest.raises(InputError, match="expected"):
        ort(torch.rand(3, 64, 64))


def test_graph_is_cached_and_a_bad_cache_is_replaced(monkeypatch):
    g = fuse_for_inference(_gen(1), channels_last=False)
    og.create_ort_generator(g)
    path = og.cache_path(og._cache_key(g))
    assert path.is_file() and path.stat().st_size > 1000
    # a new process (no session in memory) reads the file instead of exporting
    monkeypatch.setattr(og, "_SESSIONS", {})
    real_export = og.export_one_pass

    def no_export(_):
        raise AssertionError("exported although the graph was cached")

    monkeypatch.setattr(og, "export_one_pass", no_export)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert float((og.create_ort_generator(g)(x, noise_scale=0) - g(x, noise_scale=0)).abs().max()) < 1e-5
    # a truncated file is exported again
    monkeypatch.setattr(og, "_SESSIONS", {})
    monkeypatch.setattr(og, "export_one_pass", real_export)
    path.write_bytes(path.read_bytes()[:100])
    og.create_ort_generator(g)
    assert path.stat().st_size > 1000
    # other weights: another key
    assert og._cache_key(fuse_for_inference(_gen(2), channels_last=False)) != og._cache_key(g)


def test_outputs_that_differ_are_refused(monkeypatch):
    g = _gen(3)
    real = og.ort_session

    class Off:
        def __init__(self, s):
            self.s = s

        def run(self, names, feeds):
            return [self.s.run(names, feeds)[0] + 1e-3]

    monkeypatch.setattr(og, "ort_session", lambda data, threads=None: Off(real(data, threads)))
    with pytest.raises(OrtUnavailableError, match="within"):
        og.create_ort_generator(g)


def test_factory_backend_choice(tmp_path, monkeypatch, caplog):
    cfg = NullSwapConfig(image_size=64, **SMALL)
    save_nullswap(tmp_path / "ck", _trained_like(cfg, 4), cfg, {})
    ck = str(tmp_path / "ck")
    torch_p = create_protector("nullswap", checkpoint=ck)  # the factory's default: PyTorch
    ort_p = create_protector("nullswap", checkpoint=ck, backend="ort", precision="bf16")
    assert torch_p.backend == "torch" and ort_p.backend == "ort" and ort_p.precision == "fp32"
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    ya = torch_p.protect(x, generator=torch.Generator().manual_seed(6))
    yb = ort_p.protect(x, generator=torch.Generator().manual_seed(6))
    assert float((ya - yb).abs().max()) < 1e-5
    assert og.resolve_backend("auto", "cpu") == "ort" and og.resolve_backend("AUTO", "cuda") == "torch"
    with pytest.raises(InputError, match="backend"):
        create_protector("nullswap", checkpoint=ck, backend="tensorrt")
    # onnxruntime unusable: a warning, and the one pass stays in PyTorch
    monkeypatch.setattr(og, "ort_available", lambda: False)
    assert og.resolve_backend("auto") == "torch"
    with caplog.at_level("WARNING"):
        p = create_protector("nullswap", checkpoint=ck, backend="ort")
    assert p.backend == "torch" and "stays in PyTorch" in caplog.text
