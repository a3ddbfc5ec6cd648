"""Per-face verdicts: does the protected face still verify as the clean one?

After cloaking, a *verification set* of recognizers compares every protected face with its clean original: cosine
similarity of the two embeddings (each recognizer aligned to its own template on the whole photo, as a face-swap
model's identity extractor would see it) against the recognizer's LFW-calibrated verification threshold
(:mod:`nullswap.recognizers.thresholds`). A recognizer whose cosine falls below its threshold no longer matches the
protected face to the person: it is *fooled*.

The verification set (choice, issue 15):

* ``arcface-mbf``: InsightFace's ArcFace MobileFaceNet, the extractor class face-swap models (SimSwap, inswapper,
  ...) use for the source identity;
* at least one recognizer the method did **not** optimise against (PGD/FGSM attack the ensemble they were given; a
  trained generator lists its training recognizers in its checkpoint's ``config.json``): ``human-mobilefacenet`` and
  ``faceplugin-512``, each where the method did not use it, else the first unseen recognizer with a threshold.

Each verifier is marked ``seen`` (the method optimised against it, so fooling it is expected) or unseen (transfer).
The verdict uses the ``best`` (accuracy-maximising) threshold; the report also lists the ``far_1e-02`` and
``far_1e-03`` operating points. A face's outcome: ``protected`` (every calibrated verifier fooled), ``partial``
(some), ``weak`` (none). A photo's status is its worst face's outcome.

Cost (issue 14): the faces are aligned once per template (every default verifier uses ``arcface-112``) without a
range scan of the whole photo, and each verifier embeds the clean and the protected crops of all faces in one batched
forward under :func:`torch.inference_mode`. A :class:`VerifyCache` keeps the clean embeddings of a photo, and the
protected embedding of every face whose crop did not change, across the re-verifications of ``until_protected``.
Loaded verifiers are shared by every :class:`Verifier` of the process (:func:`load_verifier_model`). The batched
cosines equal the one-face-at-a-time ones (:meth:`Verifier.cosines_per_face`) to 1e-5
(``tests/test_verdict_speed.py``). On the CPU the verifiers shipped as ONNX files (``arcface-mbf``,
``faceplugin-512``) run under onnxruntime (:mod:`nullswap.recognizers.ort_runner`, backend ``ort``; ``torch`` or
``NULLSWAP_VERIFY_BACKEND=torch`` keeps their onnx2torch modules): the same cosines to 1e-6, arcface-mbf about 1.4x
and faceplugin-512 about 3.6x faster per forward (2 threads), and ``nullswap protect`` no longer imports onnx2torch
and torchvision.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nullswap.errors import InputError, UnknownModelError, WeightsNotFoundError
from nullswap.threads import worker_pool

log = logging.getLogger(__name__)

#: Face outcomes, worst first.
OUTCOMES: tuple[str, ...] = ("weak", "partial", "protected")

#: The extractor class of face-swap models: always in the default verification set.
ARCFACE = "arcface-mbf"

#: Unseen verifiers added by default, each where the method did not optimise against it.
DEFAULT_UNSEEN: tuple[str, ...] = ("human-mobilefacenet", "faceplugin-512")

#: Threshold level the verdict uses; the report lists every level of ``THRESHOLD_LEVELS``.
VERDICT_LEVEL = "best"

#: Short names for the printed verdict.
DISPLAY_NAMES: dict[str, str] = {ARCFACE: "ArcFace"}


def display_name(name: str) -> str:
    """Short human name of a recognizer for printed output (``arcface-mbf`` -> ``ArcFace``)."""
    return DISPLAY_NAMES.get(name, name)


def _levels() -> tuple[str, ...]:
    from nullswap.recognizers import thresholds as th

    return tuple(getattr(th, "THRESHOLD_LEVELS", (VERDICT_LEVEL,)))


def thresholds_of(name: str) -> dict[str, float | None]:
    """``{level: threshold or None}`` of a recognizer at every shipped operating point."""
    from nullswap.recognizers.thresholds import verification_threshold

    out: dict[str, float | None] = {}
    for level in _levels():
        try:
            out[level] = float(verification_threshold(name, level))
        except (UnknownModelError, InputError):
            out[level] = None
        except TypeError:  # an older thresholds module without levels
            out[level] = float(verification_threshold(name)) if level == VERDICT_LEVEL else None
    return out


def calibrated_recognizers() -> list[str]:
    """Recognizers with a shipped ``best`` verification threshold, in the table's order."""
    from nullswap.recognizers.thresholds import verification_thresholds

    return list(verification_thresholds())


