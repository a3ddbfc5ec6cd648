"""Project manipulators: registry, forward shapes/ranges, checkpoint round trips and key checks."""

import pytest
import torch

from nullswap.errors import InputError, UnknownModelError, WeightsError, WeightsNotFoundError
from nullswap.manipulators import FaceSwapper, create_manipulator, list_manipulators
from nullswap.manipulators.autoencoder import FaceAutoencoder, load_autoencoder, save_autoencoder
from nullswap.manipulators.swapper import IdentitySwapper, SwapGenerator, SwapperConfig, load_swapper, save_swapper

from ._tiny import TinyRecognizer

AE = {"image_size": 128, "channels": 4, "n_down": 2, "n_res": 1, "max_channels": 8}


def test_registry():
    assert {"stargan-celeba", "simswap", "surrogate-ae", "swapper-celeba"} <= set(list_manipulators())
    with pytest.raises(UnknownModelError):
        create_manipulator("nope")


def test_autoencoder_forward_and_round_trip(tmp_path):
    m = create_manipulator("surrogate-ae", pretrained=False, **AE)
    assert isinstance(m, FaceAutoencoder) and m.template == "protector-128" and m.condition == "none"
    x = torch.rand(2, 3, 128, 128)
    y = m(x).detach()
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    with pytest.raises(InputError, match="size"):
        m(torch.rand(1, 3, 64, 64))
    with pytest.raises(InputError, match="condition"):
        m(x, torch.zeros(2, 5))
    with pytest.raises(InputError, match="unknown"):
        FaceAutoencoder({"width": 3})
    save_autoencoder(tmp_path / "ae", m, {"step": 1})
    m2 = create_manipulator("surrogate-ae", checkpoint=str(tmp_path / "ae"))
    assert not m2.training and torch.allclose(m2(x), m.eval()(x))
    with pytest.raises(WeightsNotFoundError):
        load_autoencoder(tmp_path / "missing")
    # a checkpoint of another width is a typed weights error
    save_autoencoder(tmp_path / "other", FaceAutoencoder({**AE, "channels": 8}))
    cfg = (tmp_path / "other" / "config.json").read_text().replace('"channels": 8', '"channels": 4')
    (tmp_path / "other" / "config.json").write_text(cfg)
    with pytest.raises(WeightsError, match="shape"):
        load_autoencoder(tmp_path / "other")


def test_swapper_forward_and_round_trip(tmp_path):
    cfg = SwapperConfig(channels=4, max_channels=8, n_blocks=1, latent_dim=16, identity_recognizer="tiny-1")
    sw = IdentitySwapper(cfg, recognizer=TinyRecognizer(1))
    assert isinstance(sw, FaceSwapper) and sw.condition == "identity"
    t, s = torch.rand(2, 3, 128, 128), torch.rand(2, 3, 128, 128)
    e = sw.identity(s)
    assert e.shape == (2, 16) and torch.allclose(e.norm(dim=1), torch.ones(2), atol=1e-5)
    y = sw.swap(t, s).detach()
    assert y.shape == t.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert not torch.allclose(sw(t, e), sw(t, e.flip(0)))  # the identity changes the output
    with pytest.raises(InputError):
        sw(t)
    with pytest.raises(InputError, match="latent"):
        sw(t, torch.zeros(2, 7))
    with pytest.raises(InputError, match="16-d"):
        IdentitySwapper(cfg, recognizer=TinyRecognizer(1, dim=8))
    save_swapper(tmp_path / "sw", sw.generator, cfg)
    sw2 = load_swapper(tmp_path / "sw", recognizer=TinyRecognizer(1))
    sw2.train()
    assert not sw2.id_net.training
    sw.eval()
    sw2.eval()
    assert torch.allclose(sw2.swap(t, s), sw.swap(t, s), atol=1e-6)
    assert set(sw2.generator.state_dict()) == set(SwapGenerator(cfg).state_dict())


def test_checkpoint_schema_format_and_first_schema(tmp_path):
    import json

    from safetensors.torch import save_file

    m = FaceAutoencoder(AE)
    save_autoencoder(tmp_path / "ae", m, {"step": 3})
    doc = json.loads((tmp_path / "ae" / "config.json").read_text())
    assert doc["format"] == "face-autoencoder" and doc["version"] == 1
    assert doc["config"] == AE and doc["meta"] == {"step": 3}
    with pytest.raises(WeightsError, match="swap-generator"):  # another model's folder is refused by its format
        load_swapper(tmp_path / "ae", recognizer=TinyRecognizer(1))
    # a folder of the first schema ({"kind", "model", **meta}) still loads
    old = tmp_path / "old"
    old.mkdir()
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(old / "model.safetensors"))
    (old / "config.json").write_text(json.dumps({"kind": "surrogate-ae", "model": AE, "step": 3}))
    x = torch.rand(1, 3, 128, 128)
    assert torch.equal(load_autoencoder(old)(x), m.eval()(x))
