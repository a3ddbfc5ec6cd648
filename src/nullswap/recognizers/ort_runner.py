"""Inference-only recognizers run by onnxruntime: the verifiers' fast path on the CPU (issue 14).

:func:`create_ort_recognizer` returns an :class:`OrtRecognizer` for a recognizer shipped as an ONNX file
(:data:`nullswap.recognizers.onnx_models.ONNX_RECOGNIZERS`: ``arcface-mbf``, ``faceplugin-512``, ``sface``): the same
interface as the module :func:`~nullswap.recognizers.create_recognizer` builds (aligned RGB ``[0, 1]`` crops in,
L2-normalised embeddings out, ``template``, ``input_size``), with the file run by an onnxruntime session instead of its
onnx2torch conversion, so without importing onnx2torch (and with it torchvision). It has no gradients: attacks and
training keep the PyTorch modules.

The file gets the conversion's batch rewrite (:func:`~nullswap.recognizers.onnx_models.free_batch_dim`) and two
rewrites that change no output bit (checked on real crops, ``tests/recognizers/test_ort_runner.py``):

* float weights below the smallest normal float32 (1.2e-38) are set to 0 (:func:`zero_subnormal_weights`):
  ``fr_feature.onnx`` holds 8,938 subnormal weights, which make its convolutions 3.4x slower on x86;
* ``PRelu(x, a)`` with every slope ``a <= 1`` becomes ``Max(x, a * x)`` (:func:`prelu_as_max`), which onnxruntime
  runs about 1.35x faster.

The input normalisation is the one :class:`~nullswap.recognizers.onnx_models.OnnxRecognizer` applies, with the same
torch ops, before the session runs. At load a batch of two random crops is compared with the crops one by one; a
graph that does not batch runs one image at a time.

Recognizers whose network is a PyTorch module (``human-*``, ``dlib-resnet29``, ...) stay on PyTorch: exported with
``torch.onnx.export`` to onnxruntime, ``human-mobilefacenet`` ran no faster (113 vs 118 ms for 12 crops, 2 threads)
and took 1.2 s to export at load.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from nullswap.errors import InputError, WeightsError
from nullswap.recognizers.base import FaceRecognizer, RecognizerInfo
from nullswap.recognizers.batch_probe import batches_like_singles

log = logging.getLogger(__name__)

__all__ = [
    "OrtRecognizer",
    "OrtUnavailableError",
    "create_ort_recognizer",
    "onnx_file_graph",
    "ort_available",
    "ort_session",
    "prelu_as_max",
    "zero_subnormal_weights",
]

#: Largest difference of the L2-normalised embeddings an exported graph may show against its PyTorch module.
EXPORT_TOLERANCE = 1e-4


class OrtUnavailableError(WeightsError):
    """A recognizer cannot run under onnxruntime here (no onnxruntime, export failed, or outputs differ)."""


def ort_available() -> bool:
    """Whether onnxruntime can be imported."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def ort_session(model: bytes | str, threads: int | None = None) -> Any:
    """An onnxruntime CPU session for a serialised ONNX model (bytes) or a file path.

    Args:
        model: the model.
        threads: intra-op threads (default: ``torch.get_num_threads()`` now, as for SCRFD).

    Raises:
        OrtUnavailableError: onnxruntime is not installed, or it rejects the model.
    """
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise OrtUnavailableError(f"onnxruntime: expected the package to be installed, got {e}") from e
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads or torch.get_num_threads())
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # no busy-waiting between runs: the pool's spinning threads would compete with PyTorch's on a 2-core machine
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # no arena: it keeps the largest batch's activations (arcface-mbf + faceplugin-512 at 12 crops: +120-160 MiB
    # resident) for no measurable speed
    so.enable_cpu_mem_arena = False
    try:
        return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail / InvalidGraph / RuntimeException types
        raise OrtUnavailableError(f"onnxruntime: expected a model it can run, got {type(e).__name__}: {e}") from e


