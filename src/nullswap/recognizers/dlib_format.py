"""A reader of dlib's binary serialization of DNNs (``dlib::serialize(net, out)``), as in ``*.dat`` model files.

This is an independent reader written from dlib's serialization conventions (dlib ``dlib/serialize.h``,
``dlib/dnn/core.h``, ``dlib/dnn/layers.h``, ``dlib/dnn/input.h``, ``dlib/dnn/loss.h`` and ``dlib/cuda/tensor.h``;
Davis E. King, Boost licence). It needs neither dlib nor a C++ compiler and returns plain NumPy arrays.

The format, as far as a network of ``add_loss_layer`` / ``add_layer`` / ``add_tag_layer`` / ``add_skip_layer`` goes:

* integers are *packed*: one control byte (low nibble: number of value bytes, ``0x80``: negative) followed by that
  many little-endian bytes;
* strings are a packed length followed by raw bytes; ``bool`` is one ASCII byte ``'0'``/``'1'``;
* ``float``/``double`` scalars are two packed integers, mantissa and exponent (value = mantissa * 2**exponent);
* a tensor is packed ``version`` (2), packed ``num_samples, k, nr, nc`` and then ``num_samples*k*nr*nc``
  little-endian IEEE float32 values;
* an ``alias_tensor`` (a view into a layer's parameter tensor) is packed ``version`` (1) and its 4 dimensions;
* ``add_loss_layer``: version 1, the loss details, then the subnetwork;
* ``add_layer`` (over a layer): version 2, the subnetwork *first* (so the layer nearest the input is written first),
  then the layer details, 3 bools and 3 (normally empty) tensors ``x_grad, cached_output, params_grad``;
* ``add_layer`` over the input layer: version 3 (2 in older files), the input layer, the layer details, 3 bools,
  3 tensors and (version 3) the packed ``sample_expansion_factor``;
* ``add_tag_layer`` and ``add_skip_layer``: version 1 and the subnetwork (they carry no parameters, and their
  records are identical, so the reader reports them as ``"tag_or_skip"``).

Layer details start with a version string naming the layer type (``"con_4"``, ``"affine_"``, ``"relu_"``,
``"max_pool_2"``, ``"avg_pool_2"``, ``"add_prev_"``, ``"fc_2"``, ...). The reader knows the records of the layer
versions used by dlib's face models and refuses any other with a :class:`DlibFormatError` naming the byte offset.

Example:
    >>> net = read_dlib_net("dlib_face_recognition_resnet_model_v1.dat")  # doctest: +SKIP
    >>> len(net.param_tensors), net.num_param_floats  # doctest: +SKIP
    (59, 5614592)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nullswap.errors import WeightsError

log = logging.getLogger(__name__)

__all__ = [
    "DlibFormatError", "DlibLayer", "DlibNet", "DlibReader", "read_dlib_net",
]


class DlibFormatError(WeightsError):
    """A file is not a dlib DNN serialization this reader understands (truncated, corrupt or an unknown layer)."""


@dataclass
class DlibLayer:
    """One record of the network, in input-to-output order.

    Attributes:
        kind: dlib's version string of the layer (``"con_4"``, ``"affine_"``, ...), ``"tag_or_skip"`` for a tag or
            skip layer, or the input/loss type name.
        attrs: the scalar fields of the record (filter counts, strides, multipliers, ...); alias tensors as tuples.
        params: the layer's parameter tensor as float32 ``(num_samples, k, nr, nc)``, or ``None``.
        offset: byte offset of the record's version string in the file (for messages).
    """

    kind: str
    attrs: dict[str, Any] = field(default_factory=dict)
    params: np.ndarray | None = None
    offset: int = 0


@dataclass
class DlibNet:
    """A parsed network.

    Attributes:
        path: the file read.
        input: the input layer record (``"input_rgb_image_sized"``, ...).
        layers: the layer records from the input to the output (tag/skip records included).
        loss: the loss record, or ``None`` for a network saved without its loss layer.
        num_tensors: how many tensor records the file holds, empty ones (cleared gradients, outputs) included.
    """

    path: Path | None
    input: DlibLayer
    layers: list[DlibLayer]
    loss: DlibLayer | None
    num_tensors: int

    @property
    def computational_layers(self) -> list[DlibLayer]:
        """The layer records without the tag/skip records."""
        return [layer for layer in self.layers if layer.kind != "tag_or_skip"]

    @property
    def param_tensors(self) -> list[np.ndarray]:
        """The non-empty parameter tensors, input to output."""
        return [layer.params for layer in self.layers if layer.params is not None and layer.params.size > 0]

    @property
    def num_param_floats(self) -> int:
        """Total number of parameters."""
        return int(sum(t.size for t in self.param_tensors))


class DlibReader:
    """Cursor over the bytes of a dlib serialization, with typed primitive readers.

    Every read checks the remaining length; a short file raises :class:`DlibFormatError` naming the file, the byte
    offset, what was being read and how many bytes were needed versus available.

    Args:
        data: the file contents.
        name: the file name used in messages.
    """

    def __init__(self, data: bytes, name: str = "<bytes>") -> None:
        self.data = memoryview(data)
        self.name = name
        self.pos = 0
        self.num_tensors = 0

    # ----------------------------------------------------------------------------------------------- primitives
    def error(self, msg: str, at: int | None = None) -> DlibFormatError:
        """A :class:`DlibFormatError` for this file at byte ``at`` (default: the cursor)."""
        return DlibFormatError(f"{self.name}: {msg} (at byte {self.pos if at is None else at} of {len(self.data)})")

    def _take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise self.error(
                f"truncated file while reading {what}: expected {n} more bytes, found {len(self.data) - self.pos}"
            )
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def read_int(self, what: str = "an integer") -> int:
        """A packed integer (dlib ``pack_int``: control byte with size and sign, then little-endian bytes)."""
        start = self.pos
        ctrl = self._take(1, what)[0]
        size = ctrl & 0x0F
        if size > 8 or ctrl & 0x70:
            raise self.error(f"bad packed integer control byte 0x{ctrl:02x} while reading {what}", start)
        value = int.from_bytes(self._take(size, what), "little") if size else 0
        return -value if ctrl & 0x80 else value

    def read_uint(self, what: str = "an unsigned integer") -> int:
        """A packed integer that must not be negative."""
        start = self.pos
        v = self.read_int(what)
        if v < 0:
            raise self.error(f"expected a non-negative {what}, found {v}", start)
        return v

    def read_float(self, what: str = "a float") -> float:
        """A ``float``/``double`` scalar: packed mantissa and exponent (dlib ``float_details``)."""
        mantissa = self.read_int(f"{what} (mantissa)")
        exponent = self.read_int(f"{what} (exponent)")
        specials = {32000: float("inf"), 32001: float("-inf"), 32002: float("nan")}
        if exponent in specials:
            return specials[exponent]
        return float(mantissa) * 2.0**exponent

    def read_bool(self, what: str = "a bool") -> bool:
        """A bool stored as ASCII ``'0'`` or ``'1'``."""
        start = self.pos
        b = self._take(1, what)[0]
        if b not in (0x30, 0x31):
            raise self.error(f"expected a bool byte '0' or '1' for {what}, found 0x{b:02x}", start)
        return b == 0x31

    def read_string(self, what: str = "a string", max_len: int = 1 << 16) -> str:
        """A length-prefixed byte string."""
        start = self.pos
        n = self.read_uint(f"the length of {what}")
        if n > max_len:
            raise self.error(f"implausible length {n} for {what}", start)
        raw = bytes(self._take(n, what))
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.error(f"expected ASCII text for {what}, found {raw[:32]!r}", start) from None

    def peek_string(self) -> str | None:
        """The string at the cursor if one plausibly starts there (printable ASCII), without consuming it."""
        save = self.pos
        try:
            s = self.read_string(max_len=256)
        except DlibFormatError:
            return None
        finally:
            self.pos = save
        return s if s and s.isprintable() and s[0].isalpha() else None

    def read_tensor(self, what: str = "a tensor") -> np.ndarray:
        """A tensor record (version 2): 4 packed dimensions then little-endian float32 values."""
        start = self.pos
        version = self.read_int(f"the version of {what}")
        if version != 2:
            raise self.error(f"expected tensor serialization version 2 for {what}, found {version}", start)
        dims = tuple(self.read_uint(f"a dimension of {what}") for _ in range(4))
        count = int(np.prod(dims, dtype=np.int64))
        if count > (len(self.data) - self.pos) // 4 + 1:
            raise self.error(
                f"truncated file while reading {what} of shape {dims}: expected {4 * count} bytes of float32, "
                f"found {len(self.data) - self.pos}"
            )
        buf = self._take(4 * count, f"{what} of shape {dims}")
        self.num_tensors += 1
        return np.frombuffer(buf, dtype="<f4").astype(np.float32).reshape(dims)

    def read_alias_tensor(self, what: str = "an alias tensor") -> tuple[int, int, int, int]:
        """An ``alias_tensor`` record: version 1 and 4 packed dimensions (no data)."""
        start = self.pos
        version = self.read_int(f"the version of {what}")
        if version != 1:
            raise self.error(f"expected alias_tensor version 1 for {what}, found {version}", start)
        return tuple(self.read_uint(f"a dimension of {what}") for _ in range(4))  # type: ignore[return-value]

    @property
    def remaining(self) -> int:
        """Bytes not yet read."""
        return len(self.data) - self.pos


# --------------------------------------------------------------------------------------------- layer records
# Each reader consumes the fields that follow the layer's version string and returns (attrs, params).
_Fields = tuple[dict[str, Any], np.ndarray | None]


def _con_4(r: DlibReader) -> _Fields:
    params = r.read_tensor("con_ parameters")
    a: dict[str, Any] = {}
    for k in ("num_filters", "nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x"):
        a[k] = r.read_int(f"con_ {k}")
    a["filters"] = r.read_alias_tensor("con_ filters")
    a["biases"] = r.read_alias_tensor("con_ biases")
    for k in ("learning_rate_multiplier", "weight_decay_multiplier", "bias_learning_rate_multiplier",
              "bias_weight_decay_multiplier"):
        a[k] = r.read_float(f"con_ {k}")
    return a, params


def _affine(r: DlibReader) -> _Fields:
    params = r.read_tensor("affine_ parameters")
    a = {"gamma": r.read_alias_tensor("affine_ gamma"), "beta": r.read_alias_tensor("affine_ beta")}
    a["mode"] = r.read_int("affine_ mode")  # dlib layer_mode: 0 = CONV_MODE, 1 = FC_MODE
    return a, params


def _pool_2(r: DlibReader) -> _Fields:
    a = {k: r.read_int(f"pool {k}") for k in ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")}
    return a, None


def _fc_2(r: DlibReader) -> _Fields:
    a: dict[str, Any] = {"num_outputs": r.read_uint("fc_ num_outputs"), "num_inputs": r.read_uint("fc_ num_inputs")}
    params = r.read_tensor("fc_ parameters")
    a["weights"] = r.read_alias_tensor("fc_ weights")
    a["biases"] = r.read_alias_tensor("fc_ biases")
    a["bias_mode"] = r.read_int("fc_ bias_mode")  # dlib fc_bias_mode: 0 = FC_HAS_BIAS, 1 = FC_NO_BIAS
    for k in ("learning_rate_multiplier", "weight_decay_multiplier", "bias_learning_rate_multiplier",
              "bias_weight_decay_multiplier"):
        a[k] = r.read_float(f"fc_ {k}")
    return a, params


def _no_fields(r: DlibReader) -> _Fields:
    return {}, None


def _input_rgb_image_sized(r: DlibReader) -> _Fields:
    a: dict[str, Any] = {k: r.read_float(f"input {k}") for k in ("avg_red", "avg_green", "avg_blue")}
    a["nr"] = r.read_uint("input NR")
    a["nc"] = r.read_uint("input NC")
    return a, None


def _input_rgb_image(r: DlibReader) -> _Fields:
    return {k: r.read_float(f"input {k}") for k in ("avg_red", "avg_green", "avg_blue")}, None


def _loss_metric_2(r: DlibReader) -> _Fields:
    margin = r.read_float("loss_metric_ margin")
    return {"margin": margin, "dist_thresh": r.read_float("loss_metric_ dist_thresh")}, None


LAYER_READERS: dict[str, Callable[[DlibReader], _Fields]] = {
    "con_4": _con_4,
    "affine_": _affine,
    "relu_": _no_fields,
    "max_pool_2": _pool_2,
    "avg_pool_2": _pool_2,
    "add_prev_": _no_fields,
    "fc_2": _fc_2,
}
INPUT_READERS: dict[str, Callable[[DlibReader], _Fields]] = {
    "input_rgb_image_sized": _input_rgb_image_sized,
    "input_rgb_image": _input_rgb_image,
}
LOSS_READERS: dict[str, Callable[[DlibReader], _Fields]] = {
    "loss_metric_2": _loss_metric_2,
}


def _read_record(r: DlibReader, readers: dict[str, Callable[[DlibReader], _Fields]], role: str) -> DlibLayer:
    start = r.pos
    kind = r.read_string(f"the {role} type name")
    if kind not in readers:
        raise r.error(f"unsupported {role} type {kind!r}; this reader knows {sorted(readers)}", start)
    attrs, params = readers[kind](r)
    return DlibLayer(kind, attrs, params, start)


def _read_add_layer_tail(r: DlibReader, with_expansion: bool) -> None:
    for k in ("this_layer_setup_called", "gradient_input_is_stale", "get_output_and_gradient_input_disabled"):
        r.read_bool(f"add_layer {k}")
    for k in ("x_grad", "cached_output", "params_grad/grad_final"):
        t = r.read_tensor(f"add_layer {k}")
        if t.size:
            log.debug("%s: add_layer %s is not empty (%s)", r.name, k, t.shape)
    if with_expansion:
        r.read_uint("add_layer sample_expansion_factor")


def parse_dlib_net(data: bytes, name: str = "<bytes>") -> DlibNet:
    """Parse the bytes of a serialized dlib network (see the module docstring for the format).

    Args:
        data: the whole file.
        name: the file name used in error messages.

    Raises:
        DlibFormatError: on truncation, a bad version number, an unknown layer type or trailing bytes.
    """
    r = DlibReader(data, name)
    loss: DlibLayer | None = None
    start = r.pos
    version = r.read_int("the top-level version")
    s = r.peek_string()
    if s is not None and s.startswith("loss_"):
        if version != 1:
            raise r.error(f"expected add_loss_layer version 1, found {version}", start)
        loss = _read_record(r, LOSS_READERS, "loss layer")
        version = None  # the subnetwork's own version follows
    # Walk down the nested subnetworks: each record starts with its version and then its subnetwork, so the
    # versions of all wrappers come first and the layer details follow in input-to-output order.
    stack: list[tuple[int, int]] = []
    while True:
        start = r.pos
        v = r.read_int("a layer version") if version is None else version
        version = None
        s = r.peek_string()
        if s is not None and s.startswith("input"):
            if v not in (2, 3):
                raise r.error(f"expected add_layer version 2 or 3 over the input layer, found {v}", start)
            input_layer = _read_record(r, INPUT_READERS, "input layer")
            first = _read_record(r, LAYER_READERS, "layer")
            _read_add_layer_tail(r, with_expansion=v == 3)
            layers = [first]
            break
        if v not in (1, 2):
            raise r.error(f"expected a layer version 1 (tag/skip) or 2 (add_layer), found {v}", start)
        stack.append((v, start))
        if len(stack) > 100_000:
            raise r.error("implausibly deep network")
    for v, start in reversed(stack):
        if v == 1:
            layers.append(DlibLayer("tag_or_skip", {}, None, start))
        else:
            rec = _read_record(r, LAYER_READERS, "layer")
            _read_add_layer_tail(r, with_expansion=False)
            layers.append(rec)
    if r.remaining:
        raise r.error(f"{r.remaining} unexpected trailing bytes after the network")
    return DlibNet(None, input_layer, layers, loss, r.num_tensors)


def read_dlib_net(path: str | os.PathLike[str]) -> DlibNet:
    """Read a dlib DNN ``.dat`` file (e.g. ``dlib_face_recognition_resnet_model_v1.dat``).

    Args:
        path: the file.

    Returns:
        The parsed :class:`DlibNet`.

    Raises:
        WeightsError: the file cannot be read.
        DlibFormatError: the contents are truncated, corrupt or not a network this reader understands.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise WeightsError(f"cannot read dlib model file {str(p)!r}: {e}") from e
    if data[:2] == b"BZ":
        raise DlibFormatError(f"{p}: this is a bzip2 archive; decompress it first (bunzip2 {p.name})")
    net = parse_dlib_net(data, str(p))
    net.path = p
    log.debug("%s: %d layer records, %d parameter tensors, %d floats", p, len(net.layers), len(net.param_tensors),
              net.num_param_floats)
    return net

