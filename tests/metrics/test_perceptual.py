import logging

import numpy as np
import pytest
import torch
from PIL import Image

from nullswap.errors import InputError, WeightsError, WeightsNotFoundError
from nullswap.metrics.perceptual import (
    ALEXNET_FILENAME,
    LPIPS_LIN_FILENAME,
    PerceptualDistance,
    create_perceptual,
    load_lpips_alex,
)


@pytest.fixture(scope="module")
def st():
    return create_perceptual("stlpips-alex")


def _smooth(b=2, h=48, w=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(b, 3, 6, 6, generator=g)
    return torch.nn.functional.interpolate(low, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


def _fake_lpips_files(tmp_path, lin_keys=None, alex_extra=None):
    from torchvision.models import alexnet

    alex = alexnet(weights=None).state_dict()  # features.* + classifier.*, as torchvision's file
    if alex_extra:
        alex.update(alex_extra)
    chans = (64, 192, 384, 256, 256)
    lin = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate(chans)}
    if lin_keys is not None:
        lin = lin_keys(lin)
    torch.save(lin, tmp_path / LPIPS_LIN_FILENAME)
    torch.save(alex, tmp_path / ALEXNET_FILENAME)
    return tmp_path / LPIPS_LIN_FILENAME, tmp_path / ALEXNET_FILENAME, lin, alex


def test_stlpips_identity_zero_and_grows_with_noise(st):
    assert st.name == "stlpips-alex"
    x = _smooth()
    assert torch.allclose(st(x, x), torch.zeros(2), atol=1e-7)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g)
    d = [st(x, (x + s * noise).clamp(0, 1)) for s in (0.02, 0.08, 0.25)]
    assert (d[0] > 0).all() and (d[1] > d[0]).all() and (d[2] > d[1]).all()
    assert d[0].shape == (2,)


def test_perceptual_frozen_eval_and_differentiable(st):
    assert all(not p.requires_grad for p in st.parameters())
    st.train()
    assert not st.training and not st.net.training
    x = _smooth(1)
    y = (x + 0.05).clamp(0, 1).requires_grad_(True)
    st(x, y).sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


def test_perceptual_input_checks(st):
    with pytest.raises(InputError, match="expected shape"):
        st(torch.rand(1, 1, 48, 48), torch.rand(1, 1, 48, 48))
    with pytest.raises(InputError, match="same shape"):
        st(torch.rand(1, 3, 48, 48), torch.rand(1, 3, 40, 48))
    with pytest.raises(InputError, match="at least 32x32"):
        st(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))
    with pytest.raises(InputError, match="expected 'auto'"):
        create_perceptual("vgg")  # type: ignore[arg-type]


def test_lpips_loader_key_layout(tmp_path):
    lin_path, alex_path, lin, alex = _fake_lpips_files(tmp_path)
    net = load_lpips_alex(lin_path, alex_path)
    assert torch.equal(net.features[0].weight, alex["features.0.weight"])
    assert torch.equal(net.features[10].bias, alex["features.10.bias"])
    assert torch.equal(net.lins[3].weight, lin["lin3.model.1.weight"])
    m = create_perceptual("lpips-alex", lpips_weights=lin_path, alexnet_weights=alex_path)
    assert m.name == "lpips-alex" and isinstance(m, PerceptualDistance)
    x = _smooth(2, 64, 64)
    d = m(x, (x + 0.1).clamp(0, 1))
    assert d.shape == (2,) and (d > 0).all()
    assert torch.allclose(m(x, x), torch.zeros(2))


