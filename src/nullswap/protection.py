"""Protecting whole photos: detect every face, align, cloak, paste back at full resolution, verify, and report.

This is what ``nullswap protect`` and :func:`nullswap.protect` run. Pixels outside the faces' feathered masks are
untouched (the paste-back adds only the protector's change, "delta" mode), so a photo with no detectable face comes
back unchanged.

After the paste-back every face is *verified* (:mod:`nullswap.verdict`): a verification set of recognizers compares
the protected face with the clean one, and the face is ``protected``, ``partial`` or ``weak``. With
``until_protected`` a ``weak`` face is cloaked again at the next strength (low -> mid -> high).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nullswap.checks import check_image_batch
from nullswap.errors import InputError, NullswapError, WeightsError, WeightsNotFoundError
from nullswap.faces.alignment import align_faces, alignment_matrices
from nullswap.faces.detection import Detections, FaceDetector, create_detector
from nullswap.faces.io import LoadedImage, jpeg_roundtrip, read_image
from nullswap.faces.pasteback import FacePatch, apply_patches, face_patches, face_region
from nullswap.faces.templates import get_template
from nullswap.threads import worker_pool
from nullswap.verdict import FaceVerdict, Verifier, VerifyCache, choose_verifiers, optimised_recognizers, worst_outcome
from nullswap.written import (
    EncodedPhoto,
    decode_region,
    encode_patched,
    save_encoded,
    written_pixels,
    written_region,
)

log = logging.getLogger(__name__)

METHODS = ("nullswap", "pgd", "fgsm", "idguard", "ars", "retentive")
STRENGTHS = ("low", "mid", "high")

#: ``config.json`` ``format`` of each trainable protector's checkpoint -> protector name.
CHECKPOINT_FORMATS: dict[str, str] = {"nullswap-generator": "nullswap", "idguard-generator": "idguard",
                                      "ars-generator": "ars", "retentive-generator": "retentive"}

#: Methods that optimise each photo and take no checkpoint.
PER_IMAGE_METHODS = ("pgd", "fgsm")

#: The face detector ``nullswap protect`` uses unless told otherwise (``mtcnn`` and ``yunet`` stay selectable).
DEFAULT_DETECTOR = "scrfd"

#: Stages of :attr:`PhotoProtector.timings` (seconds of the last photo; ``decode`` runs on a worker thread).
#: ``written``: the pixels the output file gives back, for the verdict (a JPEG's encode, kept for the save, and a
#: decode: :mod:`nullswap.written`); ``verify`` excludes it.
STAGES = ("decode", "preview", "detect", "align", "cloak", "paste", "verify", "written")


def physical_cores() -> int:
    """Physical CPU cores this process may run on (hyper-threads counted once); at least 1.

    Read from ``/sys/devices/system/cpu/cpuN/topology`` (Linux); elsewhere ``os.cpu_count()``.
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
    cores: set[str] = set()
    for c in cpus:
        try:
            cores.add(Path(f"/sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list").read_text().strip())
        except OSError:
            cores.add(str(c))
    return max(1, len(cores))


@dataclass
class FaceResult:
    """One protected face: its box and landmarks in the photo, its verdict and its report (if asked)."""

    box: list[float]
    landmarks: list[list[float]]
    score: float
    report: dict[str, Any] | None = None
    verdict: FaceVerdict | None = None


