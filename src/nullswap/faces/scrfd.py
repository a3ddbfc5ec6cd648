"""SCRFD-500M face detector (boxes, 5 keypoints) run by onnxruntime on a downscaled copy of the photo.

SCRFD: Guo, Deng, Lattas, Zafeiriou, "Sample and Computation Redistribution for Efficient Face Detection",
ICLR 2022 (arXiv:2105.04714). The network is InsightFace's ``scrfd_500m_bnkps.onnx`` (weight spec ``scrfd-500m``).
Pre-processing and decoding follow InsightFace's reference implementation
(``python-package/insightface/model_zoo/scrfd.py``): RGB, ``(x - 127.5) / 128``, the picture resized keeping its
aspect ratio into the top-left corner of a zero (black) canvas, three feature levels with strides 8/16/32 and two
anchors per location, ``distance2bbox`` / ``distance2kps`` decoding from the anchor centres, score threshold 0.5 and
greedy NMS at IoU 0.4 (areas with InsightFace's ``+1`` pixel convention).

Differences from the reference, each a documented choice:
    * The photo is scaled so that its long side is at most ``max_side`` (default 640; never enlarged, where the
      reference enlarges small photos to 640), by area averaging; boxes and keypoints are mapped back by the per-axis
      scale. (An ad-hoc comparison on the 15 shared photos over 640 px, 2-core VM, 1 thread: landmarks differ from
      a full-resolution SCRFD run by 0.041 eye distances on average with area averaging, 0.041 with antialiased
      and 0.042 with plain bilinear; area averaging of a 12-MP photo takes 50 ms, antialiased bilinear 84 ms.) A
      draft-mode preview (:mod:`nullswap.faces.preview`, channels-last memory) is shrunk by OpenCV's ``INTER_AREA``
      (exact fractional pixel areas; torch's ``area`` mode averages whole-pixel bins): on the 6 shared JPEGs that get
      a preview, the same 11 faces, landmarks within 0.019 eye distances and scores within 0.007 of torch's area
      mode on the same preview, and the network's input built in 2.75 instead of 4.20 ms (median; ``/tmp`` script,
      2026-12-07, 2 threads, 2-core VM). The
      canvas is the resized photo padded with black to the next multiple of 32 (``pad="stride"``, default:
      onnxruntime takes 13.3 ms for 640 x 480 against 18.5 ms for 640 x 640, 1 thread) or letterboxed into a
      ``max_side`` square as the reference does (``pad="square"``); the two agree to 0.25 network pixels on the
      shared photos, 2.8 px on the 112-px ``tomhanks.png``. Against InsightFace's own pipeline (OpenCV bilinear
      resize of the 8-bit photo) boxes and keypoints agree to 1.6 network pixels at most, ~1 px typically, on the
      shared photos over 640 px (``tests/faces/test_scrfd.py``).
    * Small-face pass (``small_faces="auto"``): when the first pass finds a face under ``small_face_trigger``
      network pixels (32), the photo is searched again on overlapping tiles at twice the scale, keeping only the
      faces too small for the pass before, and so on while the latest pass finds a face under 32 network pixels, up
      to the scale that brings ``min_face_size`` photo pixels (20, MTCNN's default) to 32 network pixels (at most
      2x the photo); the faces of all passes are merged by NMS. When the first pass finds nothing, one pass at
      twice its scale (four times its work) probes for small faces. A photo whose faces are all under about
      16 network pixels at the first pass (e.g. under ~100 px in a 4000 x 3000 photo) is searched down to
      ``min_face_size`` only with ``small_faces="always"`` (one tiled pass at the final scale).
    * When nothing is found at all, one more pass at half the scale (a quarter of the work) looks for faces too
      large for SCRFD-500M at the first scale (LFW photos enlarged so the face is 512 px are missed at scale 1).

Face sizes SCRFD-500M finds (``python benchmarks/faces.py --sections minface --threads 1``; 100 LFW faces pasted
at a given side, MTCNN box, onto a black 640 x 640 canvas, one pass): 16 px 7 %, 20 px 64 %, 24 px 89 %, 28 px 97 %,
32 px 98 %, 40 and 48 px 100 %. 25 LFW photos enlarged so the face has 384 / 448 / 512 / 640 px: one pass finds
25 / 14 / 0 / 0, with the half-scale pass 25 / 25 / 23 / 22 (close-up crops of the shared photos resized to 640 px,
faces up to ~640 px, are all found in one pass). At
``max_side=640`` the first pass therefore finds faces from ``32 * long side / 640`` photo pixels (64 px in a
1280-px photo, 200 px in a 4000 x 3000 one); the small-face pass extends that to ``min_face_size``.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from nullswap.errors import DetectionError, InputError
from nullswap.faces.detection import Detections, FaceDetector, ImageInput, _as_list

log = logging.getLogger(__name__)

STRIDES = (8, 16, 32)
NUM_ANCHORS = 2
#: Face side (pixels at the network's input scale) from which SCRFD-500M finds nearly every face (module note).
RELIABLE_NET_FACE = 32
#: Largest scale of the small-face pass (it enlarges photos whose faces are too small even at full resolution).
MAX_SMALL_FACE_SCALE = 2.0


def distance2bbox(centers: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Boxes ``x1, y1, x2, y2`` from anchor centres ``(N, 2)`` and distances to the left/top/right/bottom sides."""
    return np.concatenate([centers - dist[:, 0:2], centers + dist[:, 2:4]], axis=1)


