"""The NullSwap Table 3 swap protocol on a tiny random swapper and tiny recognizers."""

import pytest
import torch

from nullswap.errors import InputError
from nullswap.evaluation import swap as swap_mod
from nullswap.evaluation.swap import swap_protocol, swap_protocol_available
from nullswap.manipulators.swapper import IdentitySwapper, SwapperConfig
from nullswap.recognizers.ensemble import RecognizerEnsemble

from ._tiny import TinyRecognizer


def _swapper() -> IdentitySwapper:
    torch.manual_seed(0)
    cfg = SwapperConfig(channels=4, max_channels=8, n_blocks=1, latent_dim=16)
    return IdentitySwapper(cfg, recognizer=TinyRecognizer(1)).eval()


def test_swap_protocol_numbers():
    sw = _swapper()
    ens = RecognizerEnsemble([TinyRecognizer(1), TinyRecognizer(2)], source_template="protector-128")
    g = torch.Generator().manual_seed(0)
    s, t = torch.rand(3, 3, 128, 128, generator=g), torch.rand(3, 3, 128, 128, generator=g)
    same = swap_protocol(sw, s, s.clone(), t, ens, batch_size=2)
    assert same["n"] == 3 and same["recognizers"] == ["tiny-1", "tiny-2"]
    assert same["id_sim_mean"] == pytest.approx(1.0, abs=1e-5) and same["l2_disruption"] == pytest.approx(0.0)
    assert same["defense_success_rate"] == 0.0 and same["dsr_idguard"] == 0.0
    assert same["l2_face"] == pytest.approx(0.0) and same["dsr_idguard_recognizer"] == "tiny-1"
    p = same["per_recognizer"]["tiny-2"]
    assert p["clean_swap_to_source"] == pytest.approx(p["protected_swap_to_source"], abs=1e-5)
    noisy_src = (s + 0.5 * torch.randn(s.shape, generator=g)).clamp(0, 1)
    noisy = swap_protocol(sw, s, noisy_src, t, ens)
    assert noisy["l2_disruption"] > 0 and noisy["id_sim_mean"] < 1.0
    assert noisy["l2_face"] > 0 and 0.0 <= noisy["dsr_idguard"] <= noisy["defense_success_rate"] + 1.0
    # L2_face by hand: mean squared difference (on [-1, 1]) inside the template's face ellipse
    from nullswap.faces.templates import get_template
    from nullswap.metrics.disruption import face_region_mask

    with torch.no_grad():
        y, yp = sw.swap(t, s).clamp(0, 1), sw.swap(t, noisy_src).clamp(0, 1)
    m = face_region_mask(get_template("protector-128").points_tensor()[None].expand(3, 5, 2), 128)
    ref = (((2 * y - 1) - (2 * yp - 1)) ** 2 * m).flatten(1).sum(1) / (3 * m.flatten(1).sum(1))
    assert noisy["l2_face"] == pytest.approx(float(ref.mean()), rel=1e-4)
    with pytest.raises(InputError, match="shape"):
        swap_protocol(sw, s, s[:2], t, ens)
    with pytest.raises(InputError, match="template"):
        swap_protocol(sw, s, s, t, RecognizerEnsemble([TinyRecognizer(1)], source_template="protector-256"))


def test_swap_protocol_available(tmp_path, monkeypatch):
    monkeypatch.setattr(swap_mod, "_assets", lambda name: tmp_path / name)
    with pytest.raises(InputError, match="swap"):
        swap_protocol_available()
    (tmp_path / "swapper-celeba").mkdir()
    (tmp_path / "swapper-celeba" / "model.safetensors").write_bytes(b"x")
    (tmp_path / "swapper-celeba" / "config.json").write_text("{}")
    swap_protocol_available()