def read_checkpoint_meta(checkpoint: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a trained protector's checkpoint (folder, its ``model.safetensors`` or the JSON)."""
    p = Path(checkpoint)
    cfg = p if p.suffix == ".json" else (p.parent if p.is_file() else p) / "config.json"
    try:
        doc = json.loads(cfg.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def optimised_recognizers(protector: Any, checkpoint: str | Path | None = None) -> list[str] | None:
    """Recognizers a protector optimised against, or ``None`` when that cannot be told.

    PGD/FGSM: the names of the ensemble they attack. A trained generator: ``meta.recognizers`` (or
    ``meta.config.recognizers``) of its checkpoint's ``config.json``.
    """
    ens = getattr(protector, "ensemble", None)
    names = getattr(ens, "names", None)
    if isinstance(names, list | tuple):
        return [str(n) for n in names]
    if checkpoint is None:
        return [] if getattr(protector, "name", "") in ("clean", "identity") else None
    meta = read_checkpoint_meta(checkpoint).get("meta", {})
    if not isinstance(meta, dict):
        return None
    recs = meta.get("recognizers")
    if recs is None and isinstance(meta.get("config"), dict):
        recs = meta["config"].get("recognizers")
    if isinstance(recs, list | tuple) and all(isinstance(r, str) for r in recs):
        return list(recs)
    return None


def choose_verifiers(seen: Iterable[str] | None, requested: Sequence[str] | None = None) -> list[str]:
    """The verification set: ``requested`` if given, else ``arcface-mbf`` plus unseen recognizers (module doc)."""
    if requested:
        return list(dict.fromkeys(requested))
    seen_set = set(seen or ())
    names = [ARCFACE] + [n for n in DEFAULT_UNSEEN if n not in seen_set]
    if not any(n not in seen_set for n in names):
        extra = [n for n in calibrated_recognizers() if n not in seen_set and n not in names]
        names += extra[:1]
    return names


@dataclass
class VerifierScore:
    """One verifier on one face.

    Attributes:
        name: recognizer name.
        seen: the method optimised against it (``None``: unknown).
        cosine: cosine similarity of the clean and the protected face's embeddings.
        thresholds: ``{level: threshold or None}``.
    """

    name: str
    seen: bool | None
    cosine: float
    thresholds: dict[str, float | None]

    def fooled_at(self, level: str = VERDICT_LEVEL) -> bool | None:
        """Whether the cosine is below the threshold at ``level`` (``None``: no threshold)."""
        t = self.thresholds.get(level)
        return None if t is None else bool(self.cosine < t)

    @property
    def fooled(self) -> bool | None:
        """Fooled at the verdict's level."""
        return self.fooled_at(VERDICT_LEVEL)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "seen": self.seen,
            "cosine": self.cosine,
            "thresholds": dict(self.thresholds),
            "fooled": {lv: self.fooled_at(lv) for lv in self.thresholds},
        }


def face_outcome(fooled: Sequence[bool | None]) -> str:
    """``protected`` (every calibrated verifier fooled), ``partial`` (some) or ``weak`` (none).

    ``None`` entries (no threshold) do not vote.

    Raises:
        InputError: no calibrated verifier at all.
    """
    votes = [f for f in fooled if f is not None]
    if not votes:
        raise InputError("verdict: expected at least one verifier with a calibrated threshold, got none")
    n = sum(votes)
    return "protected" if n == len(votes) else "partial" if n else "weak"


def worst_outcome(outcomes: Iterable[str]) -> str | None:
    """The worst of face outcomes (``weak`` < ``partial`` < ``protected``); ``None`` for none."""
    ranked = [OUTCOMES.index(o) for o in outcomes if o in OUTCOMES]
    return OUTCOMES[min(ranked)] if ranked else None


@dataclass
class FaceVerdict:
    """The verdict on one protected face.

    Attributes:
        outcome: ``protected`` / ``partial`` / ``weak``.
        scores: one :class:`VerifierScore` per verifier.
        strength: the strength that produced this face (the one it needed with ``until_protected``).
        tried: strengths tried, in order.
    """

    outcome: str
    scores: list[VerifierScore]
    strength: str | None = None
    tried: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """Spelled-out verdict, e.g. ``fooled 2 of 3 verifiers, ArcFace yes``."""
        votes = [s for s in self.scores if s.fooled is not None]
        n = sum(bool(s.fooled) for s in votes)
        text = f"fooled {n} of {len(votes)} verifier{'s' if len(votes) != 1 else ''}"
        arc = next((s for s in self.scores if s.name == ARCFACE), None)
        if arc is not None:
            text += f", {display_name(ARCFACE)} " + ("n/a" if arc.fooled is None else "yes" if arc.fooled else "no")
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON form (what reports, summaries and the manifest store)."""
        return {
            "outcome": self.outcome,
            "summary": self.describe(),
            "strength": self.strength,
            "strengths_tried": list(self.tried),
            "level": VERDICT_LEVEL,
            "verifiers": {s.name: s.to_dict() for s in self.scores},
        }


#: Environment variable choosing the verifiers' backend: ``auto`` (default), ``ort`` or ``torch`` (see
#: :func:`verifier_backend`).
BACKEND_ENV = "NULLSWAP_VERIFY_BACKEND"

#: The verifiers' backends: onnxruntime (:mod:`nullswap.recognizers.ort_runner`) or the PyTorch modules.
BACKENDS: tuple[str, ...] = ("auto", "ort", "torch")

#: Loaded verifiers shared by every :class:`Verifier` of the process, keyed by ``(name, device, backend)``.
_MODELS: dict[tuple[str, str, str], torch.nn.Module] = {}
_MODELS_LOCK = threading.Lock()


def verifier_backend(backend: str | None, device: torch.device | str = "cpu") -> str:
    """The backend the verifiers run on: ``ort`` or ``torch``.

    ``None`` reads :data:`BACKEND_ENV` (default ``auto``). ``auto`` is ``ort`` on the CPU when onnxruntime is
    installed (faster: module doc), else ``torch``; on a GPU it is ``torch``. ``ort`` on a GPU runs the ONNX
    recognizers on the CPU.

    Raises:
        InputError: an unknown backend name.
    """
    import os

    from nullswap.recognizers.ort_runner import ort_available

    b = (backend if backend is not None else os.environ.get(BACKEND_ENV, "auto")).strip().lower() or "auto"
    if b not in BACKENDS:
        src = "backend" if backend is not None else BACKEND_ENV
        raise InputError(f"{src}: expected one of {', '.join(BACKENDS)}, got {b!r}")
    if b == "auto":
        return "ort" if torch.device(device).type == "cpu" and ort_available() else "torch"
    return b


def load_verifier_model(name: str, device: torch.device | str = "cpu", backend: str | None = None) -> torch.nn.Module:
    """A recognizer in eval mode, loaded once per process, device and backend (verifiers only read it).

    With the ``ort`` backend (:func:`verifier_backend`) a recognizer shipped as an ONNX file runs under onnxruntime
    (:func:`~nullswap.recognizers.ort_runner.create_ort_recognizer`, inference only; where it cannot, the PyTorch
    module is used, with a log line); a recognizer whose network is a PyTorch module always runs on PyTorch.

    Raises:
        WeightsNotFoundError: its weights are missing.
        UnknownModelError: unknown recognizer name.
        InputError: an unknown backend name.
    """
    from nullswap.recognizers import create_recognizer
    from nullswap.recognizers.onnx_models import ONNX_RECOGNIZERS

    b = verifier_backend(backend, device)
    if name not in ONNX_RECOGNIZERS:
        b = "torch"  # a PyTorch network: no onnxruntime form (nullswap.recognizers.ort_runner)
    key = (name, str(torch.device(device)), b)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            if b == "ort":
                from nullswap.recognizers.ort_runner import OrtUnavailableError, create_ort_recognizer

                try:
                    model = create_ort_recognizer(name)
                except OrtUnavailableError as e:
                    log.info("verifier %s: onnxruntime not usable (%s); running it with PyTorch", name, e)
            if model is None:
                model = create_recognizer(name, device=device).eval()
            _MODELS[key] = model
    return model


def clear_model_cache() -> None:
    """Forget the process-wide verifier models (the next :class:`Verifier` loads them again)."""
    with _MODELS_LOCK:
        _MODELS.clear()


@dataclass
class VerifyCache:
    """What a photo's re-verification reuses (``until_protected``): pass the same object for the same clean photo.

    Attributes:
        landmarks: the faces the cache holds (a different set resets it).
        clean: ``{verifier: (N, D)}`` embeddings of the clean faces.
        crops: ``{template: (N, 3, h, w)}`` the protected crops last embedded.
        protected: ``{verifier: (N, D)}`` their embeddings.
    """

    landmarks: torch.Tensor | None = None
    clean: dict[str, torch.Tensor] = field(default_factory=dict)
    crops: dict[str, torch.Tensor] = field(default_factory=dict)
    protected: dict[str, torch.Tensor] = field(default_factory=dict)

    def use_for(self, landmarks: torch.Tensor) -> None:
        """Reset the cache unless it holds exactly these faces."""
        lm = landmarks.detach()
        if self.landmarks is None or self.landmarks.shape != lm.shape or not torch.equal(self.landmarks, lm):
            self.landmarks = lm.clone()
            self.clean.clear()
            self.crops.clear()
            self.protected.clear()


def _align(image: torch.Tensor, landmarks: torch.Tensor, template: str) -> torch.Tensor:
    """The crops :func:`~nullswap.faces.alignment.align_faces` returns, without its range scan of the whole photo."""
    from nullswap.faces.alignment import alignment_matrices, warp_affine
    from nullswap.faces.templates import get_template

    img = image.unsqueeze(0) if image.ndim == 3 else image
    if img.ndim != 4 or img.shape[0] != 1 or img.shape[1] != 3:
        raise InputError(f"verify: expected one (3,H,W) photo, got shape {tuple(image.shape)}")
    t = get_template(template)
    M = alignment_matrices(landmarks.to(img.device), t)
    if M.shape[0] == 0:
        return img.new_zeros(0, 3, *t.size)
    return warp_affine(img.expand(M.shape[0], -1, -1, -1), M, t.size)


class Verifier:
    """Scores protected faces against their clean originals with a verification set (module doc).

    Args:
        names: recognizers to verify with (see :func:`choose_verifiers`).
        seen: recognizers the method optimised against (``None``: unknown).
        device: where the recognizers run.
        strict: raise when a verifier's weights are missing (else log and drop it; at least one calibrated
            verifier must remain).
        backend: ``ort``, ``torch`` or ``auto`` (``None``: the environment's :data:`BACKEND_ENV`, default
            ``auto``), see :func:`verifier_backend`.
        parallel: run the verifiers' forwards side by side on a thread pool (each verifier's batch is what it would
            be; the embeddings are the same). Choice (speed, issue 14), measured 2026-12-07 on the 2-core VM, 2 threads,
            two crops each for arcface-mbf (onnxruntime) and human-mobilefacenet (PyTorch): 55.6 ms one after the
            other, 38.7 ms side by side (median of 30, interleaved): neither small network keeps two cores busy.
        one_torch_thread: the pool's threads run PyTorch on one thread (default: with their own OpenMP team they had
            halved the speed of the caller's later refinement and PGD steps); ``False``: at the process's count, for
            a caller that runs no gradient steps (:func:`nullswap.threads.worker_pool`).

    Raises:
        WeightsNotFoundError: a verifier's weights are missing (``strict``), or none of them could be loaded.
        InputError: no verifier has a calibrated threshold, or an unknown backend.
        UnknownModelError: unknown recognizer name.
    """

    def __init__(
        self,
        names: Sequence[str],
        seen: Iterable[str] | None,
        device: torch.device | str = "cpu",
        *,
        strict: bool = True,
        backend: str | None = None,
        parallel: bool = True,
        one_torch_thread: bool = True,
    ) -> None:
        self.seen: set[str] | None = None if seen is None else set(seen)
        self.parallel = bool(parallel)
        self.one_torch_thread = bool(one_torch_thread)
        self._pool: ThreadPoolExecutor | None = None
        self.backend = verifier_backend(backend, device)
        self.models: dict[str, torch.nn.Module] = {}
        self.thresholds: dict[str, dict[str, float | None]] = {}
        missing: list[str] = []
        for n in names:
            try:
                m = load_verifier_model(n, device, self.backend)
            except WeightsNotFoundError as e:
                if strict:
                    raise
                log.warning("verifier %s skipped: %s", n, e)
                missing.append(str(e))
                continue
            self.models[n] = m
            self.thresholds[n] = thresholds_of(n)
        uncalibrated = [n for n, t in self.thresholds.items() if t.get(VERDICT_LEVEL) is None]
        for n in uncalibrated:
            log.warning("verifier %s has no LFW-calibrated threshold: reported, not counted in the verdict", n)
        if not self.models:
            raise WeightsNotFoundError(
                f"verifiers: expected at least one loadable recognizer of {list(names)}, got "
                f"none ({'; '.join(missing)})"
            )
        if len(uncalibrated) == len(self.models):
            raise InputError(
                f"verifiers: expected at least one recognizer with a calibrated threshold, got only "
                f"{uncalibrated} (calibrated: {', '.join(calibrated_recognizers())})"
            )

    @property
    def names(self) -> list[str]:
        """Verifier names, in order."""
        return list(self.models)

    def is_seen(self, name: str) -> bool | None:
        """Whether the method optimised against ``name`` (``None``: unknown)."""
        return None if self.seen is None else name in self.seen

    def describe(self) -> dict[str, Any]:
        """``{name: {"seen", "thresholds"}}`` for reports and summaries."""
        return {n: {"seen": self.is_seen(n), "thresholds": dict(self.thresholds[n])} for n in self.models}

    @torch.inference_mode()
    def cosines(
        self, clean: torch.Tensor, protected: torch.Tensor, landmarks: torch.Tensor, *, cache: VerifyCache | None = None
    ) -> dict[str, list[float]]:
        """``{verifier: [cosine per face]}`` between the clean and protected photo's faces.

        One alignment per template and one forward per verifier (clean and protected crops of every face in one
        batch; the verifiers side by side when :attr:`parallel`). With ``cache`` (same clean photo, same
        ``landmarks``) the clean embeddings are computed once, and a face whose protected crop is unchanged since the
        cache's last call keeps its embedding.
        """
        n = int(landmarks.shape[0])
        if cache is None:
            cache = VerifyCache()
        cache.use_for(landmarks)
        by_template: dict[str, list[str]] = {}
        for name, rec in self.models.items():
            by_template.setdefault(str(rec.template), []).append(name)
        batches: dict[str, torch.Tensor] = {}
        plan: list[tuple[str, list[str], torch.Tensor, list[int], list[str]]] = []
        for template, names in by_template.items():
            pc = _align(protected, landmarks, template)
            old = cache.crops.get(template)
            if old is not None and old.shape == pc.shape and all(n_ in cache.protected for n_ in names):
                todo = [i for i in range(n) if not torch.equal(old[i], pc[i])]
            else:
                todo = list(range(n))
            need_clean = [n_ for n_ in names if n_ not in cache.clean]
            cc = _align(clean, landmarks, template) if need_clean else None
            for name in names:
                parts = ([cc] if name in need_clean else []) + ([pc[todo]] if todo else [])
                if parts:
                    batches[name] = torch.cat(parts) if len(parts) > 1 else parts[0]
            plan.append((template, names, pc, todo, need_clean))
        embs = self._embed_all(batches)  # every verifier's forward, side by side when parallel
        out: dict[str, list[float]] = {}
        for template, names, pc, todo, need_clean in plan:
            for name in names:
                if name in embs:
                    emb = embs[name]
                    if name in need_clean:
                        cache.clean[name], emb = emb[:n], emb[n:]
                    if todo:
                        prev = cache.protected.get(name)
                        full = prev.clone() if prev is not None and len(todo) < n else emb.new_empty(n, emb.shape[1])
                        full[todo] = emb
                        cache.protected[name] = full
                cos = torch.nn.functional.cosine_similarity(cache.clean[name], cache.protected[name], dim=1)
                out[name] = [float(c) for c in cos.cpu()]
            cache.crops[template] = pc
        return out

    def _embed_all(self, batches: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{verifier: float embeddings}`` of each verifier's batch; side by side when :attr:`parallel`."""
        def embed(name: str) -> torch.Tensor:
            with torch.inference_mode():  # grad mode is per thread
                return self.models[name](batches[name]).float()

        names = list(batches)
        if not self.parallel or len(names) < 2:
            return {n: embed(n) for n in names}
        if self._pool is None:
            self._pool = worker_pool(max(len(self.models) - 1, 1), "nullswap-verify",
                                     one_torch_thread=self.one_torch_thread)
        futures = {n: self._pool.submit(embed, n) for n in names[1:]}
        out = {names[0]: embed(names[0])}  # the calling thread takes one
        out.update({n: f.result() for n, f in futures.items()})
        return out

    @torch.inference_mode()
    def cosines_per_face(
        self, clean: torch.Tensor, protected: torch.Tensor, landmarks: torch.Tensor
    ) -> dict[str, list[float]]:
        """The reference for :meth:`cosines`: each face aligned and embedded on its own, clean and protected apart."""
        from nullswap.faces.alignment import align_faces

        out: dict[str, list[float]] = {}
        for name, rec in self.models.items():
            vals = []
            for i in range(int(landmarks.shape[0])):
                a, _ = align_faces(clean, landmarks[i : i + 1], rec.template)
                b, _ = align_faces(protected, landmarks[i : i + 1], rec.template)
                vals.append(float(torch.nn.functional.cosine_similarity(rec(a).float(), rec(b).float(), dim=1)[0]))
            out[name] = vals
        return out

    def verify(
        self,
        clean: torch.Tensor,
        protected: torch.Tensor,
        landmarks: torch.Tensor,
        strengths: Sequence[str | None] | None = None,
        *,
        cache: VerifyCache | None = None,
    ) -> list[FaceVerdict]:
        """One :class:`FaceVerdict` per face of ``landmarks`` (``(N,5,2)`` in photo pixels).

        ``protected`` should be the pixels a reader of the written file gets back (see
        :func:`nullswap.written.written_pixels`); ``cache``: see :meth:`cosines`.
        """
        cos = self.cosines(clean, protected, landmarks, cache=cache)
        n = int(landmarks.shape[0])
        verdicts = []
        for i in range(n):
            scores = [
                VerifierScore(name, self.is_seen(name), cos[name][i], dict(self.thresholds[name]))
                for name in self.models
            ]
            s = strengths[i] if strengths is not None else None
            verdicts.append(FaceVerdict(face_outcome([sc.fooled for sc in scores]), scores, s))
        return verdicts


__all__ = [
    "ARCFACE",
    "BACKENDS",
    "BACKEND_ENV",
    "DEFAULT_UNSEEN",
    "DISPLAY_NAMES",
    "OUTCOMES",
    "VERDICT_LEVEL",
    "FaceVerdict",
    "Verifier",
    "VerifierScore",
    "VerifyCache",
    "calibrated_recognizers",
    "choose_verifiers",
    "clear_model_cache",
    "display_name",
    "face_outcome",
    "load_verifier_model",
    "optimised_recognizers",
    "read_checkpoint_meta",
    "thresholds_of",
    "verifier_backend",
    "worst_outcome",
]