def zero_subnormal_weights(model: Any) -> int:
    """Set float32 initializers below the smallest normal float32 to 0, in place; return how many were changed.

    Subnormal weights slow x86 arithmetic down without flush-to-zero (``fr_feature.onnx``: 3.4x); they are below
    1.2e-38 in magnitude, so no output changes beyond float rounding.
    """
    from onnx import TensorProto, numpy_helper

    tiny = np.finfo(np.float32).tiny
    n = 0
    for t in model.graph.initializer:
        if t.data_type != TensorProto.FLOAT:
            continue
        a = numpy_helper.to_array(t)
        sub = (a != 0) & (np.abs(a) < tiny)
        k = int(sub.sum())
        if k:
            t.CopyFrom(numpy_helper.from_array(np.where(sub, np.float32(0), a).astype(np.float32), t.name))
            n += k
    return n


def prelu_as_max(model: Any) -> int:
    """Rewrite every ``PRelu(x, a)`` whose slope ``a`` is a constant with all values <= 1 as ``Max(x, Mul(x, a))``.

    The same function bit for bit (for ``a <= 1``: ``x >= a * x`` when ``x >= 0`` and ``a * x >= x`` below, and
    ``a * x`` is the same product), but onnxruntime runs the two ops about 1.35x faster than its ``PRelu`` on
    MobileFaceNets (measured on ``w600k_mbf.onnx``, 2 threads). Returns the number of nodes rewritten.
    """
    from onnx import helper, numpy_helper

    consts = {t.name: t for t in model.graph.initializer}
    consts.update({n.output[0]: a.t for n in model.graph.node if n.op_type == "Constant"
                   for a in n.attribute if a.name == "value"})
    nodes = []
    n_rewritten = 0
    for node in model.graph.node:
        slope = consts.get(node.input[1]) if node.op_type == "PRelu" and len(node.input) == 2 else None
        if slope is None or not bool((numpy_helper.to_array(slope) <= 1).all()):
            nodes.append(node)
            continue
        x, y = node.input[0], node.output[0]
        scaled = f"{y}/nullswap_prelu_scaled"
        nodes.append(helper.make_node("Mul", [x, node.input[1]], [scaled], name=f"{node.name}/mul"))
        nodes.append(helper.make_node("Max", [x, scaled], [y], name=f"{node.name}/max"))
        n_rewritten += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return n_rewritten


def _for_ort(model: Any, what: str) -> bytes:
    """``model`` with :func:`zero_subnormal_weights` and :func:`prelu_as_max` applied, checked and serialised."""
    import onnx

    n_sub, n_prelu = zero_subnormal_weights(model), prelu_as_max(model)
    log.debug("%s: %d subnormal weights set to 0, %d PRelu rewritten as Max(x, a * x)", what, n_sub, n_prelu)
    try:
        onnx.checker.check_model(model)
    except Exception as e:  # onnx.checker.ValidationError
        raise OrtUnavailableError(f"{what}: expected a valid graph after the rewrite, got {e}") from e
    return model.SerializeToString()


def onnx_file_graph(path: str, *, free_batch: bool = True) -> bytes:
    """An ONNX recognizer file made ready for onnxruntime: batch rewrite, subnormal weights zeroed; serialised.

    Raises:
        WeightsError: the file is not a valid ONNX model.
    """
    import onnx

    from nullswap.recognizers.onnx_models import free_batch_dim

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as e:  # protobuf DecodeError, ValidationError, OSError
        raise WeightsError(f"cannot read ONNX model {str(path)!r}: {e}") from e
    if free_batch:
        log.debug("%s: rewrote %d fixed-batch Reshape target(s)", path, free_batch_dim(model))
    return _for_ort(model, str(path))


