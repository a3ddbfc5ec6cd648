"""Face detection behind one interface: boxes, 5 landmarks and scores for every face, batched.

Detectors:
    * ``mtcnn`` (default): MTCNN, Zhang et al., "Joint Face Detection and Alignment using Multi-task Cascaded
      Convolutional Networks", IEEE SPL 2016. The P/R/O-Nets are written here; their weights are facenet-pytorch's
      conversion of the original Caffe models, fetched from the PyPI wheel through the weight hub.
    * ``yunet``: YuNet (Wu et al., 2023) run by OpenCV's ``cv2.FaceDetectorYN``.
    * ``scrfd``: SCRFD-500M with 5 keypoints (Guo et al., ICLR 2022; InsightFace), run by onnxruntime on a copy
      downscaled to a 640-pixel long side, with a tiled small-face pass (:mod:`nullswap.faces.scrfd`).

Landmark order (image coordinates): left eye, right eye, nose tip, left mouth corner, right mouth corner.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nullswap.checks import check_image_batch
from nullswap.errors import DetectionError, InputError
from nullswap.registry import Registry, check_keywords

log = logging.getLogger(__name__)


@dataclass
class Detections:
    """Faces found in one image.

    Attributes:
        boxes: ``(N, 4)`` float boxes ``x1, y1, x2, y2`` in pixels.
        landmarks: ``(N, 5, 2)`` landmarks in pixels.
        scores: ``(N,)`` confidences in [0, 1].
    """

    boxes: torch.Tensor
    landmarks: torch.Tensor
    scores: torch.Tensor

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @staticmethod
    def empty() -> Detections:
        """A result with no face."""
        return Detections(torch.zeros(0, 4), torch.zeros(0, 5, 2), torch.zeros(0))

    def select(self, idx: torch.Tensor) -> Detections:
        """The subset at ``idx``."""
        return Detections(self.boxes[idx], self.landmarks[idx], self.scores[idx])


ImageInput = torch.Tensor | list[torch.Tensor]


def _as_list(images: ImageInput) -> list[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        if images.ndim == 3:
            images = images.unsqueeze(0)
        check_image_batch(images, "images")
        return list(images)
    if not isinstance(images, (list, tuple)):
        raise InputError(
            f"images: expected a (B,3,H,W) tensor or a list of (3,H,W) tensors, got {type(images).__name__}"
        )
    out = []
    for i, im in enumerate(images):
        if not isinstance(im, torch.Tensor):
            raise InputError(f"images[{i}]: expected a (3,H,W) torch.Tensor, got {type(im).__name__}")
        check_image_batch(im.unsqueeze(0) if im.ndim == 3 else im, f"images[{i}]")
        out.append(im if im.ndim == 3 else im[0])
    return out


class FaceDetector:
    """Interface: ``detect(images) -> list[Detections]``, one entry per image (empty when no face)."""

    name: str = "detector"

    def detect(self, images: ImageInput) -> list[Detections]:
        """Detect faces in RGB float images in [0, 1]: a ``(B,3,H,W)`` batch, a ``(3,H,W)`` image or a list of them."""
        raise NotImplementedError

    def to(self, device: str | torch.device) -> FaceDetector:
        """Move to a device (no-op for CPU-only detectors)."""
        return self


# ----------------------------------------------------------------------------------------------------- MTCNN nets
class PNet(nn.Module):
    """MTCNN proposal network (fully convolutional, 12x12 receptive field)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (box regression (B,4,h,w), face probability (B,h,w))."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), F.softmax(self.conv4_1(x), dim=1)[:, 1]


def _flatten_whc(x: torch.Tensor) -> torch.Tensor:
    # the converted Caffe dense weights expect features flattened in (W, H, C) order
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


class RNet(nn.Module):
    """MTCNN refinement network (24x24 input)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (box regression (N,4), face probability (N,))."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu4(self.dense4(_flatten_whc(self.prelu3(self.conv3(x)))))
        return self.dense5_2(x), F.softmax(self.dense5_1(x), dim=1)[:, 1]


class ONet(nn.Module):
    """MTCNN output network (48x48 input): box, probability and 5 landmarks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (box regression (N,4), landmarks (N,10: 5 x then 5 y, box-relative), probability (N,))."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.dense5(_flatten_whc(self.prelu4(self.conv4(x)))))
        return self.dense6_2(x), self.dense6_3(x), F.softmax(self.dense6_1(x), dim=1)[:, 1]


def _load_net(net: nn.Module, spec_name: str, weights_dir: str | None) -> nn.Module:
    from nullswap.hub import fetch

    path = fetch(spec_name, weights_dir=weights_dir)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict(sd, strict=True)
    return net.eval()


def _square(boxes: torch.Tensor) -> torch.Tensor:
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    x1 = boxes[:, 0] + w * 0.5 - side * 0.5
    y1 = boxes[:, 1] + h * 0.5 - side * 0.5
    return torch.stack([x1, y1, x1 + side, y1 + side], 1)