def test_lpips_matches_reference_formula(tmp_path):
    """Zhang et al. Eq. 1 written out by hand on the relu1..relu5 slices of torchvision's AlexNet."""
    lin_path, alex_path, lin, _ = _fake_lpips_files(tmp_path)
    net = load_lpips_alex(lin_path, alex_path)
    x, y = _smooth(1, 64, 64, 3) * 2 - 1, _smooth(1, 64, 64, 4) * 2 - 1
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    hx, hy = (x - shift) / scale, (y - shift) / scale
    total, start = 0.0, 0
    for k, end in enumerate((2, 5, 8, 10, 12)):
        for i in range(start, end):
            hx, hy = net.features[i](hx), net.features[i](hy)
        start = end
        nx = hx / (hx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        ny = hy / (hy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        w = lin[f"lin{k}.model.1.weight"].view(1, -1, 1, 1)
        total = total + ((nx - ny) ** 2 * w).sum(1).mean()
    assert torch.allclose(net(x, y).flatten(), torch.tensor([float(total)]), rtol=1e-5)


def test_lpips_loader_rejects_bad_keys_and_shapes(tmp_path):
    def renamed(d):
        return {k.replace(".1.", ".0."): v for k, v in d.items()}

    lin_path, alex_path, *_ = _fake_lpips_files(tmp_path, lin_keys=renamed)
    with pytest.raises(WeightsError, match="expected keys"):
        load_lpips_alex(lin_path, alex_path)

    def reshaped(d):
        return {**d, "lin0.model.1.weight": torch.rand(1, 3, 1, 1)}

    lin_path, alex_path, *_ = _fake_lpips_files(tmp_path, lin_keys=reshaped)
    with pytest.raises(WeightsError, match="expected shape"):
        load_lpips_alex(lin_path, alex_path)
    lin_path, alex_path, *_ = _fake_lpips_files(tmp_path, alex_extra={"bogus.weight": torch.zeros(1)})
    with pytest.raises(WeightsError, match="bogus"):
        load_lpips_alex(lin_path, alex_path)


def test_lpips_missing_weights_message(tmp_path):
    with pytest.raises(WeightsNotFoundError) as e:
        load_lpips_alex(tmp_path / "alex.pth", tmp_path / "x.pth")
    msg = str(e.value)
    assert LPIPS_LIN_FILENAME in msg and ALEXNET_FILENAME in msg and "lpips" in msg and "download.pytorch.org" in msg


def test_create_lpips_explicit_without_weights_raises(monkeypatch, tmp_path):
    monkeypatch.setenv("NULLSWAP_WEIGHTS", str(tmp_path))
    monkeypatch.setattr("nullswap.metrics.perceptual.find_lpips_weights", lambda: (None, None))
    with pytest.raises(WeightsNotFoundError, match="alexnet-owt-7be5be79.pth"):
        create_perceptual("lpips-alex")


def test_auto_prefers_lpips_when_found(monkeypatch, tmp_path, caplog):
    _fake_lpips_files(tmp_path)
    monkeypatch.setenv("NULLSWAP_WEIGHTS", str(tmp_path))
    with caplog.at_level(logging.INFO, logger="nullswap.metrics.perceptual"):
        m = create_perceptual("auto")
    assert m.name == "lpips-alex" and "LPIPS" in caplog.text


def test_auto_falls_back_to_stlpips(monkeypatch, caplog):
    monkeypatch.setattr("nullswap.metrics.perceptual.find_lpips_weights", lambda: (None, None))
    with caplog.at_level(logging.INFO, logger="nullswap.metrics.perceptual"):
        m = create_perceptual("auto")
    assert m.name == "stlpips-alex" and "ST-LPIPS" in caplog.text


def test_construction_prints_nothing(capsys):
    create_perceptual("stlpips-alex")
    assert capsys.readouterr().out == ""


@pytest.mark.shared
def test_stlpips_on_real_photo(st, photos_dir):
    img = Image.open(photos_dir / "obama1.jpg").convert("RGB").resize((96, 96))
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)[None].float() / 255
    g = torch.Generator().manual_seed(0)
    noisy = [(x + s * torch.randn(x.shape, generator=g)).clamp(0, 1) for s in (0.01, 0.05, 0.15)]
    d = [float(st(x, n)) for n in noisy]
    assert float(st(x, x)) == pytest.approx(0.0, abs=1e-7)
    assert 0 < d[0] < d[1] < d[2]
