"""dlib's own face descriptor as a black-box reference (``dlib.face_recognition_model_v1``).

Optional: needs the ``dlib`` Python module (PyPI ``dlib-bin``, prebuilt wheels; extra ``nullswap[native]``). It is
imported lazily; without it :class:`DlibNativeDescriptor` raises :class:`DlibUnavailableError`. Used to check that
:class:`nullswap.recognizers.resnet29.DlibResNet29` reproduces dlib (King, "Dlib-ml: A Machine Learning Toolkit",
JMLR 2009; model of ``dnn_face_recognition_ex.cpp``) on the same 150x150 chips. Not differentiable.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from nullswap.errors import InputError, NullswapError

log = logging.getLogger(__name__)

__all__ = ["DlibNativeDescriptor", "DlibUnavailableError", "dlib_available", "import_dlib", "to_uint8_chips"]

CHIP_SIZE = 150


class DlibUnavailableError(NullswapError, ImportError):
    """The optional ``dlib`` module is not installed (``pip install dlib-bin`` or ``nullswap[native]``)."""


def import_dlib() -> ModuleType:
    """Import ``dlib`` lazily.

    Raises:
        DlibUnavailableError: when it cannot be imported, with the reason and how to install it.
    """
    try:
        return importlib.import_module("dlib")
    except ImportError as e:
        raise DlibUnavailableError(
            f"the dlib Python module is not available ({e}); install the prebuilt wheel with `pip install dlib-bin` "
            "(or `pip install nullswap[native]`)"
        ) from e


def dlib_available() -> bool:
    """Whether ``dlib`` can be imported."""
    try:
        import_dlib()
    except DlibUnavailableError:
        return False
    return True


def to_uint8_chips(chips: np.ndarray | torch.Tensor) -> np.ndarray:
    """Convert chips to what dlib takes: a contiguous ``(N, 150, 150, 3)`` uint8 RGB array.

    Args:
        chips: uint8 ``(150, 150, 3)`` / ``(N, 150, 150, 3)`` arrays, or float tensors ``(3, 150, 150)`` /
            ``(N, 3, 150, 150)`` RGB in [0, 1] (rounded to the nearest 8-bit value).

    Raises:
        InputError: for another shape or dtype.
    """
    if isinstance(chips, torch.Tensor):
        t = chips.detach().cpu()
        if t.ndim == 3:
            t = t.unsqueeze(0)
        if t.ndim != 4 or tuple(t.shape[1:]) != (3, CHIP_SIZE, CHIP_SIZE) or not t.is_floating_point():
            raise InputError(f"dlib chips: expected a float tensor (N,3,150,150) in [0,1], got {t.dtype} "
                             f"{tuple(chips.shape)}")
        arr = (t.float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    else:
        arr = np.asarray(chips)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise InputError(f"dlib chips: expected uint8 arrays (N,150,150,3), got {arr.dtype} {np.shape(chips)}")
    return np.ascontiguousarray(arr)


class DlibNativeDescriptor:
    """``dlib.face_recognition_model_v1`` on already aligned 150x150 chips.

    Args:
        model_path: ``dlib_face_recognition_resnet_model_v1.dat``; default: resolved by the hub (``"dlib-resnet29"``).
        weights_dir: folder searched first by the hub.

    Raises:
        DlibUnavailableError: dlib is not installed.
        WeightsError: the model file cannot be found.
    """

    def __init__(self, model_path: str | os.PathLike[str] | None = None, *, weights_dir: str | None = None) -> None:
        dlib = import_dlib()
        if model_path is None:
            from nullswap.hub import fetch

            model_path = fetch("dlib-resnet29", weights_dir=weights_dir)
        self.model_path = Path(model_path)
        self._model = dlib.face_recognition_model_v1(str(self.model_path))
        log.debug("dlib %s face_recognition_model_v1 loaded from %s", getattr(dlib, "__version__", "?"),
                  self.model_path)

    def compute(self, chips: np.ndarray | torch.Tensor, num_jitters: int = 0) -> np.ndarray:
        """The 128-d descriptors dlib computes (not normalised: dlib's raw outputs, not of unit length).

        Args:
            chips: see :func:`to_uint8_chips`.
            num_jitters: dlib's test-time jittering (0 = the plain forward pass).

        Returns:
            ``(N, 128)`` float32.
        """
        arr = to_uint8_chips(chips)
        if arr.shape[0] == 0:
            return np.zeros((0, 128), dtype=np.float32)
        out = self._model.compute_face_descriptor([np.ascontiguousarray(a) for a in arr], num_jitters)
        return np.asarray([np.asarray(v, dtype=np.float32) for v in out], dtype=np.float32).reshape(len(arr), 128)

    __call__ = compute
