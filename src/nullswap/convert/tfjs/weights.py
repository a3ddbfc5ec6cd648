"""TF.js weight shards: the ``weightsManifest`` and its ``.bin`` groups, decoded (and dequantized) to numpy arrays.

Weights: ``float32``, ``int32`` and ``bool`` tensors; quantized ``uint8``/``uint16`` (``value = q * scale + min``)
and ``float16`` weights are dequantized to ``float32`` (as TF.js does on load).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from nullswap.errors import WeightsError

log = logging.getLogger(__name__)


_QUANT_DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}
_PLAIN_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}


def read_weights(manifest: list[dict[str, Any]], group_bytes: Sequence[bytes]) -> dict[str, np.ndarray]:
    """Decode the tensors of a TF.js ``weightsManifest``.

    Args:
        manifest: the manifest's groups (``{"paths": [...], "weights": [...]}``).
        group_bytes: for each group, the concatenation of its shards' bytes.

    Returns:
        name -> array (``float32`` for float and dequantized weights, ``int32``, ``bool``).

    Raises:
        WeightsError: for an unknown dtype or quantization, or when the bytes do not match the manifest.
    """
    if len(group_bytes) != len(manifest):
        raise WeightsError(f"weights manifest has {len(manifest)} groups, got bytes for {len(group_bytes)}")
    out: dict[str, np.ndarray] = {}
    for gi, (group, buf) in enumerate(zip(manifest, group_bytes, strict=True)):
        off = 0
        for w in group["weights"]:
            shape = [int(s) for s in w.get("shape", [])]
            n = int(np.prod(shape)) if shape else 1
            dtype = w.get("dtype", "float32")
            q = w.get("quantization")
            if q:
                qd = q.get("dtype")
                if qd not in _QUANT_DTYPES:
                    raise WeightsError(f"weight {w['name']!r}: unsupported quantization dtype {qd!r}")
                raw_dtype = _QUANT_DTYPES[qd]
            else:
                if dtype not in _PLAIN_DTYPES:
                    raise WeightsError(f"weight {w['name']!r}: unsupported dtype {dtype!r}")
                raw_dtype = _PLAIN_DTYPES[dtype]
            nbytes = n * np.dtype(raw_dtype).itemsize
            if off + nbytes > len(buf):
                raise WeightsError(
                    f"weights group {gi} is too short: {w['name']!r} needs bytes {off}..{off + nbytes}, "
                    f"the shards hold {len(buf)}"
                )
            arr = np.frombuffer(buf, dtype=np.dtype(raw_dtype).newbyteorder("<"), count=n, offset=off)
            off += nbytes
            if q and qd in ("uint8", "uint16"):
                if "scale" not in q or "min" not in q:
                    raise WeightsError(f"weight {w['name']!r}: {qd} quantization without scale/min")
                vals = arr.astype(np.float32) * np.float32(q["scale"]) + np.float32(q["min"])
                arr = np.round(vals).astype(np.int32) if dtype == "int32" else vals
            elif q:  # float16
                arr = arr.astype(np.float32)
                if dtype == "int32":
                    arr = np.round(arr).astype(np.int32)
            else:
                arr = arr.astype(raw_dtype)  # copy out of the (read-only) buffer, native byte order
            out[w["name"]] = np.ascontiguousarray(arr.reshape(shape))
        if off != len(buf):
            log.warning("weights group %d: %d trailing bytes not described by the manifest", gi, len(buf) - off)
    return out


def _group_nbytes(group: dict[str, Any]) -> int:
    total = 0
    for w in group["weights"]:
        n = int(np.prod(w.get("shape", []))) if w.get("shape") else 1
        q = w.get("quantization")
        dt = _QUANT_DTYPES.get(q["dtype"]) if q else _PLAIN_DTYPES.get(w.get("dtype", "float32"))
        if dt is None:
            raise WeightsError(f"weight {w['name']!r}: unsupported dtype")
        total += n * np.dtype(dt).itemsize
    return total


def _split_groups(manifest: list[dict[str, Any]], data: bytes) -> list[bytes]:
    out, off = [], 0
    for g in manifest:
        n = _group_nbytes(g)
        out.append(data[off : off + n])
        off += n
    return out


__all__ = ["read_weights"]
