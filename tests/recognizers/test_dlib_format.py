"""Tests of the dlib DNN serialization reader: synthetic files everywhere, the real model file where installed."""

from __future__ import annotations

import importlib.metadata
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from nullswap.errors import WeightsError
from nullswap.recognizers.dlib_format import DlibFormatError, DlibReader, parse_dlib_net, read_dlib_net

DAT_MEMBER = "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat"


def installed_dlib_dat() -> Path | None:
    """The model file of the installed PyPI ``face-recognition-models`` (a nullswap dependency), if any."""
    try:
        p = Path(str(importlib.metadata.distribution("face-recognition-models").locate_file(DAT_MEMBER)))
    except importlib.metadata.PackageNotFoundError:
        return None
    return p if p.is_file() else None


@pytest.fixture(scope="module")
def dlib_dat() -> Path:
    p = installed_dlib_dat()
    if p is None:
        pytest.skip("PyPI face-recognition-models (dlib_face_recognition_resnet_model_v1.dat) is not installed")
    return p


# ------------------------------------------------------------------------------------- a tiny writer for fixtures
def pint(v: int) -> bytes:
    mag = abs(v)
    body = mag.to_bytes(max(1, (mag.bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if v < 0 else 0)]) + body


def pstr(s: str) -> bytes:
    return pint(len(s)) + s.encode()


def pfloat(v: float) -> bytes:
    if v == 0:
        return pint(0) + pint(0)
    m, e = math.frexp(v)
    return pint(int(m * 2**53)) + pint(e - 53)


def ptensor(arr: np.ndarray) -> bytes:
    dims = tuple(arr.shape) + (1,) * (4 - arr.ndim)
    return pint(2) + b"".join(pint(d) for d in dims) + arr.astype("<f4").tobytes()


EMPTY = ptensor(np.zeros((0, 0, 0, 0), np.float32))


def palias(*dims: int) -> bytes:
    return pint(1) + b"".join(pint(d) for d in dims)


def tail(input_level: bool = False) -> bytes:
    return b"110" + EMPTY * 3 + (pint(1) if input_level else b"")


def con_record(params: np.ndarray, n: int, k: int, size: int, stride: int, pad: int) -> bytes:
    return (pstr("con_4") + ptensor(params) + b"".join(pint(v) for v in (n, size, size, stride, stride, pad, pad))
            + palias(n, k, size, size) + palias(1, n, 1, 1) + pfloat(1) + pfloat(1) + pfloat(1) + pfloat(0))


def fc_record(params: np.ndarray, n_out: int, n_in: int) -> bytes:
    return (pstr("fc_2") + pint(n_out) + pint(n_in) + ptensor(params.reshape(n_in, n_out))
            + palias(n_in, n_out, 1, 1) + palias(0, 0, 0, 0) + pint(1) + pfloat(1) + pfloat(1) + pfloat(1) + pfloat(0))


def tiny_net(rng: np.random.Generator) -> tuple[bytes, list[np.ndarray]]:
    """loss_metric <- fc 4 <- tag <- relu <- con 2 3x3 <- input_rgb_image_sized<8>."""
    conv = rng.standard_normal(2 * 3 * 9 + 2).astype(np.float32)
    fc = rng.standard_normal(2 * 4).astype(np.float32)
    data = (
        pint(1) + pstr("loss_metric_2") + pfloat(0.04) + pfloat(0.6)
        + pint(2) + pint(1) + pint(2) + pint(3)  # fc add_layer, tag, relu add_layer, input-level add_layer
        + pstr("input_rgb_image_sized") + pfloat(122.782) + pfloat(117.001) + pfloat(104.298) + pint(8) + pint(8)
        + con_record(conv, 2, 3, 3, 1, 1) + tail(input_level=True)
        + pstr("relu_") + tail()
        + fc_record(fc, 4, 2) + tail()
    )
    return data, [conv, fc]


# ------------------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("v", [0, 1, 127, 128, 255, 256, 65535, 2**40 + 3, -1, -300, -(2**33)])
def test_packed_int_roundtrip(v: int) -> None:
    r = DlibReader(pint(v) + b"\x00")
    assert r.read_int() == v
    assert r.remaining == 1


def test_primitives() -> None:
    r = DlibReader(pfloat(122.782) + pfloat(0.0) + pfloat(-0.6) + b"10" + pstr("con_4"))
    assert r.read_float() == pytest.approx(122.782, abs=1e-12)
    assert r.read_float() == 0.0
    assert r.read_float() == pytest.approx(-0.6)
    assert r.read_bool() is True and r.read_bool() is False
    assert r.read_string() == "con_4"
    # dlib's own encoding of 1.0 (mantissa 16, exponent -4) as found in the model file
    assert DlibReader(bytes.fromhex("01108104")).read_float() == 1.0