class ProtectedImage:
    """A protected photo.

    Attributes:
        image: ``(3,H,W)`` RGB float in [0,1] at the photo's full resolution. Built on first read when the photo
            came from a file (:meth:`PhotoProtector.protect_file` keeps the clean photo as the source's 8-bit
            pixels, ``image`` passed in is then ``None``).
        faces: one :class:`FaceResult` per detected face.
        source: the input's :class:`LoadedImage` (metadata for writing), ``None`` for tensor input.
        method: protector used; settings: its settings.
        report: per-photo report dict (``None`` unless asked).
        patches: with ``patches``, ``image`` passed in is the *clean* photo and the protected one is it with the
            faces' windows (:class:`~nullswap.faces.pasteback.FacePatch`) applied: built on the first read of
            :attr:`image` (one full-size copy), never by :meth:`save`, so protecting and writing a photo holds one
            float copy of it.
    """

    def __init__(self, image: torch.Tensor | None, faces: list[FaceResult], source: LoadedImage | None, method: str,
                 settings: dict[str, Any] | None = None, report: dict[str, Any] | None = None, *,
                 patches: list[FacePatch] | None = None) -> None:
        self._image = image
        self.faces = faces
        self.source = source
        self.method = method
        self.settings = settings if settings is not None else {}
        self.report = report
        self.patches = patches or None
        #: the output file's bytes, encoded for the verdict (:mod:`nullswap.written`); :meth:`save` writes them
        self.encoded: EncodedPhoto | None = None

    @property
    def image(self) -> torch.Tensor:
        """``(3,H,W)`` the protected photo (built from the clean one and the patches on first read)."""
        if self._image is None:  # the clean photo is the source's 8-bit pixels: one float copy, patched in place
            if self.source is None:
                raise InputError("ProtectedImage: expected an image or a source, got neither")
            self._image = apply_patches(self.source.float_copy(), self.patches or [])
            self.patches = None
        if self.patches is not None:
            self._image = apply_patches(self._image.clone(), self.patches)
            self.patches = None
        return self._image

    @image.setter
    def image(self, value: torch.Tensor) -> None:
        self._image, self.patches, self.encoded = value, None, None

    def __repr__(self) -> str:
        size = tuple(self._image.shape) if self._image is not None else (3, *self.source.size) if self.source else ()
        return (f"ProtectedImage(size={size}, faces={len(self.faces)}, method={self.method!r}, "
                f"status={self.status!r})")

    @property
    def status(self) -> str:
        """The photo's status: ``no-face``, ``unverified`` (verification off), or its worst face's outcome.

        Outcomes rank ``weak`` < ``partial`` < ``protected``.
        """
        if not self.faces:
            return "no-face"
        worst = worst_outcome(f.verdict.outcome for f in self.faces if f.verdict is not None)
        return worst if worst is not None and all(f.verdict is not None for f in self.faces) else "unverified"

    def save(self, path: str | os.PathLike[str], *, strip_gps: bool = True, overwrite: bool = False) -> Path:
        """Write the photo keeping the source's format metadata (ICC, EXIF, alpha); never overwrites by default.

        Args:
            path: destination.
            strip_gps: drop the EXIF GPS block (default: a privacy tool does not pass the location on).
            overwrite: allow replacing an existing file.
        """
        from nullswap.faces.io import output_format, write_image

        # what the file keeps of the source (JPEG: copied blocks, sizes; greyscale, fallbacks): nullswap.faces.io
        written: dict[str, Any] = {}
        enc = self.encoded
        if enc is not None and enc.strip_gps == strip_gps and output_format(path, self.source) == enc.format:
            out = save_encoded(path, enc, overwrite=overwrite, record=written)  # the bytes the verdict was made on
        elif self.patches is not None and self.source is not None and (self._image is None
                                                                       or self.source.holds(self._image)):
            out = self._save_patched(path, strip_gps, overwrite, written)
        else:
            out = write_image(path, self.image, like=self.source, strip_gps=strip_gps, overwrite=overwrite,
                              record=written)
        if self.report is not None:
            self.report["output"] = written
        return out

    def _save_patched(self, path: str | os.PathLike[str], strip_gps: bool, overwrite: bool,
                      written: dict[str, Any]) -> Path:
        """Write without a full-size copy.

        A JPEG output of a JPEG source is encoded from the blocks under the patches only
        (:func:`nullswap.written.encode_patched`, compared against the source's 8-bit decode: the bytes
        :func:`write_image` with ``original="decode"`` writes, without decoding the source). Otherwise the patches go
        into the source's pixels for the write, then come out.
        """
        from nullswap.faces.io import output_format, write_image

        base = self._image
        if self.source is not None and output_format(path, self.source) == "JPEG":
            enc = encode_patched(base, self.patches or [], self.source, strip_gps=strip_gps, compare="decode")
            if enc is not None:
                return save_encoded(path, enc, overwrite=overwrite, record=written)
        if base is None:  # the clean photo is the source's 8-bit pixels: a float copy for the write
            assert self.source is not None
            base = self.source.float_copy()
        saved = [base[:, p.box[1]:p.box[3], p.box[0]:p.box[2]].clone() for p in self.patches or []]
        try:
            apply_patches(base, self.patches or [])
            out = write_image(path, base, like=self.source, strip_gps=strip_gps, overwrite=overwrite, record=written,
                              original="decode")
        finally:
            for p, clean in zip(self.patches or [], saved, strict=True):
                base[:, p.box[1]:p.box[3], p.box[0]:p.box[2]] = clean
        return out


def packaged_checkpoint() -> Path | None:
    """The NullSwap checkpoint shipped inside the package (``nullswap/assets/nullswap-default``), if installed."""
    folder = Path(__file__).resolve().parent / "assets" / "nullswap-default"
    return folder if (folder / "model.safetensors").is_file() else None


def auto_recipe() -> dict[str, Any]:
    """What ``auto`` runs when no checkpoint is given: ``{"method": "nullswap" | "pgd", **protector options}``.

    The packaged model's ``config.json`` says when it may replace PGD (MODEL_CARD.md has the measurements):

    * ``meta.default_ok: true``: the one pass alone protects -> ``{"method": "nullswap"}``;
    * ``meta.auto: {"refine": K, "psnr_floor": dB, "refine_blur": sigma, "refine_chroma": c, "refine_masking": b,
      ...}``: the model *with* ``K`` refinement steps under a PSNR floor of ``dB`` (and, if given, the blurred copy
      in their objective, the factor on their colour part and contrast masking, see
      :class:`~nullswap.protectors.nullswap.NullSwapProtector`) protects -> ``{"method": "nullswap", "refine": K,
      "psnr_floor": dB, ...}`` with those keys (other keys, such as the evidence, are documentation);
    * neither, no packaged model or an unreadable config -> ``{"method": "pgd"}``.

    Choice: a shipped model that measurably does not push faces below the recognizers' thresholds (see
    MODEL_CARD.md) must not silently replace the method that does; it stays available as ``--method nullswap``.
    """
    folder = packaged_checkpoint()
    if folder is None:
        return {"method": "pgd"}
    try:
        meta = json.loads((folder / "config.json").read_text()).get("meta", {})
    except (OSError, ValueError, AttributeError):
        return {"method": "pgd"}
    auto = meta.get("auto") if isinstance(meta, dict) else None
    if isinstance(auto, dict):
        out: dict[str, Any] = {"method": "nullswap"}
        def number(key: str) -> float | None:  # malformed values (bools, strings) are ignored
            v = auto.get(key)
            return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

        refine, floor, blur = number("refine"), number("psnr_floor"), number("refine_blur")
        if isinstance(auto.get("refine"), int) and refine is not None and refine > 0:
            out["refine"] = int(refine)
        if floor is not None:
            out["psnr_floor"] = floor
        if "refine" in out and blur is not None and blur > 0:
            out["refine_blur"] = blur
        chroma = number("refine_chroma")
        if "refine" in out and chroma is not None and 0.0 <= chroma <= 1.0:
            out["refine_chroma"] = chroma
        if "refine" in out and auto.get("refine_masking") is True:
            out["refine_masking"] = True
        return out
    return {"method": "nullswap" if isinstance(meta, dict) and meta.get("default_ok") is True else "pgd"}


