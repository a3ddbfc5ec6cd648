"""StarGAN and SimSwap: module order matches the official checkpoint layouts; strict loads; shapes and ranges."""

import pytest
import torch

from nullswap.errors import InputError, WeightsError, WeightsNotFoundError
from nullswap.manipulators import create_manipulator
from nullswap.manipulators.simswap import SimSwap, SimSwapGenerator, read_simswap_checkpoint
from nullswap.manipulators.simswap import official_key_shapes as simswap_keys
from nullswap.manipulators.stargan import (
    CELEBA_ATTRIBUTES,
    StarGAN,
    StarGANGenerator,
    load_stargan,
    official_key_shapes,
)

from ._tiny import TinyRecognizer


def _synthetic(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, s in shapes.items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(7, dtype=torch.long)
        elif k.endswith("running_var"):
            out[k] = torch.rand(s, generator=g) + 0.5
        else:
            out[k] = torch.randn(s, generator=g) * 0.05
    return out


def test_stargan_official_layout():
    sd = StarGANGenerator().state_dict()
    ref = official_key_shapes()
    assert list(sd) == list(ref)  # same keys, same order
    assert {k: tuple(v.shape) for k, v in sd.items()} == ref
    assert "main.9.main.0.weight" in sd and "main.14.main.4.running_var" in sd and "main.21.weight" in sd
    assert sum(v.numel() for k, v in sd.items() if k.endswith("weight")) > 8_000_000


def test_stargan_strict_load_round_trip(tmp_path):
    sd = _synthetic(official_key_shapes())
    path = tmp_path / "200000-G.ckpt"
    torch.save(sd, path)
    m = create_manipulator("stargan-celeba", checkpoint=str(path))
    assert isinstance(m, StarGAN) and not m.training
    for k, v in m.G.state_dict().items():
        assert torch.equal(v, sd[k]), k
    # a pre-0.4.1 checkpoint without num_batches_tracked still loads
    old = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    torch.save(old, tmp_path / "old.ckpt")
    load_stargan(tmp_path / "old.ckpt")
    bad = dict(sd)
    bad.pop("main.0.weight")
    torch.save(bad, tmp_path / "bad.ckpt")
    with pytest.raises(WeightsError, match="missing"):
        load_stargan(tmp_path / "bad.ckpt")


def test_stargan_forward_and_errors():
    torch.manual_seed(0)
    m = StarGAN(StarGANGenerator(conv_dim=8, repeat_num=1)).eval()
    x = torch.rand(2, 3, 128, 128)
    c = m.labels(["Blond_Hair", "Young"], batch=2)
    assert c[0].tolist() == [0, 1, 0, 0, 1] and list(CELEBA_ATTRIBUTES)[1] == "Blond_Hair"
    with torch.no_grad():
        y = m(x, c)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    # eval mode still normalises with instance statistics (the official test loop)
    m.train()
    assert torch.allclose(m(x, c).detach(), y, atol=1e-5)
    with pytest.raises(InputError):
        m(x)
    with pytest.raises(InputError):
        m.labels(["Bald"])
    with pytest.raises(WeightsNotFoundError, match="200000-G.ckpt"):
        create_manipulator("stargan-celeba")


def test_simswap_official_layout():
    sd = SimSwapGenerator().state_dict()
    ref = simswap_keys()
    assert set(sd) == set(ref)
    assert {k: tuple(v.shape) for k, v in sd.items()} == ref
    for key in ("first_layer.1.weight", "BottleNeck.8.conv1.1.weight", "BottleNeck.0.style1.linear.weight",
                "up1.2.running_mean", "last_layer.1.bias"):
        assert key in sd
    assert len(SimSwapGenerator().BottleNeck) == 9


def test_simswap_strict_load_and_forward(tmp_path):
    small = {"latent_size": 16, "n_blocks": 2, "base": 4}
    gen = SimSwapGenerator(**small)
    sd = _synthetic(simswap_keys(**small))
    torch.save(sd, tmp_path / "latest_net_G.pth")
    gen.load_state_dict(read_simswap_checkpoint(tmp_path / "latest_net_G.pth"), strict=True)
    m = SimSwap(gen, TinyRecognizer(1)).eval()
    src, tgt = torch.rand(2, 3, 256, 256), torch.rand(2, 3, 256, 256)
    e = m.identity(src)
    assert e.shape == (2, 16) and torch.allclose(e.norm(dim=1), torch.ones(2), atol=1e-5)
    y = m.swap(tgt, src).detach()
    assert y.shape == tgt.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    # differentiable w.r.t. the source (what NullSwap attacks)
    src.requires_grad_(True)
    m.swap(tgt, src).mean().backward()
    assert src.grad is not None and float(src.grad.abs().sum()) > 0
    with pytest.raises(InputError):
        m(tgt, torch.zeros(2, 3))
    with pytest.raises(WeightsNotFoundError, match="latest_net_G"):
        create_manipulator("simswap")
    with pytest.raises(WeightsNotFoundError):
        read_simswap_checkpoint(tmp_path / "nope.pth")
    with pytest.raises(InputError):
        SimSwap(SimSwapGenerator(**small), TinyRecognizer(1, dim=8))