class OrtRecognizer(FaceRecognizer):
    """A recognizer's network run by an onnxruntime session: inference only (no gradients).

    :meth:`embed` applies ``(255 * x[:, order] - mean) / std`` when ``mean``/``std`` are given (the ONNX files'
    normalisation; an exported graph has its own inside), runs the session on the CPU and returns the raw embeddings
    on ``x``'s device; :meth:`forward` (from :class:`FaceRecognizer`) L2-normalises them.

    Args:
        info: the recognizer's description.
        session: an onnxruntime ``InferenceSession`` with one input ``(B, 3, H, W)`` and the embedding first.
        mean: per-channel mean on the 0..255 scale, or ``None`` (the graph takes the ``[0, 1]`` crop as is).
        std: per-channel scale on the 0..255 scale (with ``mean``).
        bgr: feed the channels in BGR order (with ``mean``).
        check_batching: probe whether the session handles batches; otherwise run it one image at a time.
    """

    def __init__(
        self,
        info: RecognizerInfo,
        session: Any,
        *,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] = (1.0, 1.0, 1.0),
        bgr: bool = False,
        check_batching: bool = True,
    ) -> None:
        super().__init__(info)
        self.session = session
        self._input = session.get_inputs()[0].name
        self._output = session.get_outputs()[0].name
        self.bgr = bool(bgr)
        self.register_buffer(
            "mean", None if mean is None else torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1),
            persistent=False,
        )
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.per_sample = False
        if check_batching:
            self.per_sample = not self._batching_works()

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean is None:
            return x
        if self.bgr:
            x = x.flip(1)
        return (x * 255.0 - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def _run(self, z: np.ndarray) -> np.ndarray:
        out = self.session.run([self._output], {self._input: z})[0]
        return np.asarray(out).reshape(z.shape[0], -1)

    def _batching_works(self) -> bool:
        z = self._normalize(torch.rand(2, 3, *self.input_size, generator=torch.Generator().manual_seed(0))).numpy()
        # onnxruntime's errors have no common base: any failure of the batched run means "one image at a time"
        return batches_like_singles(self._run, z, name=self.name, graph="onnxruntime", errors=(Exception,))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Raw embeddings ``(B, D)`` of RGB crops in ``[0, 1]``.

        Raises:
            InputError: ``x`` requires a gradient (onnxruntime computes none: use ``create_recognizer``).
        """
        if x.requires_grad and torch.is_grad_enabled():
            raise InputError(
                f"{self.name} (onnxruntime): expected an input without gradient (inference only), got one that "
                "requires grad; use nullswap.recognizers.create_recognizer for a differentiable recognizer"
            )
        z = self._normalize(x.detach().to("cpu", torch.float32)).contiguous().numpy()
        if self.per_sample and z.shape[0] != 1:
            out = np.concatenate([self._run(z[i : i + 1]) for i in range(z.shape[0])])
        else:
            out = self._run(z)
        return torch.from_numpy(out).to(x.device)


def create_ort_recognizer(
    name: str, *, threads: int | None = None, weights_dir: str | None = None, checkpoint: str | None = None
) -> OrtRecognizer:
    """The recognizer ``name`` run by onnxruntime (module doc), in eval mode.

    Args:
        name: a name from :func:`~nullswap.recognizers.list_recognizers`.
        threads: onnxruntime intra-op threads (default: ``torch.get_num_threads()``).
        weights_dir: folder searched first for weight files.
        checkpoint: explicit weight file (as for ``create_recognizer``).

    Raises:
        UnknownModelError: unknown name.
        WeightsNotFoundError: its weights are missing.
        WeightsError: its weights cannot be read.
        OrtUnavailableError: onnxruntime is missing, or the recognizer cannot run under it.
    """
    from nullswap.recognizers.mobilefacenet import resolve_weights
    from nullswap.recognizers.onnx_models import ONNX_RECOGNIZERS
    from nullswap.recognizers.registry import recognizer_info

    info = recognizer_info(name)
    if name in ONNX_RECOGNIZERS:
        norm = ONNX_RECOGNIZERS[name]
        path = resolve_weights(info.weights[0], weights_dir=weights_dir, checkpoint=checkpoint)
        rec = OrtRecognizer(info, ort_session(onnx_file_graph(str(path)), threads), **norm)
        with torch.inference_mode():
            dim = rec.embed(torch.full((1, 3, *info.input_size), 0.5)).shape[1]
        if dim != info.embedding_dim:
            raise WeightsError(
                f"{name}: ONNX model {str(path)!r} gives {dim}-d output, expected {info.embedding_dim}-d"
            )
        log.debug("%s: onnxruntime on %s (per-sample: %s)", name, path, rec.per_sample)
        return rec.eval()
    raise OrtUnavailableError(
        f"{name}: expected a recognizer shipped as an ONNX file ({', '.join(ONNX_RECOGNIZERS)}), got one whose "
        "network is a PyTorch module"
    )
