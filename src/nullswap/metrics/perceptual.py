"""Perceptual distance behind one interface: LPIPS (AlexNet, v0.1) or shift-tolerant LPIPS.

The same module serves as the NullSwap perceptual loss (NullSwap Eq. 9,
``L_LPIPS = sum_l ||phi_l(I_s) - phi_l(I'_s)||_2^2``) and as the LPIPS metric of NullSwap Table 1 / ARS Sec. "Metrics".

Two backends:

* ``"lpips-alex"``: the original LPIPS of Zhang et al. 2018 ("The Unreasonable Effectiveness of Deep Features as a
  Perceptual Metric"), AlexNet trunk, linear calibration v0.1. Its weights are *not* bundled: the user supplies the
  ``lpips`` package's ``alex.pth`` (the five 1x1 ``lin`` layers) and torchvision's ``alexnet-owt-7be5be79.pth``
  (the ImageNet AlexNet trunk). See :func:`load_lpips_alex`.
* ``"stlpips-alex"``: ST-LPIPS, the shift-tolerant LPIPS of Ghildyal & Liu 2022 ("Shift-tolerant Perceptual
  Similarity Metric"), from the PyPI package ``stlpips-pytorch`` which ships its AlexNet weights
  (``stlpips_pytorch/weights/vST0.0/alex_shift_tolerant.pth``). Always available offline.

Every :class:`PerceptualDistance` carries a ``name`` attribute so results can record which metric was used: the two
are different metrics and their values are not interchangeable.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from nullswap.checks import check_image_batch, check_same_shape
from nullswap.errors import InputError, WeightsError, WeightsNotFoundError

log = logging.getLogger(__name__)

PerceptualName = Literal["auto", "lpips-alex", "stlpips-alex"]

#: File name of the LPIPS v0.1 linear layers for AlexNet, as shipped by the ``lpips`` pip package.
LPIPS_LIN_FILENAME = "alex.pth"
#: File name of torchvision's ImageNet AlexNet weights.
ALEXNET_FILENAME = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"

#: ``ScalingLayer`` constants of the lpips package (ImageNet mean/std expressed for inputs in [-1, 1]).
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
#: Channels of AlexNet relu1..relu5.
ALEX_CHANNELS = (64, 192, 384, 256, 256)
#: ``features`` indices (exclusive ends) of relu1..relu5 slices in torchvision's AlexNet (as the lpips package).
_ALEX_SLICE_ENDS = (2, 5, 8, 10, 12)
_ALEX_FEATURE_KEYS = tuple(f"features.{i}.{p}" for i in (0, 3, 6, 8, 10) for p in ("weight", "bias"))
_LIN_KEYS = tuple(f"lin{k}.model.1.weight" for k in range(5))


def _normalize_channels(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Unit-normalise a feature map along channels (``lpips.normalize_tensor``)."""
    return x / (torch.sqrt(torch.sum(x**2, dim=1, keepdim=True)) + eps)