def test_bad_primitives_raise() -> None:
    with pytest.raises(DlibFormatError, match="control byte"):
        DlibReader(b"\x0f" + b"\x00" * 16).read_int()
    with pytest.raises(DlibFormatError, match="bool"):
        DlibReader(b"x").read_bool()
    with pytest.raises(DlibFormatError, match="version 2"):
        DlibReader(pint(1) + pint(0) * 4).read_tensor()
    with pytest.raises(DlibFormatError, match="truncated"):
        DlibReader(pint(2) + pint(1) * 3 + pint(5) + b"\x00" * 12).read_tensor()


def test_parse_tiny_network() -> None:
    data, (conv, fc) = tiny_net(np.random.default_rng(0))
    net = parse_dlib_net(data, "tiny.dat")
    assert [layer.kind for layer in net.layers] == ["con_4", "relu_", "tag_or_skip", "fc_2"]
    assert net.input.kind == "input_rgb_image_sized" and net.input.attrs["nr"] == 8
    assert net.loss is not None and net.loss.attrs["margin"] == pytest.approx(0.04)
    con = net.layers[0]
    assert con.attrs["num_filters"] == 2 and con.attrs["padding_y"] == 1 and con.attrs["filters"] == (2, 3, 3, 3)
    assert con.attrs["bias_weight_decay_multiplier"] == 0.0
    np.testing.assert_array_equal(con.params.reshape(-1), conv)
    assert net.layers[3].attrs["bias_mode"] == 1
    np.testing.assert_array_equal(net.layers[3].params.reshape(-1), fc)
    assert len(net.param_tensors) == 2 and net.num_param_floats == conv.size + fc.size
    assert net.num_tensors == 2 + 3 * 3  # parameters + empty gradient/output tensors of 3 add_layers


def test_parse_without_loss_layer() -> None:
    data, _ = tiny_net(np.random.default_rng(1))
    skip = len(pint(1) + pstr("loss_metric_2") + pfloat(0.04) + pfloat(0.6))
    net = parse_dlib_net(data[skip:])
    assert net.loss is None and len(net.layers) == 4


@pytest.mark.parametrize("cut", [1, 10, 100, 200])
def test_truncated_tiny_network_raises(cut: int) -> None:
    data, _ = tiny_net(np.random.default_rng(2))
    with pytest.raises(DlibFormatError, match=r"tiny\.dat.*(truncated|expected)"):
        parse_dlib_net(data[:-cut], "tiny.dat")


def test_trailing_bytes_and_unknown_layer_raise() -> None:
    data, _ = tiny_net(np.random.default_rng(3))
    with pytest.raises(DlibFormatError, match="trailing"):
        parse_dlib_net(data + b"\x00")
    bad = data.replace(pstr("relu_"), pstr("prelu"), 1)
    with pytest.raises(DlibFormatError, match="unsupported layer type 'prelu'"):
        parse_dlib_net(bad)


def test_missing_file_and_bz2(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="cannot read"):
        read_dlib_net(tmp_path / "nope.dat")
    p = tmp_path / "model.dat.bz2"
    p.write_bytes(b"BZh91AY&SY")
    with pytest.raises(DlibFormatError, match="bzip2"):
        read_dlib_net(p)


@pytest.mark.shared
def test_real_model_file(dlib_dat: Path) -> None:
    net = read_dlib_net(dlib_dat)
    assert len(net.param_tensors) == 59
    assert net.num_param_floats == 5_614_592
    kinds = Counter(layer.kind for layer in net.layers)
    assert kinds == {"con_4": 29, "affine_": 29, "relu_": 29, "tag_or_skip": 22, "add_prev_": 14, "avg_pool_2": 5,
                     "max_pool_2": 1, "fc_2": 1}
    assert net.input.kind == "input_rgb_image_sized"
    assert (net.input.attrs["nr"], net.input.attrs["nc"]) == (150, 150)
    means = [net.input.attrs[k] for k in ("avg_red", "avg_green", "avg_blue")]
    np.testing.assert_allclose(means, [122.782, 117.001, 104.298], atol=1e-4)
    assert net.loss is not None and net.loss.kind == "loss_metric_2"
    first = net.layers[0]
    assert (first.attrs["num_filters"], first.attrs["nr"], first.attrs["stride_y"], first.attrs["padding_y"]) == (
        32, 7, 2, 0)
    assert net.layers[-1].attrs["bias_mode"] == 1  # fc_no_bias


@pytest.mark.shared
def test_truncated_real_file_raises(dlib_dat: Path, tmp_path: Path) -> None:
    data = dlib_dat.read_bytes()
    bad = tmp_path / "truncated.dat"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DlibFormatError, match=r"truncated\.dat.*truncated file while reading") as ei:
        read_dlib_net(bad)
    assert isinstance(ei.value, WeightsError)
    from nullswap.recognizers import create_recognizer

    with pytest.raises(WeightsError, match="truncated"):
        create_recognizer("dlib-resnet29", checkpoint=str(bad))
