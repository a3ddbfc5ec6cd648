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
    assert same["defense_success_rate"] == 0.0
    p = same["per_recognizer"]["tiny-2"]
    assert p["clean_swap_to_source"] == pytest.approx(p["protected_swap_to_source"], abs=1e-5)
    noisy = swap_protocol(sw, s, (s + 0.5 * torch.randn(s.shape, generator=g)).clamp(0, 1), t, ens)
    assert noisy["l2_disruption"] > 0 and noisy["id_sim_mean"] < 1.0
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
