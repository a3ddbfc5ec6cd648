"""Protecting whole photos: detect every face, align, cloak, paste back at full resolution, and report.

This is what ``nullswap protect`` and :func:`nullswap.protect` run. Pixels outside the faces' feathered masks are
untouched (the paste-back adds only the protector's change, "delta" mode), so a photo with no detectable face comes
back unchanged.
"""

from __future__ import annotations

import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from nullswap.checks import check_image_batch
from nullswap.errors import InputError, NullswapError, WeightsNotFoundError
from nullswap.faces.alignment import align_faces
from nullswap.faces.detection import FaceDetector, create_detector
from nullswap.faces.io import LoadedImage, read_image, to_uint8
from nullswap.faces.pasteback import paste_back

log = logging.getLogger(__name__)

METHODS = ("nullswap", "pgd", "fgsm", "idguard", "ars", "retentive")
STRENGTHS = ("low", "mid", "high")


@dataclass
class FaceResult:
    """One protected face: its box and landmarks in the photo, and its report (if asked)."""

    box: list[float]
    landmarks: list[list[float]]
    score: float
    report: dict[str, Any] | None = None


@dataclass
class ProtectedImage:
    """A protected photo.

    Attributes:
        image: ``(3,H,W)`` RGB float in [0,1] at the photo's full resolution.
        faces: one :class:`FaceResult` per detected face.
        source: the input's :class:`LoadedImage` (metadata for writing), ``None`` for tensor input.
        method: protector used; settings: its settings.
        report: per-photo report dict (``None`` unless asked).
    """

    image: torch.Tensor
    faces: list[FaceResult]
    source: LoadedImage | None
    method: str
    settings: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] | None = None

    def save(self, path: str | os.PathLike[str], *, strip_gps: bool = False, overwrite: bool = False) -> Path:
        """Write the photo keeping the source's format metadata (ICC, EXIF, alpha); never overwrites by default."""
        from nullswap.faces.io import write_image

        return write_image(path, self.image, like=self.source, strip_gps=strip_gps, overwrite=overwrite)


def packaged_checkpoint() -> Path | None:
    """The NullSwap checkpoint shipped inside the package (``nullswap/assets/nullswap-default``), if installed."""
    folder = Path(__file__).resolve().parent / "assets" / "nullswap-default"
    return folder if (folder / "model.safetensors").is_file() else None


def default_method() -> str:
    """The method ``auto`` picks.

    ``"nullswap"`` when the packaged checkpoint is installed *and* its model card marks it as protecting
    (``meta.default_ok`` in its ``config.json``), else ``"pgd"``.

    Choice: a shipped model that measurably does not push faces below the recognizers' thresholds (see
    MODEL_CARD.md) must not silently replace the method that does; it stays available as ``--method nullswap``.
    """
    folder = packaged_checkpoint()
    if folder is None:
        return "pgd"
    try:
        meta = json.loads((folder / "config.json").read_text()).get("meta", {})
    except (OSError, ValueError):
        return "pgd"
    return "nullswap" if meta.get("default_ok") is True else "pgd"


def jpeg_roundtrip(image: torch.Tensor, quality: int = 75) -> torch.Tensor:
    """``(3,H,W)`` image through a real JPEG encode/decode (Pillow, 4:2:0 as most sharing sites re-encode)."""
    buf = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    arr = torch.from_numpy(np.asarray(Image.open(buf).convert("RGB")).copy()).permute(2, 0, 1)
    return arr.float().div(255.0).to(image.device)


