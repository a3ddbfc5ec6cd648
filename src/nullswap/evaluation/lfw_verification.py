"""Run the LFW 10-fold verification protocol (:mod:`nullswap.metrics.verification`) for a recognizer.

(Moved here from ``nullswap.recognizers.evaluation``, which still resolves these names: evaluating a recognizer on a
dataset sits above both the recognizers and the datasets.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

from nullswap.datasets.lfw import LFW, Key
from nullswap.metrics.verification import VerificationResult, pair_scores, ten_fold_verification
from nullswap.recognizers.base import FaceRecognizer

log = logging.getLogger(__name__)


@torch.inference_mode()
def embed_lfw(
    model: FaceRecognizer,
    lfw: LFW,
    landmarks: dict[Key, np.ndarray | None],
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    progress: Callable[[int], None] | None = None,
) -> dict[Key, np.ndarray]:
    """Embeddings of every LFW image with a detected face, aligned to the model's own template."""
    model = model.to(device).eval()
    emb: dict[Key, np.ndarray] = {}
    for keys, crops in lfw.aligned_batches(landmarks, model.template, batch_size):
        e = model(crops.to(device)).float().cpu().numpy()
        emb.update(zip(keys, e, strict=True))
        if progress is not None:
            progress(len(keys))
    return emb


def verify_lfw(
    model: FaceRecognizer,
    lfw: LFW,
    landmarks: dict[Key, np.ndarray | None],
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    progress: Callable[[int], None] | None = None,
) -> VerificationResult:
    """Standard 10-fold LFW verification of ``model`` (cosine similarity; undetected faces scored as the minimum)."""
    emb = embed_lfw(model, lfw, landmarks, batch_size, device, progress)
    scored = pair_scores(emb, lfw.pairs, missing="min")
    return ten_fold_verification(scored.scores, lfw.labels, lfw.fold_ids, n_missing=scored.n_missing)