def default_method() -> str:
    """The method ``auto`` picks when no checkpoint is given (see :func:`auto_recipe`)."""
    return str(auto_recipe()["method"])


def checkpoint_method(checkpoint: str | os.PathLike[str]) -> str:
    """The protector a checkpoint holds, from its ``config.json`` ``format`` (:data:`CHECKPOINT_FORMATS`).

    Raises:
        WeightsNotFoundError: no ``config.json`` in the checkpoint folder.
        WeightsError: unreadable ``config.json`` or an unknown format.
    """
    p = Path(checkpoint)
    cfg = p if p.suffix == ".json" else (p.parent if p.is_file() else p) / "config.json"
    if not cfg.is_file():
        raise WeightsNotFoundError(f"checkpoint {str(p)!r}: expected a folder with config.json and "
                                   f"model.safetensors (a training run's export/), got no {str(cfg)!r}")
    try:
        fmt = json.loads(cfg.read_text()).get("format")
    except (OSError, ValueError, AttributeError) as e:
        raise WeightsError(f"checkpoint {str(cfg)!r}: expected a JSON object, got an unreadable file ({e})") from e
    if fmt not in CHECKPOINT_FORMATS:
        raise WeightsError(f"checkpoint {str(cfg)!r}: expected format one of {sorted(CHECKPOINT_FORMATS)}, "
                           f"got {fmt!r}")
    return CHECKPOINT_FORMATS[fmt]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """A usable torch device: ``None`` -> CUDA when available, else CPU.

    Raises:
        InputError: an unknown device, or ``cuda``/``mps`` without such a device (one-line message).
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"device: expected cpu, cuda or cuda:N, got {str(device)!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device: expected cpu or a CUDA GPU that torch can use, got {str(device)!r} but no "
                             f"CUDA GPU is available (torch {torch.__version__})")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device: expected cuda:0..cuda:{torch.cuda.device_count() - 1}, got {str(device)!r}")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise InputError(f"device: expected cpu or an available device, got {str(device)!r} (MPS unavailable)")
    elif dev.type != "cpu":
        raise InputError(f"device: expected cpu, cuda or cuda:N, got {str(device)!r}")
    return dev


class PhotoProtector:
    """Protects photos with one protector; the models are built once and reused for every photo.

    Everything the run needs (protector, detector, verifiers) is loaded here, so a missing weight or a bad device
    fails before the first photo.

    Args:
        method: a protector name (:data:`METHODS`); ``"auto"``: the checkpoint's own method when ``checkpoint`` is
            given, else :func:`default_method`.
        checkpoint: a NullSwap (or other trained protector) checkpoint folder; default: the packaged one.
        strength: ``low`` / ``mid`` / ``high`` (see each protector's documented mapping): the first strength tried.
        recognizers: recognizers the per-image optimisers (pgd, fgsm) attack, or the refinement steps of ``auto`` /
            ``nullswap`` with ``refine`` (default: the checkpoint's training recognizers); counted as seen by the
            verdict. Ignored (logged) for the one pass alone.
        report_recognizers: recognizers measured in the report; default: every offline recognizer whose weights are
            present and that has an LFW-calibrated threshold, plus the verifiers.
        detector: ``scrfd`` (default, :data:`DEFAULT_DETECTOR`: SCRFD-500M on a <= 640-px copy, which for a JPEG is
            decoded in Pillow's draft mode), ``mtcnn`` or ``yunet``, or a built :class:`FaceDetector`.
        device: ``cpu`` / ``cuda`` / ``cuda:N``; default: CUDA when available.
        seed: makes stochastic protectors repeatable.
        batch_size: faces per protector call.
        verify: score every face with the verification set (:mod:`nullswap.verdict`).
        verifiers: the verification set; default: :func:`nullswap.verdict.choose_verifiers`.
        until_protected: redo a ``weak`` face at the next strength, up to ``high``; default: on for ``auto``.
        refine: method ``nullswap`` only: ``K`` identity-targeted attack steps after the one pass, on the checkpoint's
            training recognizers (:class:`~nullswap.protectors.nullswap.NullSwapProtector`); 0: the one pass alone.
        strip_gps: whether the outputs will be saved without GPS (``--keep-gps``: ``False``; settable later as the
            ``strip_gps`` attribute): the JPEG encoded for the verdict is then the one the save writes as is.
        precision: method ``nullswap`` only: the generator's precision in PyTorch, ``fp32``, ``bf16`` or ``auto``
            (default: ``fp32``, measured faster on the shipped model; see
            :func:`nullswap.protectors.nullswap.inference.resolve_precision`). The verdict scores what is written.
        backend: method ``nullswap`` only: the one pass in ``torch``, ``ort`` (onnxruntime, float32: ``precision`` is
            then ignored) or ``auto`` (default: ``ort`` on the CPU when installed; outputs within 1e-4 of PyTorch's,
            faster, see :mod:`nullswap.protectors.nullswap.ort_generator`).

    Raises:
        InputError: bad strength, device or method/checkpoint combination.
        WeightsError: missing or corrupt weights (protector, detector, verifiers).
        UnknownModelError: unknown method, detector or recognizer.
    """

    def __init__(
        self,
        method: str = "auto",
        *,
        checkpoint: str | os.PathLike[str] | None = None,
        strength: str = "mid",
        recognizers: list[str] | None = None,
        report_recognizers: list[str] | None = None,
        detector: str | FaceDetector = DEFAULT_DETECTOR,
        device: str | torch.device | None = None,
        seed: int | None = None,
        batch_size: int = 8,
        verify: bool = True,
        verifiers: list[str] | None = None,
        until_protected: bool | None = None,
        refine: int = 0,
        strip_gps: bool = True,
        precision: str = "auto",
        backend: str = "auto",
    ) -> None:
        from nullswap.protectors import create_protector

        if strength not in STRENGTHS:
            raise InputError(f"strength: expected one of {STRENGTHS}, got {strength!r}")
        self.device = resolve_device(device)
        psnr_floor: float | None = None
        refine_blur = 0.0
        refine_shape: dict[str, Any] = {}  # refine_chroma / refine_masking of the packaged auto recipe
        if method == "auto" and checkpoint is None:
            recipe = auto_recipe()
            self.method = str(recipe["method"])
            if not refine:  # the packaged model's measured auto settings (an explicit --refine K wins)
                refine = int(recipe.get("refine", 0))
            psnr_floor = recipe.get("psnr_floor")
            refine_blur = float(recipe.get("refine_blur", 0.0)) if refine else 0.0
            if refine:
                refine_shape = {k: recipe[k] for k in ("refine_chroma", "refine_masking") if k in recipe}
        elif method == "auto":
            self.method = checkpoint_method(checkpoint)
        else:
            self.method = method
        if checkpoint is not None and self.method in PER_IMAGE_METHODS:
            raise InputError(f"checkpoint: expected no checkpoint with method {self.method!r} (it optimises each "
                             f"photo, it has no trained weights), got {str(checkpoint)!r}; leave --method out to use "
                             "the checkpoint's own method")
        if isinstance(refine, bool) or not isinstance(refine, int) or refine < 0:
            raise InputError(f"refine: expected an int >= 0 (attack steps), got {refine!r}")
        refine_recognizers: list[str] | None = None
        if recognizers and self.method == "nullswap" and refine:
            # the refinement steps attack these instead of the checkpoint's training recognizers (the one pass is the
            # trained generator either way); they count as seen in the verdict
            from nullswap.recognizers import list_recognizers

            unknown = [n for n in recognizers if n not in list_recognizers()]
            if unknown:
                raise InputError(f"recognizers: expected registered names ({', '.join(list_recognizers())}), got "
                                 f"{unknown}")
            refine_recognizers, recognizers = list(dict.fromkeys(recognizers)), None
        elif recognizers and self.method not in PER_IMAGE_METHODS:
            log.warning("recognizers %s ignored: only pgd/fgsm and the refinement steps (auto, nullswap --refine K) "
                        "take attack recognizers", recognizers)
            recognizers = None
        if refine and self.method != "nullswap":
            raise InputError(f"refine: expected method nullswap (one pass plus K attack steps), got method "
                             f"{self.method!r}")
        self.until_protected = (method == "auto") if until_protected is None else bool(until_protected)
        #: whether the outputs will drop GPS: the JPEG encoded for the verdict is the one :meth:`ProtectedImage.save`
        #: writes only when its ``strip_gps`` agrees (else the save encodes again)
        self.strip_gps = bool(strip_gps)
        self.strength = strength
        self._kwargs: dict[str, Any] = {"device": self.device}
        if checkpoint is not None:
            self._kwargs["checkpoint"] = str(checkpoint)
        if recognizers:
            self._kwargs["recognizers"] = list(recognizers)
        if refine:
            self._kwargs["refine"] = refine
        if refine_recognizers:
            self._kwargs["refine_recognizers"] = refine_recognizers
        if refine_blur:
            self._kwargs["refine_blur"] = refine_blur
        self._kwargs.update(refine_shape)
        if psnr_floor is not None:
            self._kwargs["psnr_floor"] = psnr_floor
        if self.method == "nullswap":
            self._kwargs["precision"] = precision
            self._kwargs["backend"] = backend
        self.protector = create_protector(self.method, strength=strength, **self._kwargs)
        self.protector.eval()
        self._protectors: dict[str, Any] = {strength: self.protector}
        self.template = self.protector.template
        self.detector = create_detector(detector) if isinstance(detector, str) else detector
        self.seed = seed
        self.batch_size = batch_size
        self._guard_log: dict[str, float] = {"floor_db": 0.0, "crops": 0, "rescaled": 0, "min_scale": 1.0}
        ckpt_for_meta = checkpoint if checkpoint is not None else (
            packaged_checkpoint() if self.method == "nullswap" else None)
        self.seen = optimised_recognizers(self.protector, ckpt_for_meta)
        if refine_recognizers:  # the generator's training recognizers and what the refinement attacks
            self.seen = list(dict.fromkeys([*(self.seen or []), *refine_recognizers]))
        self.verifier: Verifier | None = None
        if verify:
            names = choose_verifiers(self.seen, verifiers)
            # gradient steps (refinement, PGD, FGSM) need the pool's threads on one PyTorch thread; the one pass alone
            # measured faster without (nullswap.threads)
            steps = bool(refine) or self.method in PER_IMAGE_METHODS
            self.verifier = Verifier(names, self.seen, self.device, strict=bool(verifiers), one_torch_thread=steps)
        self.settings = {"method": self.method, "strength": strength, "checkpoint": str(checkpoint or "default"),
                         "recognizers": recognizers or refine_recognizers, "seed": seed, "detector": self.detector.name,
                         "verifiers": self.verifier.names if self.verifier else None,
                         "until_protected": self.until_protected}
        if refine:  # only when used, so manifests written without it still match
            self.settings["refine"] = refine
        if refine_blur:
            self.settings["refine_blur"] = refine_blur
        self.settings.update(refine_shape)
        if psnr_floor is not None:
            self.settings["psnr_floor"] = psnr_floor
        if getattr(self.protector, "precision", "fp32") != "fp32":  # recorded only when not the float32 default
            self.settings["precision"] = self.protector.precision
        if getattr(self.protector, "backend", "torch") != "torch":  # recorded only when not the PyTorch default
            self.settings["backend"] = self.protector.backend
        #: seconds per stage (:data:`STAGES`) of the last photo
        self.timings: dict[str, float] = {}
        #: progress of the cloak, per pass over a photo's faces: ``(faces done, faces in the pass, strength)``, called
        #: with 0 before the pass, after every protector call (``batch_size`` faces) and, for iterative protectors
        #: (PGD, ``refine``), after every attack step with a fractional count (the faces of one call advance together:
        #: 3.0 when 6 faces in one call are half-way through their steps); the library never prints.
        self.on_progress: Callable[[float, int, str], None] | None = None
        self._io: ThreadPoolExecutor | None = None
        self._pending: dict[Path, tuple[Future[Any], Future[Any]]] = {}
        self._report_names = report_recognizers
        self._report_models: dict[str, torch.nn.Module] | None = None

    # ------------------------------------------------------------------------------------------------- protectors
    def protector_at(self, strength: str) -> Any:
        """The protector at ``strength`` (built once; PGD/FGSM reuse the loaded recognizer ensemble)."""
        if strength not in self._protectors:
            from nullswap.protectors import create_protector

            kwargs = dict(self._kwargs)
            ens = getattr(self.protector, "ensemble", None)
            if ens is not None:
                kwargs["recognizers"] = ens
            p = create_protector(self.method, strength=strength, **kwargs)
            p.eval()
            self._protectors[strength] = p
        return self._protectors[strength]

    def _cloak(self, crops: torch.Tensor, strength: str, gen: torch.Generator | None) -> torch.Tensor:
        prot = self.protector_at(strength)
        outs = []
        n = int(crops.shape[0])
        self._progress(0, n, strength)
        with torch.no_grad():
            for i in range(0, n, self.batch_size):
                nb = min(self.batch_size, n - i)
                if self.on_progress is not None:  # iterative protectors move the bar per step, not per call
                    prot.on_step = lambda done, steps, i=i, nb=nb: self._progress(i + nb * done / steps, n, strength)
                try:
                    outs.append(prot.protect(crops[i: i + self.batch_size], generator=gen))
                finally:
                    prot.on_step = None
                self._progress(i + nb, n, strength)
                stats = getattr(prot, "guard_stats", None)  # NullSwap's inference PSNR-floor guard, if any
                if stats is not None and getattr(prot, "psnr_floor", None) is not None:
                    g = self._guard_log
                    g["floor_db"] = float(prot.psnr_floor)
                    g["crops"] += int(stats["crops"])
                    g["rescaled"] += int(stats["rescaled"])
                    g["min_scale"] = min(float(g["min_scale"]), float(stats["min_scale"]))
        return torch.cat(outs).clamp(0, 1)

    def _progress(self, done: float, total: int, strength: str) -> None:
        """Tell :attr:`on_progress` (if set) how many of this pass's faces are cloaked; never raises."""
        cb = self.on_progress
        if cb is None:
            return
        try:
            cb(done, total, strength)
        except Exception:  # noqa: BLE001 - a progress display must not stop the work
            log.debug("progress callback failed", exc_info=True)

    # ------------------------------------------------------------------------------------------------- reports
    def load_report_recognizers(self) -> dict[str, torch.nn.Module]:
        """Load (once) the recognizers the report measures; call before the work to fail early.

        Raises:
            WeightsNotFoundError: an explicitly requested report recognizer is missing.
        """
        if self._report_models is None:
            from nullswap.recognizers import create_recognizer
            from nullswap.verdict import calibrated_recognizers

            names = self._report_names or list(dict.fromkeys(
                calibrated_recognizers() + (self.verifier.names if self.verifier else [])))
            models: dict[str, torch.nn.Module] = {}
            for n in names:
                if self.verifier is not None and n in self.verifier.models:
                    models[n] = self.verifier.models[n]
                    continue
                try:
                    models[n] = create_recognizer(n, device=self.device)
                except WeightsNotFoundError as e:
                    if self._report_names:
                        raise
                    log.info("report: %s skipped (%s)", n, e)
            self._report_models = models
        return self._report_models

    # ------------------------------------------------------------------------------------------------- photos
    def protect_tensor(self, image: torch.Tensor, *, report: bool = False) -> ProtectedImage:
        """Protect a ``(3,H,W)`` RGB image in [0,1]; every face gets a verdict when verification is on."""
        self.timings = {}
        return self._protect(image, None, report)

    def _protect(self, image: torch.Tensor, det: Detections | None, report: bool,
                 source: LoadedImage | None = None) -> ProtectedImage:
        """Protect a photo; ``det``: its faces when already found (on a draft-mode copy), else detected here.

        Every face of the photo is cloaked in one batch (up to ``batch_size`` faces per protector call). The faces
        are verified on the pixels the output file gives back (``source``: the file's :class:`LoadedImage`, whose
        ``tensor`` is ``image``; ``None``: 8-bit rounding), see :mod:`nullswap.written`.
        """
        tm = self.timings
        self._encoded: EncodedPhoto | None = None
        cache = VerifyCache()  # this photo's clean embeddings, across the until-protected re-verifications
        # a float canvas of the source (protect_file): the photo only where filled, below (the faces' region)
        partial = source is not None and source.partial(image)
        img = check_image_batch(image.unsqueeze(0) if image.ndim == 3 else image, "photo", check_range=not partial)
        if img.shape[0] != 1:
            raise InputError(f"photo: expected one image (3,H,W), got a batch of {img.shape[0]}")
        img = img[0].to(self.device)
        if det is None:
            t = time.perf_counter()
            det = self.detector.detect(img.cpu())[0]
            tm["detect"] = tm.get("detect", 0.0) + time.perf_counter() - t
        if len(det) == 0:
            log.info("no face found")
            return ProtectedImage(None if partial else img.cpu(), [], None, self.method, dict(self.settings),
                                  {"faces": [], "note": "no face found: the photo is unchanged"} if report else None)
        lms = det.landmarks.to(self.device)
        t = time.perf_counter()
        if partial:
            assert source is not None
            source.fill(img, self._faces_region(lms, (int(img.shape[1]), int(img.shape[2]))))
        crops, M = align_faces(img, lms, self.template, check_range=not partial)
        self._guard_log = {"floor_db": 0.0, "crops": 0, "rescaled": 0, "min_scale": 1.0}
        t1 = time.perf_counter()
        gen = torch.Generator(device=self.device).manual_seed(self.seed) if self.seed is not None else None
        n = crops.shape[0]
        strengths = [self.strength] * n
        tried = [[self.strength] for _ in range(n)]
        protected = self._cloak(crops, self.strength, gen)
        t2 = time.perf_counter()
        patches = face_patches(img, protected, M, self.template, original_crops=crops,  # per face window
                               check_range=not partial)
        t3 = time.perf_counter()
        tm.update(align=t1 - t, cloak=t2 - t1, paste=t3 - t2)
        verdicts: list[FaceVerdict | None] = [None] * n
        if self.verifier is not None:
            verdicts = self._verify(img, patches, lms, M, strengths, source, cache)
            while self.until_protected:
                redo = [i for i, v in enumerate(verdicts)
                        if v is not None and v.outcome == "weak" and strengths[i] != STRENGTHS[-1]]
                if not redo:
                    break
                # each weak face goes one strength up per round, then is verified again: the next strength is read
                # before any face moves (a face moved low -> mid in this round is not also redone at high in it)
                nxt = {i: STRENGTHS[STRENGTHS.index(strengths[i]) + 1] for i in redo}
                for level in STRENGTHS[1:]:  # group the faces by their next strength
                    idx = [i for i in redo if nxt[i] == level]
                    if not idx:
                        continue
                    log.info("faces %s verified weak: redoing them at strength %s", [i + 1 for i in idx], level)
                    protected[idx] = self._cloak(crops[idx], level, gen)
                    for i in idx:
                        strengths[i] = level
                        tried[i].append(level)
                patches = face_patches(img, protected, M, self.template, original_crops=crops, check_range=not partial)
                verdicts = self._verify(img, patches, lms, M, strengths, source, cache)
            for v, t in zip(verdicts, tried, strict=True):
                if v is not None:
                    v.tried = t
            # with the redone faces' cloak and paste (until-protected); the written pixels apart
            tm["verify"] = time.perf_counter() - t3 - tm.get("written", 0.0)
        faces = [FaceResult(b, lm, s, verdict=v) for b, lm, s, v in
                 zip(det.boxes.tolist(), det.landmarks.tolist(), det.scores.tolist(), verdicts, strict=True)]
        rep = None
        patches = [FacePatch(p.box, p.pixels.cpu(), p.mask.cpu()) for p in patches]
        if report:  # the report measures the whole photo (its JPEG re-compression): one full-size copy
            if partial:
                assert source is not None
                img = source.float_copy().to(self.device)
            result = apply_patches(img.clone(), patches)
            on_disk = written_pixels(result, source)[0] if self._encoded is None else decode_region(self._encoded.data)
            rep = self.report(img, on_disk.to(img.device), lms, faces)  # what the written file holds
            if self._guard_log["crops"]:
                # the guard is applied at inference only: say how often it changed the model's raw output
                rep["psnr_guard"] = {**self._guard_log, "note": "crops whose change was scaled down to keep the "
                                     "crop PSNR >= floor_db (not part of the model's raw numbers)"}
            return ProtectedImage(result.cpu(), faces, None, self.method, dict(self.settings), rep)
        return ProtectedImage(None if partial else img.cpu(), faces, None, self.method, dict(self.settings), rep,
                              patches=patches)

    def _faces_region(self, lms: torch.Tensor, size: tuple[int, int]) -> tuple[int, int, int, int]:
        """The photo region ``(x0, y0, x1, y1)`` the faces' work reads.

        Every face's window for the protector's template and the verifiers'
        (:func:`~nullswap.faces.pasteback.face_region`), grown by 2 pixels (the bilinear taps of an alignment stay
        inside a window by construction; the margin covers rounding).
        """
        mats, sizes = [alignment_matrices(lms, self.template)], [tuple(get_template(self.template).size)]
        for rec in (self.verifier.models.values() if self.verifier is not None else []):
            tt = getattr(rec, "template", None)
            if tt is not None:
                mats.append(alignment_matrices(lms, get_template(tt)))
                sizes.append(tuple(get_template(tt).size))
        region = face_region(mats, sizes, size)
        if region is None:  # no face's crop touches the photo: the verification looks at the whole photo
            return (0, 0, size[1], size[0])
        x0, y0, x1, y1 = region
        return (x0 - 2, y0 - 2, x1 + 2, y1 + 2)

    def _verify(self, img: torch.Tensor, patches: list[FacePatch], lms: torch.Tensor, M: torch.Tensor,
                strengths: list[str], source: LoadedImage | None = None,
                cache: VerifyCache | None = None) -> list[FaceVerdict | None]:
        """Verify every face on the faces' bounding region only: the clean photo and what the written file gives back.

        The written pixels (:func:`nullswap.written.written_region`) also leave the output's encoded bytes in
        ``self._encoded`` for :meth:`ProtectedImage.save`.
        """
        if self.verifier is None:
            return [None] * int(lms.shape[0])
        mats, sizes = [M], [tuple(get_template(self.template).size)]
        for rec in self.verifier.models.values():
            t = getattr(rec, "template", None)
            if t is not None:
                tt = get_template(t)
                mats.append(alignment_matrices(lms, tt))
                sizes.append(tuple(tt.size))
        region = face_region(mats, sizes, (int(img.shape[1]), int(img.shape[2])))
        if region is None:  # no face's crop touches the photo
            region = (0, 0, int(img.shape[2]), int(img.shape[1]))
        x0, y0, x1, y1 = region
        clean = img[:, y0:y1, x0:x1]  # a view (region_views would also copy the region for a patched view)
        local = lms - torch.tensor([x0, y0], dtype=lms.dtype, device=lms.device)
        t = time.perf_counter()
        patched, self._encoded = written_region(img, patches, source, region,
                                                 strip_gps=self.strip_gps)
        self.timings["written"] = self.timings.get("written", 0.0) + time.perf_counter() - t
        return list(self.verifier.verify(clean, patched, local, strengths, cache=cache))

    def prefetch(self, path: str | os.PathLike[str]) -> None:
        """Start decoding a photo on a worker thread (a folder's next photo while the models work on this one)."""
        key = Path(path)
        if key in self._pending:
            return
        if self._io is None:
            self._io = worker_pool(2, "nullswap-decode")  # one PyTorch thread each (nullswap.threads)

        def timed(fn: Any, *args: Any) -> tuple[Any, float]:
            t = time.perf_counter()
            return fn(*args), time.perf_counter() - t

        preview = self._io.submit(timed, self._preview, key)
        full = self._io.submit(timed, read_image, key)
        self._pending[key] = (preview, full)

    def _preview(self, path: Path) -> Any:
        """A draft-mode copy of a JPEG for SCRFD's first pass (``None``: detect on the full decode)."""
        from nullswap.faces.scrfd import SCRFDDetector

        det = self.detector
        if not isinstance(det, SCRFDDetector) or det.small_faces != "auto":
            return None
        from nullswap.faces.preview import jpeg_preview

        return jpeg_preview(path, det.max_side)

    def _detect_preview(self, preview: Any) -> Detections | None:
        """SCRFD's first pass on a draft-mode copy, mapped to photo pixels.

        ``None`` (detect on the full decode instead) unless the pass finds faces and none of them is small enough
        to call for SCRFD's small-face passes or its half-scale pass: then the full-resolution detector would have
        returned the same faces from the same first pass (on a copy decoded at the same scale).
        """
        from nullswap.faces.preview import to_photo_pixels
        from nullswap.faces.scrfd import nms

        det = self.detector
        x = preview.tensor
        s1 = min(1.0, det.max_side / max(x.shape[-2:]))
        boxes, kps, scores = det._detect_window(x, s1, square=det.pad == "square")
        keep = nms(boxes, scores, det.nms_threshold)
        if keep.size == 0:
            return None
        b = boxes[keep]
        if float(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]).min()) * s1 < det.small_face_trigger:
            return None
        return Detections(to_photo_pixels(torch.from_numpy(np.ascontiguousarray(b, np.float32)), preview.scale),
                          to_photo_pixels(torch.from_numpy(np.ascontiguousarray(kps[keep], np.float32)),
                                          preview.scale),
                          torch.from_numpy(np.ascontiguousarray(scores[keep], np.float32)))

    def protect_file(self, path: str | os.PathLike[str], *, report: bool = False) -> ProtectedImage:
        """Read, protect and return a photo (metadata kept for :meth:`ProtectedImage.save`).

        The full decode runs on a worker thread (started earlier by :meth:`prefetch`, or now) while SCRFD looks for
        the faces on a draft-mode copy (JPEG); without usable faces there, detection runs on the full decode.
        """
        self.timings = tm = {}
        self.prefetch(path)
        preview_f, full_f = self._pending.pop(Path(path))
        det = None
        try:
            preview, tm["preview"] = preview_f.result()
        except Exception as e:  # noqa: BLE001 - the preview is an optimisation: the full decode decides
            log.debug("draft preview of %s failed (%s): detecting on the full decode", path, e)
            preview = None
        if preview is not None:
            t = time.perf_counter()
            det = self._detect_preview(preview)
            tm["detect"] = time.perf_counter() - t
        loaded, tm["decode"] = full_f.result()  # raises ImageReadError as read_image does
        del preview_f, full_f
        if det is not None and loaded.size != preview.size:
            log.warning("draft copy of %s does not match its full decode: detecting on the full decode", path)
            det = None
        del preview  # the detection copy
        img = loaded.tensor if loaded.rgb8 is None or self.device.type != "cpu" else None
        if img is None:  # 8-bit photo: kept as uint8, only the faces' region is converted to float (in _protect)
            if det is None:  # detection on the full decode: a float copy for the detector, freed after it
                t = time.perf_counter()
                det = self.detector.detect(loaded.float_copy())[0]
                tm["detect"] = tm.get("detect", 0.0) + time.perf_counter() - t
            img = loaded.float_canvas()
        out = self._protect(img, det, report, loaded)
        out.source = loaded
        out.encoded = self._encoded
        if out.report is not None:
            out.report["source"] = str(path)
        return out

    @torch.no_grad()
    def report(self, clean: torch.Tensor, protected: torch.Tensor, landmarks: torch.Tensor,
               faces: list[FaceResult]) -> dict[str, Any]:
        """The per-photo report.

        Per face: its verdict (outcome, strength it needed, verifiers with seen/unseen, cosines and thresholds at
        every level); per face and report recognizer: cosine(clean, protected), the thresholds, whether it is below
        each, and whether the method optimised against it; face PSNR/SSIM; the same after a JPEG q75
        re-compression of the whole protected photo (as a sharing site would).
        """
        from nullswap.metrics.quality import psnr, ssim
        from nullswap.verdict import VERDICT_LEVEL, thresholds_of

        recs = self.load_report_recognizers()
        thresholds = {n: thresholds_of(n) for n in recs}
        jpeg = jpeg_roundtrip(protected, 75)
        c_crops, _ = align_faces(clean, landmarks, self.template)
        variants = {"protected": protected, "jpeg75": jpeg}
        per_face: list[dict[str, Any]] = [
            {"index": i, "box": f.box, "score": f.score,
             **({"verdict": f.verdict.to_dict()} if f.verdict is not None else {})}
            for i, f in enumerate(faces)]
        seen = None if self.seen is None else set(self.seen)
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
                cos = torch.nn.functional.cosine_similarity(rec(a).float(), rec(b).float(), dim=1)
                thr = thresholds[name]
                for i, entry in enumerate(per_face):
                    c = float(cos[i])
                    entry[vname]["recognizers"][name] = {
                        "cosine": c,
                        "seen": None if seen is None else name in seen,
                        "threshold": thr.get(VERDICT_LEVEL),
                        "below_threshold": None if thr.get(VERDICT_LEVEL) is None else bool(c < thr[VERDICT_LEVEL]),
                        "thresholds": dict(thr),
                        "below": {lv: None if t is None else bool(c < t) for lv, t in thr.items()},
                    }
        return {"settings": dict(self.settings), "seen": None if seen is None else sorted(seen),
                "verifiers": self.verifier.describe() if self.verifier else None,
                "thresholds": thresholds, "faces": per_face}


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
    verify: bool = True,
    until_protected: bool | None = None,
) -> ProtectedImage:
    """Protect one photo (a path or a ``(3,H,W)`` RGB tensor in [0,1]) and return a :class:`ProtectedImage`.

    Builds the models on every call; to protect many photos create one :class:`PhotoProtector` instead. Each face's
    verdict is in ``result.faces[i].verdict`` and the photo's in ``result.status``.

    Raises:
        ImageReadError: the file cannot be read as an image.
        InputError: bad arguments or tensor.
        WeightsNotFoundError: the method's weights are missing.
    """
    p = PhotoProtector(method, checkpoint=checkpoint, strength=strength, recognizers=recognizers, seed=seed,
                       device=device, verify=verify, until_protected=until_protected)
    if isinstance(image_or_path, torch.Tensor):
        return p.protect_tensor(image_or_path, report=report)
    return p.protect_file(image_or_path, report=report)


__all__ = ["CHECKPOINT_FORMATS", "DEFAULT_DETECTOR", "METHODS", "STAGES", "STRENGTHS", "FaceResult", "NullswapError",
           "PhotoProtector", "ProtectedImage", "auto_recipe", "checkpoint_method", "default_method", "jpeg_roundtrip",
           "packaged_checkpoint", "physical_cores", "protect", "resolve_device"]