class PhotoProtector:
    """Protects photos with one protector; the models are built once and reused for every photo.

    Args:
        method: a protector name (:data:`METHODS`; ``"auto"``: nullswap when its checkpoint is present, else pgd).
        checkpoint: a NullSwap (or other trained protector) checkpoint folder; default: the packaged one.
        strength: ``low`` / ``mid`` / ``high`` (see each protector's documented mapping).
        recognizers: recognizers the per-image optimisers (pgd, fgsm) attack; default: their own defaults.
        report_recognizers: recognizers measured in the report; default: every offline recognizer whose weights are
            present and that has an LFW-calibrated threshold.
        detector: ``mtcnn`` or ``yunet``.
        device: ``cpu`` / ``cuda``; default: CUDA when available.
        seed: makes stochastic protectors repeatable.
        batch_size: faces per protector call.
    """

    def __init__(
        self,
        method: str = "auto",
        *,
        checkpoint: str | os.PathLike[str] | None = None,
        strength: str = "mid",
        recognizers: list[str] | None = None,
        report_recognizers: list[str] | None = None,
        detector: str | FaceDetector = "mtcnn",
        device: str | torch.device | None = None,
        seed: int | None = None,
        batch_size: int = 8,
    ) -> None:
        from nullswap.protectors import create_protector

        if strength not in STRENGTHS:
            raise InputError(f"strength: expected one of {STRENGTHS}, got {strength!r}")
        self.method = default_method() if method == "auto" else method
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        kwargs: dict[str, Any] = {"strength": strength, "device": self.device}
        if checkpoint is not None:
            kwargs["checkpoint"] = str(checkpoint)
        if recognizers:
            kwargs["recognizers"] = list(recognizers)
        self.protector = create_protector(self.method, **kwargs)
        self.protector.eval()
        self.template = self.protector.template
        self.detector = create_detector(detector) if isinstance(detector, str) else detector
        self.seed = seed
        self.batch_size = batch_size
        self.settings = {"method": self.method, "strength": strength, "checkpoint": str(checkpoint or "default"),
                         "recognizers": recognizers, "seed": seed, "detector": self.detector.name}
        self._report_names = report_recognizers
        self._report_models: dict[str, torch.nn.Module] | None = None

    def _report_recognizers(self) -> dict[str, torch.nn.Module]:
        if self._report_models is None:
            from nullswap.recognizers import create_recognizer
            from nullswap.recognizers.thresholds import verification_thresholds

            names = self._report_names or list(verification_thresholds())
            models: dict[str, torch.nn.Module] = {}
            for n in names:
                try:
                    models[n] = create_recognizer(n, device=self.device)
                except WeightsNotFoundError as e:
                    if self._report_names:
                        raise
                    log.info("report: %s skipped (%s)", n, e)
            self._report_models = models
        return self._report_models

    def protect_tensor(self, image: torch.Tensor, *, report: bool = False) -> ProtectedImage:
        """Protect a ``(3,H,W)`` RGB image in [0,1]."""
        img = check_image_batch(image.unsqueeze(0) if image.ndim == 3 else image, "photo")
        if img.shape[0] != 1:
            raise InputError(f"photo: expected one image (3,H,W), got a batch of {img.shape[0]}")
        img = img[0].to(self.device)
        det = self.detector.detect(img.cpu())[0]
        if len(det) == 0:
            log.info("no face found")
            return ProtectedImage(img.cpu(), [], None, self.method, dict(self.settings),
                                  {"faces": [], "note": "no face found: the photo is unchanged"} if report else None)
        lms = det.landmarks.to(self.device)
        crops, M = align_faces(img, lms, self.template)
        gen = torch.Generator(device=self.device).manual_seed(self.seed) if self.seed is not None else None
        outs = []
        with torch.no_grad():
            for i in range(0, crops.shape[0], self.batch_size):
                outs.append(self.protector.protect(crops[i : i + self.batch_size], generator=gen))
        protected = torch.cat(outs).clamp(0, 1)
        result = paste_back(img, protected, M, self.template, original_crops=crops)
        faces = [FaceResult(b, lm, s) for b, lm, s in
                 zip(det.boxes.tolist(), det.landmarks.tolist(), det.scores.tolist(), strict=True)]
        rep = None
        if report:
            rep = self.report(img, result, lms, faces)
        return ProtectedImage(result.cpu(), faces, None, self.method, dict(self.settings), rep)

    def protect_file(self, path: str | os.PathLike[str], *, report: bool = False) -> ProtectedImage:
        """Read, protect and return a photo (metadata kept for :meth:`ProtectedImage.save`)."""
        loaded = read_image(path)
        out = self.protect_tensor(loaded.tensor, report=report)
        out.source = loaded
        if out.report is not None:
            out.report["source"] = str(path)
        return out

    @torch.no_grad()
    def report(self, clean: torch.Tensor, protected: torch.Tensor, landmarks: torch.Tensor,
               faces: list[FaceResult]) -> dict[str, Any]:
        """The per-photo report.

        Per face and recognizer: cosine(clean, protected), whether it is below the LFW threshold, face PSNR/SSIM; the
        same after a JPEG q75 re-compression of the whole protected photo (as a sharing site would).
        """
        from nullswap.metrics.quality import psnr, ssim
        from nullswap.recognizers.thresholds import verification_thresholds

        thresholds = verification_thresholds()
        recs = self._report_recognizers()
        jpeg = jpeg_roundtrip(protected, 75)
        c_crops, _ = align_faces(clean, landmarks, self.template)
        variants = {"protected": protected, "jpeg75": jpeg}
        per_face: list[dict[str, Any]] = [{"index": i, "box": f.box, "score": f.score} for i, f in enumerate(faces)]
        for vname, vimg in variants.items():
            p_crops, _ = align_faces(vimg, landmarks, self.template)
            ps, ss = psnr(p_crops, c_crops), ssim(p_crops, c_crops)
            for i, entry in enumerate(per_face):
                entry.setdefault(vname, {})["psnr"] = float(ps[i])
                entry[vname]["ssim"] = float(ss[i])
                entry[vname]["recognizers"] = {}
            for name, rec in recs.items():
                a, _ = align_faces(clean, landmarks, rec.template)
                b, _ = align_faces(vimg, landmarks, rec.template)
                cos = (rec(a) * rec(b)).sum(1)
                thr = thresholds.get(name)
                for i, entry in enumerate(per_face):
                    entry[vname]["recognizers"][name] = {
                        "cosine": float(cos[i]),
                        "threshold": thr,
                        "below_threshold": None if thr is None else bool(float(cos[i]) < thr),
                    }
        return {"settings": dict(self.settings), "thresholds": {n: thresholds.get(n) for n in recs},
                "faces": per_face}


def protect(
    image_or_path: torch.Tensor | str | os.PathLike[str],
    method: str = "auto",
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    strength: str = "mid",
    recognizers: list[str] | None = None,
    report: bool = False,
    seed: int | None = None,
    device: str | None = None,
) -> ProtectedImage:
    """Protect one photo (a path or a ``(3,H,W)`` RGB tensor in [0,1]) and return a :class:`ProtectedImage`.

    Builds the models on every call; to protect many photos create one :class:`PhotoProtector` instead.

    Raises:
        ImageReadError: the file cannot be read as an image.
        InputError: bad arguments or tensor.
        WeightsNotFoundError: the method's weights are missing.
    """
    p = PhotoProtector(method, checkpoint=checkpoint, strength=strength, recognizers=recognizers, seed=seed,
                       device=device)
    if isinstance(image_or_path, torch.Tensor):
        return p.protect_tensor(image_or_path, report=report)
    return p.protect_file(image_or_path, report=report)


__all__ = ["METHODS", "STRENGTHS", "FaceResult", "NullswapError", "PhotoProtector", "ProtectedImage",
           "default_method", "jpeg_roundtrip", "packaged_checkpoint", "protect"]