class LPIPSAlexNet(nn.Module):
    """The LPIPS v0.1 AlexNet network (Zhang et al. 2018, Eq. 1), for inputs in ``[-1, 1]``.

    ``d(x, y) = sum_l mean_{h,w} || w_l * (phi_l(x)/|phi_l(x)| - phi_l(y)/|phi_l(y)|) ||_2^2`` with ``phi_l`` the
    relu1..relu5 activations of torchvision's AlexNet ``features`` and ``w_l`` a non-negative 1x1 convolution
    (``lin{l}.model.1.weight``; index 1 because the lpips package puts a Dropout at index 0).

    Built with random weights; load real ones with :meth:`load_weights` or :func:`load_lpips_alex`.
    """

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import alexnet

        features = alexnet(weights=None).features
        for m in features:
            if isinstance(m, nn.ReLU):
                m.inplace = False  # slices' outputs are kept; never overwrite them
        self.features = features
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in ALEX_CHANNELS)

    def _feats(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = (x - self.shift) / self.scale
        out, start = [], 0
        for end in _ALEX_SLICE_ENDS:
            for i in range(start, end):
                h = self.features[i](h)
            out.append(h)
            start = end
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-image LPIPS of two ``[-1, 1]`` batches, shape ``(B, 1, 1, 1)`` (as the lpips package)."""
        total = None
        for lin, fx, fy in zip(self.lins, self._feats(x), self._feats(y), strict=True):
            d = (_normalize_channels(fx) - _normalize_channels(fy)) ** 2
            v = lin(d).mean(dim=(2, 3), keepdim=True)
            total = v if total is None else total + v
        assert total is not None
        return total

    def load_weights(self, lin_state: dict[str, torch.Tensor], alexnet_state: dict[str, torch.Tensor]) -> None:
        """Load the lpips ``alex.pth`` state dict and torchvision's AlexNet state dict, with strict key checks.

        Args:
            lin_state: exactly the keys ``lin0.model.1.weight`` ... ``lin4.model.1.weight``, shapes ``(1, C_l, 1, 1)``.
            alexnet_state: torchvision AlexNet keys; ``features.{0,3,6,8,10}.{weight,bias}`` are required, the
                ``classifier.*`` keys are allowed and ignored, anything else is an error.

        Raises:
            WeightsError: on missing, unexpected or mis-shaped keys.
        """
        lin_keys = set(lin_state)
        if lin_keys != set(_LIN_KEYS):
            raise WeightsError(
                f"LPIPS linear weights: expected keys {sorted(_LIN_KEYS)}, got missing "
                f"{sorted(set(_LIN_KEYS) - lin_keys)} and unexpected {sorted(lin_keys - set(_LIN_KEYS))}"
            )
        feat_keys = {k for k in alexnet_state if k.startswith("features.")}
        other = {k for k in alexnet_state if not k.startswith(("features.", "classifier."))}
        if feat_keys != set(_ALEX_FEATURE_KEYS) or other:
            unexpected = sorted((feat_keys - set(_ALEX_FEATURE_KEYS)) | other)
            raise WeightsError(
                f"AlexNet weights: expected torchvision keys {list(_ALEX_FEATURE_KEYS)} (+ classifier.*), got missing "
                f"{sorted(set(_ALEX_FEATURE_KEYS) - feat_keys)} and unexpected {unexpected}"
            )
        feats = {k.removeprefix("features."): alexnet_state[k] for k in _ALEX_FEATURE_KEYS}
        lins = {f"{k}.weight": lin_state[f"lin{k}.model.1.weight"] for k in range(5)}
        for target, state, label in ((self.features, feats, "AlexNet"), (self.lins, lins, "LPIPS linear")):
            own = target.state_dict()
            for k, v in state.items():
                if tuple(v.shape) != tuple(own[k].shape):
                    raise WeightsError(
                        f"{label} weight {k}: expected shape {tuple(own[k].shape)}, got {tuple(v.shape)}"
                    )
            target.load_state_dict(state, strict=True)


def _load_state(path: str | os.PathLike[str], what: str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, pickle with code, ...
        raise WeightsError(f"cannot load {what} from {str(path)!r}: {e}") from e
    if not isinstance(state, dict):
        raise WeightsError(f"{what} in {str(path)!r}: expected a state dict, got {type(state).__name__}")
    return state


def _missing_weights_message(missing: list[str]) -> str:
    return (
        f"LPIPS (AlexNet v0.1) weights not found: missing {', '.join(missing)}. Expected '{LPIPS_LIN_FILENAME}' (the "
        f"LPIPS linear layers, shipped in the pip package 'lpips' as lpips/weights/v0.1/alex.pth) and "
        f"'{ALEXNET_FILENAME}' (torchvision's AlexNet, {ALEXNET_URL}). Pass their paths (lpips_weights=, "
        "alexnet_weights=) or put them in $NULLSWAP_WEIGHTS or $NULLSWAP_HOME/weights; or use 'stlpips-alex', "
        "which ships its weights."
    )


def load_lpips_alex(lpips_weights: str | os.PathLike[str], alexnet_weights: str | os.PathLike[str]) -> LPIPSAlexNet:
    """Build :class:`LPIPSAlexNet` from the user's weight files.

    Args:
        lpips_weights: the lpips package's ``alex.pth`` (linear layers, keys ``lin0.model.1.weight`` ...).
        alexnet_weights: torchvision's ``alexnet-owt-7be5be79.pth``.

    Returns:
        The network in eval mode with frozen parameters.

    Raises:
        WeightsNotFoundError: a file does not exist (the message names the expected files and their sources).
        WeightsError: a file cannot be loaded or its keys or shapes do not match.
    """
    missing = [
        f"{label} {str(p)!r}"
        for label, p in (("lpips_weights", lpips_weights), ("alexnet_weights", alexnet_weights))
        if not Path(p).is_file()
    ]
    if missing:
        raise WeightsNotFoundError(_missing_weights_message(missing))
    net = LPIPSAlexNet()
    net.load_weights(
        _load_state(lpips_weights, "LPIPS linear weights"), _load_state(alexnet_weights, "AlexNet weights")
    )
    return net.eval().requires_grad_(False)


@contextlib.contextmanager
def _ipython_stub() -> Iterator[None]:
    """Provide a stand-in ``IPython`` module while importing ``stlpips_pytorch``.

    stlpips-pytorch 0.0.2 does ``from IPython import embed`` at import time but never calls it; IPython is not a
    dependency of nullswap. The stub is removed again after the import.
    """
    if "IPython" in sys.modules or importlib.util.find_spec("IPython") is not None:
        yield
        return
    stub = types.ModuleType("IPython")
    stub.embed = lambda *a, **k: None  # type: ignore[attr-defined]
    sys.modules["IPython"] = stub
    try:
        yield
    finally:
        if sys.modules.get("IPython") is stub:
            del sys.modules["IPython"]


def load_stlpips_alex() -> nn.Module:
    """Build ST-LPIPS (AlexNet, shift-tolerant) from the weights bundled with ``stlpips-pytorch``; never downloads.

    The package's own constructor loads with ``strict=False``; here the network is built without weights and the
    bundled ``alex_shift_tolerant.pth`` is loaded with ``weights_only=True`` and a strict key check.

    Raises:
        WeightsNotFoundError: the package or its bundled weight file is absent.
        WeightsError: the file does not match the network.
    """
    try:
        with _ipython_stub():
            from stlpips_pytorch import stlpips
    except ImportError as e:
        raise WeightsNotFoundError(
            "ST-LPIPS needs the pip package 'stlpips-pytorch==0.0.2' (in the [train] and [eval] extras: pip install "
            f"'nullswap[eval]', or pip install stlpips-pytorch), got {e}"
        ) from e
    path = Path(stlpips.__file__).resolve().parent / "weights" / "vST0.0" / "alex_shift_tolerant.pth"
    if not path.is_file():
        raise WeightsNotFoundError(
            f"ST-LPIPS weights: expected {str(path)!r} (bundled with stlpips-pytorch), not found"
        )
    with contextlib.redirect_stdout(io.StringIO()):
        net = stlpips.LPIPS(pretrained=False, net="alex", variant="shift_tolerant", verbose=False)
    state = _load_state(path, "ST-LPIPS weights")
    # ``net.lins`` is a ModuleList aliasing lin0..lin4, so its keys duplicate theirs and are not in the file.
    expected = {k for k in net.state_dict() if not k.startswith("lins.")}
    if set(state) != expected:
        raise WeightsError(
            f"ST-LPIPS weights {str(path)!r}: expected keys {sorted(expected)}, got missing "
            f"{sorted(expected - set(state))} and unexpected {sorted(set(state) - expected)}"
        )
    try:
        net.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatch
        raise WeightsError(f"ST-LPIPS weights {str(path)!r} do not match the network: {e}") from e
    return net


class PerceptualDistance(nn.Module):
    """Per-image perceptual distance for RGB images in ``[0, 1]`` (NullSwap Eq. 9; LPIPS metric of Table 1).

    Wraps a LPIPS-style network taking ``[-1, 1]`` inputs; this module does the ``2x - 1`` scaling. Its parameters
    are frozen and it stays in eval mode even if a parent module calls ``.train()``, but it is differentiable with
    respect to its inputs, so it can be used as a training loss.

    Attributes:
        name: which metric this is, ``"lpips-alex"`` or ``"stlpips-alex"``; record it next to every result.
    """

    def __init__(self, net: nn.Module, name: str) -> None:
        """Wrap ``net`` (called as ``net(x, y)`` on ``[-1, 1]`` images, returning ``B`` values) under ``name``."""
        super().__init__()
        self.net = net
        self.name = name
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> PerceptualDistance:
        """Keep eval mode (no dropout) whatever ``mode`` is: the metric is fixed."""
        return super().train(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Distances between ``x`` and ``y``, both ``(B, 3, H, W)`` in ``[0, 1]``; returns shape ``(B,)``."""
        check_image_batch(x, "x")
        check_image_batch(y, "y")
        check_same_shape(x, y, ("x", "y"))
        if min(x.shape[-2:]) < 32:
            raise InputError(f"x: expected images of at least 32x32 pixels for {self.name}, got {tuple(x.shape)}")
        return self.net(2 * x - 1, 2 * y - 1).reshape(x.shape[0])

    def extra_repr(self) -> str:  # noqa: D102
        return f"name={self.name!r}"


def _find_file(filename: str, subdirs: tuple[str, ...] = ("", "lpips")) -> Path | None:
    from nullswap.hub.store import nullswap_home, weights_dirs

    for d in [*weights_dirs(), nullswap_home() / "weights"]:
        for sub in subdirs:
            p = d / sub / filename if sub else d / filename
            if p.is_file():
                return p
    return None


def find_lpips_weights() -> tuple[Path | None, Path | None]:
    """Look for ``alex.pth`` and ``alexnet-owt-7be5be79.pth`` without downloading anything.

    Searched: the weights directories of :func:`nullswap.hub.store.weights_dirs` (``$NULLSWAP_WEIGHTS`` among them)
    and ``nullswap_home()/weights`` (each also with a ``lpips/`` subfolder); for ``alex.pth`` also an installed
    ``lpips`` package (``lpips/weights/v0.1/alex.pth``); for AlexNet also the torch hub cache
    (``torch.hub.get_dir()/checkpoints``).

    Returns:
        ``(lpips_weights, alexnet_weights)``, each ``None`` when not found.
    """
    lin = _find_file(LPIPS_LIN_FILENAME)
    if lin is None:
        spec = importlib.util.find_spec("lpips")
        if spec is not None and spec.origin:
            cand = Path(spec.origin).parent / "weights" / "v0.1" / LPIPS_LIN_FILENAME
            lin = cand if cand.is_file() else None
    alex = _find_file(ALEXNET_FILENAME)
    if alex is None:
        cand = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILENAME
        alex = cand if cand.is_file() else None
    return lin, alex


def create_perceptual(
    name: PerceptualName = "auto",
    lpips_weights: str | os.PathLike[str] | None = None,
    alexnet_weights: str | os.PathLike[str] | None = None,
) -> PerceptualDistance:
    """Create a perceptual distance.

    Args:
        name: ``"lpips-alex"`` (original LPIPS, needs the user's weight files), ``"stlpips-alex"`` (ST-LPIPS, bundled
            weights) or ``"auto"``: LPIPS when both of its files are given or found (:func:`find_lpips_weights`),
            else ST-LPIPS. The choice is logged and recorded in the result's ``name``.
        lpips_weights: path of the lpips ``alex.pth``; searched for when ``None``.
        alexnet_weights: path of ``alexnet-owt-7be5be79.pth``; searched for when ``None``.

    Returns:
        A frozen, eval-mode :class:`PerceptualDistance`.

    Raises:
        InputError: unknown ``name``.
        WeightsNotFoundError: ``"lpips-alex"`` was asked for and a weight file is missing.
        WeightsError: a weight file does not match.
    """
    if name not in ("auto", "lpips-alex", "stlpips-alex"):
        raise InputError(f"name: expected 'auto', 'lpips-alex' or 'stlpips-alex', got {name!r}")
    if name in ("auto", "lpips-alex"):
        found_lin, found_alex = (
            find_lpips_weights() if lpips_weights is None or alexnet_weights is None else (None, None)
        )
        lin = Path(lpips_weights) if lpips_weights is not None else found_lin
        alex = Path(alexnet_weights) if alexnet_weights is not None else found_alex
        if lin is not None and alex is not None:
            log.info("perceptual distance: LPIPS AlexNet v0.1 (%s, %s)", lin, alex)
            return PerceptualDistance(load_lpips_alex(lin, alex), "lpips-alex")
        if name == "lpips-alex":
            missing = [f for f, p in ((LPIPS_LIN_FILENAME, lin), (ALEXNET_FILENAME, alex)) if p is None]
            raise WeightsNotFoundError(_missing_weights_message(missing))
        log.info("perceptual distance: LPIPS weights not found, using ST-LPIPS (stlpips-alex)")
    else:
        log.info("perceptual distance: ST-LPIPS (stlpips-alex)")
    return PerceptualDistance(load_stlpips_alex(), "stlpips-alex")