def _regress(boxes: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    return boxes + reg * torch.stack([w, h, w, h], 1)


class MTCNNDetector(FaceDetector):
    """MTCNN three-stage cascade (Zhang et al. 2016), batched over images.

    Args:
        min_face_size: smallest face side in pixels searched for.
        thresholds: P/R/O-Net probability thresholds (paper defaults 0.6, 0.7, 0.7).
        factor: image-pyramid scale factor (0.709).
        min_score: final score below which faces are dropped.
        weights_dir: folder searched first for ``pnet.pt``, ``rnet.pt``, ``onet.pt``.
        pretrained: load the real weights (``False`` only for tests of the plumbing).
    """

    name = "mtcnn"

    def __init__(
        self,
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        min_score: float = 0.9,
        weights_dir: str | None = None,
        pretrained: bool = True,
        device: str | torch.device = "cpu",
    ) -> None:
        self.min_face_size = min_face_size
        self.thresholds = thresholds
        self.factor = factor
        self.min_score = min_score
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        if pretrained:
            for net, spec in ((self.pnet, "mtcnn-pnet"), (self.rnet, "mtcnn-rnet"), (self.onet, "mtcnn-onet")):
                _load_net(net, spec, weights_dir)
        self.device = torch.device(device)
        self.to(self.device)

    def to(self, device: str | torch.device) -> MTCNNDetector:
        """Move the three nets."""
        self.device = torch.device(device)
        for net in (self.pnet, self.rnet, self.onet):
            net.to(self.device).eval()
        return self

    @torch.inference_mode()
    def _detect_one(self, img: torch.Tensor) -> Detections:
        # img: (3,H,W) in [0,1]
        from torchvision.ops import batched_nms, nms  # lazy: only MTCNN needs torchvision (~170 MiB, 1 s to import)

        x = (img.to(self.device).float() * 255.0 - 127.5) * 0.0078125
        H, W = x.shape[-2:]
        m = 12.0 / self.min_face_size
        minl = min(H, W) * m
        scales = []
        while minl >= 12:
            scales.append(m)
            m *= self.factor
            minl *= self.factor
        # stage 1: P-Net over the pyramid
        cands = []
        for s in scales:
            hs, ws = int(H * s + 1), int(W * s + 1)
            xs = F.interpolate(x[None], size=(hs, ws), mode="area")
            reg, prob = self.pnet(xs)
            mask = prob[0] >= self.thresholds[0]
            if not mask.any():
                continue
            yy, xx = mask.nonzero(as_tuple=True)
            score = prob[0][yy, xx]
            r = reg[0][:, yy, xx].T
            pos = torch.stack([xx, yy], 1).float()
            q1 = torch.floor((2 * pos + 1) / s)
            q2 = torch.floor((2 * pos + 12) / s)
            b = torch.cat([q1, q2], 1)
            keep = nms(b, score, 0.5)
            cands.append(torch.cat([b[keep], score[keep, None], r[keep]], 1))
        if not cands:
            return Detections.empty()
        c = torch.cat(cands)
        keep = nms(c[:, :4], c[:, 4], 0.7)
        c = c[keep]
        boxes = _square(_regress(c[:, :4], c[:, 5:9]))
        # stage 2: R-Net on 24x24 patches
        boxes = self._refine(x, boxes, 24, self.rnet, self.thresholds[1])
        if boxes is None:
            return Detections.empty()
        boxes, score, reg = boxes
        keep = nms(boxes, score, 0.7)
        boxes = _square(_regress(boxes[keep], reg[keep]))
        # stage 3: O-Net on 48x48 patches
        out = self._refine(x, boxes, 48, self.onet, self.thresholds[2], landmarks=True)
        if out is None:
            return Detections.empty()
        boxes, score, reg, pts = out
        w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        lx = w * pts[:, :5] + boxes[:, 0:1] - 1
        ly = h * pts[:, 5:] + boxes[:, 1:2] - 1
        boxes = _regress(boxes, reg)
        keep = batched_nms(boxes, score, torch.zeros_like(score, dtype=torch.long), 0.7)
        # O-Net's last NMS in the reference uses the "min" overlap; IoU NMS differs only for nested boxes, so
        # additionally drop boxes mostly contained in a higher-scoring one.
        keep = self._suppress_nested(boxes, score, keep)
        lm = torch.stack([lx, ly], -1)[keep]
        det = Detections(boxes[keep].cpu(), lm.cpu(), score[keep].cpu())
        return det.select(torch.nonzero(det.scores >= self.min_score).flatten())

    @staticmethod
    def _suppress_nested(boxes: torch.Tensor, score: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b = boxes[keep]
        area = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
        order = torch.argsort(score[keep], descending=True)
        kept: list[int] = []
        for i in order.tolist():
            ok = True
            for j in kept:
                ix = (torch.minimum(b[i, 2], b[j, 2]) - torch.maximum(b[i, 0], b[j, 0]) + 1).clamp(min=0)
                iy = (torch.minimum(b[i, 3], b[j, 3]) - torch.maximum(b[i, 1], b[j, 1]) + 1).clamp(min=0)
                if float(ix * iy / torch.minimum(area[i], area[j])) > 0.7:
                    ok = False
                    break
            if ok:
                kept.append(i)
        return keep[torch.tensor(kept, dtype=torch.long)] if kept else keep[:0]

    def _refine(self, x, boxes, size, net, thr, landmarks=False):
        if boxes.shape[0] == 0:
            return None
        boxes = boxes.trunc()  # the reference cascade crops at integer pixel boxes
        # The cascade's boxes are 1-based (MATLAB heritage): box (x1, y1, x2, y2) covers 0-based pixels x1-1 .. x2-1,
        # i.e. pixel edges [x1-1, x2]. roi_align with adaptive sampling averages like area resampling; parts outside
        # the image read as 0, as the reference's zero padding does.
        from torchvision.ops import roi_align

        rois = torch.cat([torch.zeros(len(boxes), 1, device=x.device), boxes[:, :2] - 1, boxes[:, 2:]], 1)
        patches = roi_align(x[None], rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=0, aligned=False)
        outs = net(patches)
        prob = outs[-1]
        mask = prob > thr
        if not mask.any():
            return None
        res = (boxes[mask], prob[mask], outs[0][mask])
        return res + (outs[1][mask],) if landmarks else res

    def detect(self, images: ImageInput) -> list[Detections]:
        """Detect faces in each image; an image without a face gives an empty :class:`Detections`."""
        try:
            return [self._detect_one(im) for im in _as_list(images)]
        except RuntimeError as e:  # pragma: no cover - device/out-of-memory failures
            raise DetectionError(f"MTCNN failed: {e}") from e


class YuNetDetector(FaceDetector):
    """YuNet through ``cv2.FaceDetectorYN`` (CPU).

    Args:
        score_threshold: minimum face confidence.
        nms_threshold: NMS IoU.
        weights_dir: folder searched first for the ONNX file.
    """

    name = "yunet"

    def __init__(self, score_threshold: float = 0.8, nms_threshold: float = 0.3, weights_dir: str | None = None,
                 **_: object) -> None:
        import cv2

        from nullswap.hub import fetch

        self._path = str(fetch("yunet", weights_dir=weights_dir))
        self._cv2 = cv2
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self._det = cv2.FaceDetectorYN.create(self._path, "", (320, 320), score_threshold, nms_threshold, 5000)

    def _detect_one(self, img: torch.Tensor) -> Detections:
        arr = (img.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        bgr = np.ascontiguousarray(arr[:, :, ::-1])
        h, w = bgr.shape[:2]
        self._det.setInputSize((w, h))
        _, faces = self._det.detect(bgr)
        if faces is None or len(faces) == 0:
            return Detections.empty()
        f = torch.from_numpy(np.asarray(faces, dtype=np.float32))
        boxes = torch.stack([f[:, 0], f[:, 1], f[:, 0] + f[:, 2], f[:, 1] + f[:, 3]], 1)
        lm = f[:, 4:14].reshape(-1, 5, 2)
        return Detections(boxes, lm, f[:, 14])

    def detect(self, images: ImageInput) -> list[Detections]:
        """Detect faces in each image; an image without a face gives an empty :class:`Detections`."""
        return [self._detect_one(im) for im in _as_list(images)]


def _scrfd(**kwargs: object) -> FaceDetector:
    from nullswap.faces.scrfd import SCRFDDetector  # imports onnxruntime: only when asked for

    check_keywords("face detector", "scrfd", SCRFDDetector, kwargs)
    return SCRFDDetector(**kwargs)  # type: ignore[arg-type]


#: Face detector factories by name.
DETECTORS: Registry[Callable[..., FaceDetector]] = Registry("face detector")
DETECTORS.register("mtcnn", MTCNNDetector)
DETECTORS.register("yunet", YuNetDetector)
DETECTORS.register("scrfd", _scrfd)


def list_detectors() -> list[str]:
    """Registered detector names."""
    return DETECTORS.names()


def create_detector(name: str = "mtcnn", **kwargs: object) -> FaceDetector:
    """Build a detector by name (``"mtcnn"``, ``"yunet"`` or ``"scrfd"``); keyword arguments go to its constructor.

    Raises:
        UnknownModelError: for an unknown name, listing the known ones.
        InputError: a keyword argument the detector does not take, naming the accepted ones.
    """
    factory = DETECTORS.get(name)
    check_keywords("face detector", name, factory, kwargs)
    return factory(**kwargs)
