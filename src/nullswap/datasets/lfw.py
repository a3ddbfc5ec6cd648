"""LFW images with cached 5-point landmarks, for the verification protocol of :mod:`nullswap.metrics.verification`.

Landmarks are detected once per (detector, image) and cached in ``$NULLSWAP_HOME/cache/lfw-<detector>.npz``. In each
LFW image the face nearest the image centre is the labelled one (LFW crops are centred on it); choice: when several
faces are found we take the detection whose box centre is nearest to the image centre.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from nullswap.datasets.lfw_pairs import LFWPair, flatten_folds, lfw_image_path, read_lfw_pairs, unique_images
from nullswap.faces.alignment import align_faces
from nullswap.faces.detection import Detections, FaceDetector
from nullswap.faces.io import read_image
from nullswap.faces.templates import AlignmentTemplate
from nullswap.hub.store import nullswap_home

log = logging.getLogger(__name__)

Key = tuple[str, int]


def central_face(det: Detections, height: int, width: int) -> int | None:
    """Index of the detection whose box centre is nearest the image centre (``None`` if there is none)."""
    if len(det) == 0:
        return None
    cx = (det.boxes[:, 0] + det.boxes[:, 2]) / 2 - width / 2
    cy = (det.boxes[:, 1] + det.boxes[:, 3]) / 2 - height / 2
    return int(torch.argmin(cx**2 + cy**2))


class LFW:
    """The LFW pairs protocol over a root with ``images/<Name>/<Name>_NNNN.jpg`` and ``meta/pairs.txt``.

    Args:
        root: LFW root folder.
        pairs_file: the pairs list (default ``root/meta/pairs.txt``).
        limit_per_fold: keep only the first ``n`` matched and ``n`` mismatched pairs of every fold (quick checks).
    """

    def __init__(self, root: str | Path, pairs_file: str | Path | None = None, limit_per_fold: int | None = None):
        self.root = Path(root)
        folds = read_lfw_pairs(pairs_file or self.root / "meta" / "pairs.txt")
        if limit_per_fold is not None:
            folds = [[p for p in f if p.same][:limit_per_fold] + [p for p in f if not p.same][:limit_per_fold]
                     for f in folds]
        self.folds = folds
        self.pairs, self.labels, self.fold_ids = flatten_folds(folds)
        self.keys: list[Key] = unique_images(self.pairs)

    def path(self, key: Key) -> Path:
        """Image path of ``(name, index)``."""
        return lfw_image_path(self.root, *key)

    def landmarks(
        self, detector: FaceDetector, cache: bool = True, progress: Callable[[int, int], None] | None = None
    ) -> dict[Key, np.ndarray | None]:
        """Landmarks ``(5,2)`` of the central face of every image (``None`` where no face was found), cached."""
        cache_file = nullswap_home() / "cache" / f"lfw-{detector.name}.npz"
        known: dict[str, np.ndarray] = {}
        if cache and cache_file.is_file():
            with np.load(cache_file) as z:
                known = {k: z[k] for k in z.files}
        out: dict[Key, np.ndarray | None] = {}
        todo = []
        for key in self.keys:
            rel = f"{key[0]}/{key[1]}"
            if rel in known:
                lm = known[rel]
                out[key] = None if np.isnan(lm).any() else lm
            else:
                todo.append(key)
        for i, key in enumerate(todo):
            img = read_image(self.path(key)).tensor
            det = detector.detect(img)[0]
            j = central_face(det, img.shape[1], img.shape[2])
            lm = det.landmarks[j].numpy() if j is not None else None
            out[key] = lm
            known[f"{key[0]}/{key[1]}"] = lm if lm is not None else np.full((5, 2), np.nan, np.float32)
            if progress is not None:
                progress(i + 1, len(todo))
        if cache and todo:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(cache_file.stem + ".part.npz")
            np.savez(tmp, **known)
            tmp.replace(cache_file)
        missing = sum(v is None for v in out.values())
        if missing:
            log.warning("LFW: no face found in %d of %d images", missing, len(out))
        return out

    def aligned_batches(
        self, landmarks: dict[Key, np.ndarray | None], template: str | AlignmentTemplate, batch_size: int = 32
    ) -> Iterator[tuple[list[Key], torch.Tensor]]:
        """Yield ``(keys, crops)`` of aligned faces for every image with landmarks."""
        keys: list[Key] = []
        crops: list[torch.Tensor] = []
        for key in self.keys:
            lm = landmarks.get(key)
            if lm is None:
                continue
            img = read_image(self.path(key)).tensor
            c, _ = align_faces(img, torch.as_tensor(lm, dtype=torch.float32)[None], template)
            keys.append(key)
            crops.append(c[0])
            if len(keys) == batch_size:
                yield keys, torch.stack(crops)
                keys, crops = [], []
        if keys:
            yield keys, torch.stack(crops)


__all__ = ["LFW", "LFWPair", "central_face"]