def distance2kps(centers: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Keypoints ``(N, K, 2)`` from anchor centres ``(N, 2)`` and per-keypoint offsets ``(N, 2K)``."""
    return centers[:, None, :] + dist.reshape(dist.shape[0], -1, 2)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS as in InsightFace's SCRFD (areas ``(x2 - x1 + 1) * (y2 - y1 + 1)``); indices by falling score."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        order = rest[inter / (areas[i] + areas[rest] - inter) <= iou]
    return np.asarray(keep, dtype=np.int64)


class SCRFDDetector(FaceDetector):
    """SCRFD-500M with 5 keypoints (Guo et al., ICLR 2022) on a downscaled copy, plus a small-face pass.

    Args:
        max_side: the photo is detected on a copy whose long side is at most this (default 640, SCRFD's training
            and reference input size; a smaller photo is used as it is); boxes and landmarks are mapped back to the
            photo's pixels.
        score_threshold: minimum face score (InsightFace: 0.5).
        nms_threshold: NMS IoU (InsightFace: 0.4).
        pad: ``"stride"`` pads the resized copy to a multiple of 32 (fast); ``"square"`` letterboxes it into a
            ``max_side`` square as the reference does.
        small_faces: ``"auto"`` runs tiled passes at doubling scales while the latest pass found a face under
            ``small_face_trigger`` (after a first pass that found nothing: one probe at twice its scale);
            ``"always"`` runs one tiled pass at the final scale; ``"never"`` none. A pass runs only where its
            scale exceeds the one before by 1.25x.
        min_face_size: smallest face side (photo pixels) the small-face passes go down to (MTCNN's default: 20).
        small_face_trigger: first-pass face side (network pixels) under which the small-face pass runs.
        threads: onnxruntime intra-op threads (default: ``torch.get_num_threads()`` at construction).
        weights_dir: folder searched first for ``scrfd_500m_bnkps.onnx``.
        device: accepted for interface compatibility; onnxruntime runs SCRFD on the CPU.
    """

    name = "scrfd"

    def __init__(
        self,
        max_side: int = 640,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.4,
        pad: Literal["stride", "square"] = "stride",
        small_faces: Literal["auto", "always", "never"] = "auto",
        min_face_size: float = 20.0,
        small_face_trigger: float = 32.0,
        threads: int | None = None,
        weights_dir: str | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        import onnxruntime as ort

        from nullswap.hub import fetch

        if not isinstance(max_side, int) or max_side < 32:
            raise InputError(f"max_side: expected an int >= 32, got {max_side!r}")
        if pad not in ("stride", "square"):
            raise InputError(f"pad: expected 'stride' or 'square', got {pad!r}")
        if small_faces not in ("auto", "always", "never"):
            raise InputError(f"small_faces: expected 'auto', 'always' or 'never', got {small_faces!r}")
        if not min_face_size > 0:
            raise InputError(f"min_face_size: expected a positive number of pixels, got {min_face_size!r}")
        self.max_side = max_side
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.pad = pad
        self.small_faces = small_faces
        self.min_face_size = float(min_face_size)
        self.small_face_trigger = float(small_face_trigger)
        self.threads = int(threads or torch.get_num_threads())
        self._path = str(fetch("scrfd-500m", weights_dir=weights_dir))
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        self._session = ort.InferenceSession(self._path, so, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        names = [o.name for o in self._session.get_outputs()]
        if len(names) != 3 * len(STRIDES):
            raise DetectionError(f"{self._path}: expected 9 SCRFD outputs (score/bbox/kps x 3 strides), got {names}")
        self._outputs = names
        self._centers: dict[tuple[int, int], np.ndarray] = {}

    # ------------------------------------------------------------------------------------------------ network
    def _anchor_centers(self, h: int, w: int, stride: int) -> np.ndarray:
        key = (h, w, stride)
        if key not in self._centers:
            if len(self._centers) >= 64:  # photos of many sizes: keep the cache bounded
                self._centers.clear()
            yy, xx = np.mgrid[:h, :w]
            c = np.stack([xx, yy], -1).reshape(-1, 2).astype(np.float32) * stride
            self._centers[key] = np.repeat(c, NUM_ANCHORS, axis=0)
        return self._centers[key]

    def run_network(self, blob: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Run SCRFD on normalised canvases and decode every candidate above the score threshold.

        Args:
            blob: ``(B, 3, H, W)`` float32, ``(x - 127.5) / 128`` RGB, ``H`` and ``W`` multiples of 32.

        Returns:
            Per canvas: boxes ``(N, 4)``, keypoints ``(N, 5, 2)`` in canvas pixels and scores ``(N,)``, before NMS.
        """
        _, _, H, W = blob.shape
        try:
            outs = self._session.run(self._outputs, {self._input: blob})
        except Exception as e:  # onnxruntime's own exception types (Fail, InvalidArgument, ...) or MemoryError
            raise DetectionError(f"SCRFD failed on a {tuple(blob.shape)} input: {e}") from e
        res = []
        for b in range(blob.shape[0]):
            boxes, kps, scores = [], [], []
            for i, s in enumerate(STRIDES):
                sc = outs[i][b].reshape(-1)
                keep = np.nonzero(sc >= self.score_threshold)[0]
                if keep.size == 0:
                    continue
                c = self._anchor_centers(H // s, W // s, s)[keep]
                boxes.append(distance2bbox(c, outs[i + 3][b][keep] * s))
                kps.append(distance2kps(c, outs[i + 6][b][keep] * s))
                scores.append(sc[keep])
            if scores:
                res.append((np.concatenate(boxes), np.concatenate(kps), np.concatenate(scores)))
            else:
                res.append((np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32), np.zeros(0, np.float32)))
        return res

    def network_input(
        self, img: torch.Tensor, scale: float, window: tuple[int, int, int, int] | None = None, square: bool = False
    ) -> tuple[np.ndarray, float, float]:
        """The normalised canvas SCRFD sees for a window of the photo at a scale.

        Args:
            img: ``(3, H, W)`` float photo in [0, 1].
            scale: resize factor of the window (area averaging when shrinking, bilinear when enlarging).
            window: ``(y0, x0, h, w)`` in photo pixels (default: the whole photo).
            square: letterbox into a ``max_side`` square (the reference) instead of padding to a multiple of 32.

        Returns:
            ``(1, 3, ch, cw)`` float32 canvas (resized window at the top left, black elsewhere) and the factors
            ``sx, sy`` that map canvas pixels back to window pixels.
        """
        y0, x0, hs, ws = window if window is not None else (0, 0, *img.shape[-2:])
        h, w = max(1, round(hs * scale)), max(1, round(ws * scale))
        x = img[:, y0 : y0 + hs, x0 : x0 + ws]
        if square and max(h, w) <= self.max_side:
            ch = cw = max(32, math.ceil(self.max_side / 32) * 32)
        else:
            ch, cw = math.ceil(h / 32) * 32, math.ceil(w / 32) * 32
        out = np.full((1, 3, ch, cw), -127.5 / 128.0, np.float32)
        if (h, w) == (hs, ws):
            r = x.numpy()
        elif h <= hs and w <= ws and x.stride(0) == 1:  # channels-last memory (a draft preview): OpenCV's area
            import cv2

            r = cv2.resize(x.permute(1, 2, 0).numpy(), (w, h), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
        elif h <= hs and w <= ws:
            # area averaging: as accurate as antialiased bilinear here and 1.7x faster on a 12-MP photo
            r = F.interpolate(x[None], size=(h, w), mode="area")[0].numpy()
        else:  # enlarging (small-face pass): OpenCV's bilinear is ~5x faster than torch's on one thread
            import cv2

            r = cv2.resize(np.ascontiguousarray(x.permute(1, 2, 0).numpy()), (w, h), interpolation=cv2.INTER_LINEAR)
            r = r.transpose(2, 0, 1)
        # (255 x - 127.5) / 128, after the resize (linear), so a large photo is never copied whole
        np.subtract(np.multiply(r, 255.0 / 128.0), 127.5 / 128.0, out=out[0, :, :h, :w])
        return out, ws / w, hs / h

    def _detect_window(
        self, img: torch.Tensor, scale: float, window: tuple[int, int, int, int] | None = None, square: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidates (before NMS) in a window of the photo at a scale, in photo pixels."""
        blob, sx, sy = self.network_input(img, scale, window, square)
        ((boxes, kps, scores),) = self.run_network(blob)
        y0, x0 = (window[0], window[1]) if window is not None else (0, 0)
        boxes = boxes * np.array([sx, sy, sx, sy], np.float32) + np.array([x0, y0, x0, y0], np.float32)
        kps = kps * np.array([sx, sy], np.float32) + np.array([x0, y0], np.float32)
        return boxes, kps, scores

    def _tile_pass(self, img: torch.Tensor, s1: float, s2: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Search overlapping tiles of the photo at scale ``s2`` for faces too small for the first pass (scale ``s1``).

        Tiles are ``2 * max_side`` network pixels square (more when ``s2 / s1`` is large). A face is kept only from
        the tile whose core (the part nearer to it than to a neighbour) holds its centre, and only if its side is under
        the tiles' overlap, ``small_face_trigger`` network pixels at the first pass's scale (larger faces are the first
        pass's); so every kept face lies whole in its tile.
        """
        H, W = img.shape[-2:]
        overlap = self.small_face_trigger / s1  # photo pixels
        tile = max(2 * self.max_side / s2, 4 * overlap)
        step = tile - overlap

        def spans(n: int) -> list[tuple[int, int, float, float]]:
            """(start, size, core_lo, core_hi) of the windows along one axis."""
            if n <= tile:
                return [(0, n, 0.0, float(n))]
            k = math.ceil((n - tile) / step)
            size = math.ceil(tile)
            starts = [round(i * (n - size) / k) for i in range(k + 1)]
            out = []
            for i, a in enumerate(starts):
                lo = 0.0 if i == 0 else (a + starts[i - 1] + size) / 2
                hi = float(n) if i == k else (starts[i + 1] + a + size) / 2
                out.append((a, size, lo, hi))
            return out

        boxes_all, kps_all, scores_all = [], [], []
        ys, xs = spans(H), spans(W)
        for y0, hs, ylo, yhi in ys:
            for x0, ws, xlo, xhi in xs:
                b, k, sc = self._detect_window(img, s2, (y0, x0, hs, ws))
                side = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
                cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
                m = (side < overlap) & (cx >= xlo) & (cx < xhi) & (cy >= ylo) & (cy < yhi)
                boxes_all.append(b[m])
                kps_all.append(k[m])
                scores_all.append(sc[m])
        log.debug("scrfd small-face pass: scale %.3f, %d x %d tiles", s2, len(ys), len(xs))
        return np.concatenate(boxes_all), np.concatenate(kps_all), np.concatenate(scores_all)

    def _detect_one(self, img: torch.Tensor) -> Detections:
        img = img.detach().to("cpu", torch.float32)
        H, W = img.shape[-2:]
        s1 = min(1.0, self.max_side / max(H, W))
        found = [self._detect_window(img, s1, square=self.pad == "square")]
        first = nms(found[0][0], found[0][2], self.nms_threshold)
        s2 = min(MAX_SMALL_FACE_SCALE, RELIABLE_NET_FACE / self.min_face_size)
        if self.small_faces == "always" and s2 > 1.25 * s1:
            found.append(self._tile_pass(img, s1, s2))
        elif self.small_faces == "auto":
            # double the scale while the latest pass found a face under the trigger (or, after the first pass, found
            # nothing: one probe), up to s2; each pass keeps only the faces too small for the one before
            scale, boxes, nothing = s1, found[0][0][first], first.size == 0
            while s2 > 1.25 * scale:
                sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * scale
                if not (nothing or (sides.size and float(sides.min()) < self.small_face_trigger)):
                    break
                nxt = min(s2, 2 * scale)
                found.append(self._tile_pass(img, scale, nxt))
                boxes = found[-1][0][nms(found[-1][0], found[-1][2], self.nms_threshold)]
                scale, nothing = nxt, False
        if first.size == 0 and max(H, W) * s1 >= 4 * RELIABLE_NET_FACE:
            # nothing at the first scale: a face may be too large for SCRFD there (see the module note)
            found.append(self._detect_window(img, s1 / 2))
        boxes, kps, scores = (np.concatenate(z) for z in zip(*found, strict=True))
        if scores.size == 0:
            return Detections.empty()
        keep = nms(boxes, scores, self.nms_threshold)
        return Detections(
            torch.from_numpy(np.ascontiguousarray(boxes[keep], np.float32)),
            torch.from_numpy(np.ascontiguousarray(kps[keep], np.float32)),
            torch.from_numpy(np.ascontiguousarray(scores[keep], np.float32)),
        )

    def detect(self, images: ImageInput) -> list[Detections]:
        """Detect faces in each image; an image without a face gives an empty :class:`Detections`.

        Raises:
            InputError: when an image is not an RGB float tensor in [0, 1].
            DetectionError: when onnxruntime fails.
        """
        return [self._detect_one(im) for im in _as_list(images)]
