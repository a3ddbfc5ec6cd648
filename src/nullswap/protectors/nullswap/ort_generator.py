"""The NullSwap generator's one pass under onnxruntime: the CPU fast path of ``nullswap protect`` (issue 14).

:func:`create_ort_generator` traces a generator's :meth:`~nullswap.protectors.nullswap.networks.NullSwapGenerator.
one_pass` (batch norm folded first, :func:`~nullswap.protectors.nullswap.inference.fuse_for_inference`) with
:func:`torch.onnx.export` and returns an :class:`OrtGenerator`: a module with the generator's ``forward`` signature
that draws Eq. 1's noise with PyTorch (the same draws as the PyTorch generator for the same seed, so the same seeded
output) and runs the network in an onnxruntime session. It has no gradients: training, validation and the refinement
steps' recognizers keep PyTorch; only the one pass moves.

Choice (speed, not in the paper), measured 2026-12-07 on the 2-core development VM with the training runs paused
(``/tmp`` script, the v8 generator, 2 threads, one 128-px crop / six crops): PyTorch fused float32 17 ms / -,
fused bfloat16 (``precision="bf16"``, then the protect default on this CPU) 27 ms / 106-142 ms, onnxruntime 13-15 ms /
67-83 ms; outputs within 2.4e-7 of PyTorch's. ``benchmarks/generator_inference.py`` prints the comparison.

The export takes 1-3 s, so the graph is cached in ``$NULLSWAP_HOME/onnx/<key>.onnx`` (:func:`~nullswap.hub.store.
nullswap_home`), ``key`` = sha256 of the weights, the config and the torch / onnx versions: a process after the
first loads it in milliseconds. At load the session's output on two random crops is compared with PyTorch's (max
difference :data:`TOLERANCE`); any failure (no onnxruntime, export error, different outputs) raises
:class:`~nullswap.recognizers.ort_runner.OrtUnavailableError`, and the protector factory then keeps PyTorch.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nullswap.checks import check_image_batch
from nullswap.errors import ImageWriteError, InputError
from nullswap.faces.atomic import write_bytes_atomic
from nullswap.protectors.nullswap.networks import NullSwapGenerator
from nullswap.recognizers.ort_runner import OrtUnavailableError, ort_available, ort_session

log = logging.getLogger(__name__)

__all__ = [
    "BACKENDS", "TOLERANCE", "OrtGenerator", "cache_path", "create_ort_generator", "export_one_pass", "resolve_backend",
]

#: Largest output difference (images in [0, 1]) the session may show against the PyTorch generator at load.
TOLERANCE = 1e-4

#: The one pass's backends: ``torch``, ``ort`` (onnxruntime) or ``auto`` (``ort`` on the CPU when installed).
BACKENDS = ("auto", "ort", "torch")

#: Bumped when the exported graph changes for the same weights (invalidates the cache).
_GRAPH_VERSION = 1

_SESSIONS: dict[str, Any] = {}


def resolve_backend(backend: str, device: torch.device | str = "cpu") -> str:
    """``ort`` or ``torch`` for ``backend`` (``auto``: ``ort`` on a CPU device when onnxruntime is installed).

    Raises:
        InputError: ``backend`` is not one of :data:`BACKENDS`.
    """
    b = str(backend).strip().lower()
    if b not in BACKENDS:
        raise InputError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if b == "auto":
        return "ort" if torch.device(device).type == "cpu" and ort_available() else "torch"
    return b


class _OnePass(nn.Module):
    """What is exported: ``(x, noise, scale) -> I'_s`` (:meth:`NullSwapGenerator.one_pass`)."""

    def __init__(self, generator: NullSwapGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, x: torch.Tensor, noise: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.generator.one_pass(x, noise, scale)


def _example(generator: NullSwapGenerator, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    s = generator.config.image_size
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, s, s, generator=g)
    noise = torch.randn(generator.noise_shape(x.shape), generator=g)
    return x, noise, torch.ones(1, 1, 1, 1)


def export_one_pass(generator: NullSwapGenerator) -> bytes:
    """The generator's :meth:`~NullSwapGenerator.one_pass` as a serialised ONNX graph (batch dimension free).

    Args:
        generator: an eval-mode :class:`NullSwapGenerator` (plain or fused; a fused copy exports fewer nodes).

    Raises:
        OrtUnavailableError: the export failed.
    """
    if not isinstance(generator, NullSwapGenerator):
        raise InputError(f"export_one_pass: expected a NullSwapGenerator, got {type(generator).__name__}")
    wrapper = _OnePass(generator).eval()
    buf = io.BytesIO()
    free = {0: "batch"}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # torch.onnx's notices about its TorchScript exporter
            torch.onnx.export(wrapper, _example(generator, 1, 0), buf, input_names=["x", "noise", "scale"],
                              output_names=["y"], dynamic_axes={"x": free, "noise": free, "y": free},
                              opset_version=17, dynamo=False)
    except Exception as e:  # the exporter raises many types (RuntimeError, torch.onnx.errors.*, ...)
        raise OrtUnavailableError(f"nullswap generator: expected an ONNX export, got {type(e).__name__}: {e}") from e
    return buf.getvalue()


def _cache_key(generator: NullSwapGenerator) -> str:
    h = hashlib.sha256()
    for k, v in sorted(generator.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    try:  # the installed version, without importing onnx (slow)
        onnx_version = importlib.metadata.version("onnx")
    except importlib.metadata.PackageNotFoundError:
        onnx_version = "-"
    h.update(json.dumps([generator.config.to_dict(), torch.__version__, onnx_version, _GRAPH_VERSION],
                        sort_keys=True, default=str).encode())
    return h.hexdigest()


def cache_path(key: str) -> Path:
    """Where the graph of the weights with cache key ``key`` is kept: ``$NULLSWAP_HOME/onnx/``."""
    from nullswap.hub.store import nullswap_home

    return nullswap_home() / "onnx" / f"nullswap-generator-{key[:32]}.onnx"


def _cached_graph(generator: NullSwapGenerator, key: str, *, fresh: bool = False) -> bytes:
    """The exported graph from the on-disk cache (unless ``fresh``), exporting (and caching) it when absent."""
    path = cache_path(key)
    if not fresh:
        try:
            return path.read_bytes()
        except OSError:
            pass
    data = export_one_pass(generator)
    try:  # atomic: a concurrent reader sees no file or the whole file
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, data)
        log.info("nullswap generator: exported for onnxruntime and cached at %s", path)
    except (OSError, ImageWriteError) as e:  # a read-only home: export again next time
        log.debug("nullswap generator: could not cache the ONNX graph at %s: %s", path, e)
    return data


class OrtGenerator(nn.Module):
    """A NullSwap generator whose one pass runs in onnxruntime (inference only, CPU).

    ``forward`` takes and returns what :meth:`NullSwapGenerator.forward` does; the noise is drawn by
    ``generator.random_noise`` (PyTorch), the rest by ``session``. The PyTorch generator is kept (``torch_generator``)
    for the residual factors the graph does not take (``perturbation_scale <= 0``: its cap would divide by 0).

    Args:
        generator: the eval-mode generator the session was exported from.
        session: an onnxruntime session of :func:`export_one_pass`'s graph.
    """

    def __init__(self, generator: NullSwapGenerator, session: Any) -> None:
        super().__init__()
        self.torch_generator = generator
        self.config = generator.config
        self.session = session

    def forward(
        self,
        x: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        noise_scale: float = 1.0,
        perturbation_scale: float = 1.0,
    ) -> torch.Tensor:
        """Identity-cloaked images ``I'_s`` (Sec. 3.2), as :meth:`NullSwapGenerator.forward`.

        Raises:
            InputError: bad batch, or an input that requires a gradient (onnxruntime computes none).
        """
        check_image_batch(x, "nullswap generator input")
        if x.requires_grad and torch.is_grad_enabled():
            raise InputError("nullswap generator (onnxruntime): expected an input without gradient (inference "
                             "only), got one that requires grad; use the PyTorch generator")
        g = self.torch_generator
        if float(perturbation_scale) <= 0 or x.shape[0] == 0:
            return g(x, generator=generator, noise_scale=noise_scale, perturbation_scale=perturbation_scale)
        like = torch.empty(g.noise_shape(x.shape), dtype=torch.float32, device=x.device)
        with torch.no_grad():
            noise = g.random_noise(like, generator, noise_scale)
        feeds = {"x": x.detach().to("cpu", torch.float32).contiguous().numpy(),
                 "noise": noise.to("cpu", torch.float32).contiguous().numpy(),
                 "scale": np.full((1, 1, 1, 1), float(perturbation_scale), dtype=np.float32)}
        y = self.session.run(["y"], feeds)[0]
        return torch.from_numpy(np.asarray(y)).to(x.device, x.dtype)


def create_ort_generator(generator: NullSwapGenerator, *, threads: int | None = None) -> OrtGenerator:
    """An :class:`OrtGenerator` for ``generator`` (exported or read from the cache, then checked against PyTorch).

    Args:
        generator: an eval-mode :class:`NullSwapGenerator` on the CPU (a fused copy is best).
        threads: onnxruntime intra-op threads (default: ``torch.get_num_threads()``).

    Raises:
        OrtUnavailableError: onnxruntime missing, the export failed, or the session's output differs from PyTorch's
            by more than :data:`TOLERANCE`.
    """
    if not isinstance(generator, NullSwapGenerator):
        raise InputError(f"create_ort_generator: expected a NullSwapGenerator, got {type(generator).__name__}")
    if not ort_available():
        raise OrtUnavailableError("onnxruntime: expected the package to be installed, got none")
    gen = generator.eval()
    key = _cache_key(gen)
    mem_key = f"{key}/{threads or torch.get_num_threads()}"
    session = _SESSIONS.get(mem_key)
    if session is None:
        try:
            session = ort_session(_cached_graph(gen, key), threads)
        except OrtUnavailableError as e:  # e.g. a truncated cache file: export again
            log.warning("nullswap generator: cached ONNX graph unusable (%s); exporting it again", e)
            session = ort_session(_cached_graph(gen, key, fresh=True), threads)
        x, noise, scale = _example(gen, 2, 1)
        with torch.no_grad():
            ref = gen.one_pass(x, noise, scale).numpy()
        try:
            out = np.asarray(session.run(["y"], {"x": x.numpy(), "noise": noise.numpy(), "scale": scale.numpy()})[0])
        except Exception as e:  # onnxruntime's own error types
            raise OrtUnavailableError(f"nullswap generator: onnxruntime failed on a test batch: {e}") from e
        diff = float(np.abs(out - ref).max()) if out.shape == ref.shape else float("inf")
        if not diff <= TOLERANCE:
            raise OrtUnavailableError(
                f"nullswap generator: expected onnxruntime's output within {TOLERANCE} of PyTorch's, got {diff:.3g}"
            )
        _SESSIONS[mem_key] = session
    return OrtGenerator(gen, session)
