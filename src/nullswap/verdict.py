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
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nullswap.errors import InputError, UnknownModelError, WeightsNotFoundError

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
        return {"seen": self.seen, "cosine": self.cosine, "thresholds": dict(self.thresholds),
                "fooled": {lv: self.fooled_at(lv) for lv in self.thresholds}}


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
        return {"outcome": self.outcome, "summary": self.describe(), "strength": self.strength,
                "strengths_tried": list(self.tried), "level": VERDICT_LEVEL,
                "verifiers": {s.name: s.to_dict() for s in self.scores}}


class Verifier:
    """Scores protected faces against their clean originals with a verification set (module doc).

    Args:
        names: recognizers to verify with (see :func:`choose_verifiers`).
        seen: recognizers the method optimised against (``None``: unknown).
        device: where the recognizers run.
        strict: raise when a verifier's weights are missing (else log and drop it; at least one calibrated
            verifier must remain).

    Raises:
        WeightsNotFoundError: a verifier's weights are missing (``strict``), or none of them could be loaded.
        InputError: no verifier has a calibrated threshold.
        UnknownModelError: unknown recognizer name.
    """

    def __init__(self, names: Sequence[str], seen: Iterable[str] | None, device: torch.device | str = "cpu",
                 *, strict: bool = True) -> None:
        from nullswap.recognizers import create_recognizer

        self.seen: set[str] | None = None if seen is None else set(seen)
        self.models: dict[str, torch.nn.Module] = {}
        self.thresholds: dict[str, dict[str, float | None]] = {}
        missing: list[str] = []
        for n in names:
            try:
                m = create_recognizer(n, device=device)
            except WeightsNotFoundError as e:
                if strict:
                    raise
                log.warning("verifier %s skipped: %s", n, e)
                missing.append(str(e))
                continue
            self.models[n] = m.eval()
            self.thresholds[n] = thresholds_of(n)
        uncalibrated = [n for n, t in self.thresholds.items() if t.get(VERDICT_LEVEL) is None]
        for n in uncalibrated:
            log.warning("verifier %s has no LFW-calibrated threshold: reported, not counted in the verdict", n)
        if not self.models:
            raise WeightsNotFoundError(f"verifiers: expected at least one loadable recognizer of {list(names)}, got "
                                       f"none ({'; '.join(missing)})")
        if len(uncalibrated) == len(self.models):
            raise InputError(f"verifiers: expected at least one recognizer with a calibrated threshold, got only "
                             f"{uncalibrated} (calibrated: {', '.join(calibrated_recognizers())})")

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

    @torch.no_grad()
    def cosines(self, clean: torch.Tensor, protected: torch.Tensor, landmarks: torch.Tensor) -> dict[str, list[float]]:
        """``{verifier: [cosine per face]}`` between the clean and protected photo's faces."""
        from nullswap.faces.alignment import align_faces

        out: dict[str, list[float]] = {}
        for name, rec in self.models.items():
            a, _ = align_faces(clean, landmarks, rec.template)
            b, _ = align_faces(protected, landmarks, rec.template)
            ea, eb = rec(a), rec(b)
            cos = torch.nn.functional.cosine_similarity(ea.float(), eb.float(), dim=1)
            out[name] = [float(c) for c in cos.cpu()]
        return out

    def verify(self, clean: torch.Tensor, protected: torch.Tensor, landmarks: torch.Tensor,
               strengths: Sequence[str | None] | None = None) -> list[FaceVerdict]:
        """One :class:`FaceVerdict` per face of ``landmarks`` (``(N,5,2)`` in photo pixels)."""
        cos = self.cosines(clean, protected, landmarks)
        n = int(landmarks.shape[0])
        verdicts = []
        for i in range(n):
            scores = [VerifierScore(name, self.is_seen(name), cos[name][i], dict(self.thresholds[name]))
                      for name in self.models]
            s = strengths[i] if strengths is not None else None
            verdicts.append(FaceVerdict(face_outcome([sc.fooled for sc in scores]), scores, s))
        return verdicts


__all__ = ["ARCFACE", "DEFAULT_UNSEEN", "DISPLAY_NAMES", "OUTCOMES", "VERDICT_LEVEL", "FaceVerdict", "Verifier",
           "VerifierScore", "calibrated_recognizers", "choose_verifiers", "display_name", "face_outcome",
           "optimised_recognizers", "read_checkpoint_meta", "thresholds_of", "worst_outcome"]
