"""Whether an imported graph handles batches: one probe shared by the ONNX runners (onnx2torch and onnxruntime).

Some exported graphs hard-code a batch of 1 (a ``Reshape`` to ``[1, -1]``, a fixed-shape ``Flatten``): fed a batch
they fail or, worse, mix the images. The probe runs two random images together and one at a time and compares.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)


def _numpy(out: Any) -> np.ndarray:
    return out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)


def batches_like_singles(
    run: Callable[[Any], Any],
    z: Any,
    *,
    name: str,
    graph: str,
    errors: tuple[type[BaseException], ...] = (RuntimeError, ValueError),
) -> bool:
    """Whether ``run(z)`` on a batch of two equals ``run`` on each image alone (rtol = atol = 1e-4).

    Args:
        run: the graph, ``(B, ...) -> (B, D)`` on a torch tensor or a numpy array (as ``z``).
        z: a normalised batch of two inputs.
        name: the recognizer's name (log messages).
        graph: what runs it, for the log (``"ONNX"``, ``"onnxruntime"``).
        errors: exceptions that mean "does not batch" (others propagate).

    Returns:
        ``False`` when the outputs differ or the batched run raises one of ``errors`` (logged at INFO: the caller
        then runs the graph one image at a time).
    """
    try:
        both = _numpy(run(z))
        one = np.concatenate([_numpy(run(z[i : i + 1])) for i in range(2)])
        ok = both.shape == one.shape and bool(np.allclose(both, one, rtol=1e-4, atol=1e-4))
    except errors as e:
        log.debug("%s: batched %s probe failed: %s", name, graph, e)
        ok = False
    if not ok:
        log.info("%s: the %s graph does not batch; running it one image at a time", name, graph)
    return ok
