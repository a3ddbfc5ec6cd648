"""The ``pgd`` and ``fgsm`` protectors: identity-targeted PGD / FGSM against a recognizer ensemble.

:class:`PGDProtector` and :class:`FGSMProtector` run :func:`nullswap.attacks.pgd` / :func:`nullswap.attacks.fgsm`
behind the :class:`~nullswap.protectors.base.Protector` interface.

The attacks themselves (and their settings per strength) live in :mod:`nullswap.attacks`, which imports nothing from
the protectors; ``nullswap.attacks.PGDProtector`` / ``FGSMProtector`` still resolve to these classes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from nullswap.attacks import DEFAULT_RECOGNIZERS, FGSM_STRENGTHS, PGD_STRENGTHS, Strength, fgsm, pgd
from nullswap.errors import InputError
from nullswap.protectors.base import Protector, register_protector
from nullswap.recognizers.base import FaceRecognizer
from nullswap.recognizers.ensemble import RecognizerEnsemble

log = logging.getLogger(__name__)


def _build_ensemble(
    recognizers: Sequence[FaceRecognizer | str] | RecognizerEnsemble | None,
    weights_dir: str | None,
    template: str = "protector-256",
) -> RecognizerEnsemble:
    if isinstance(recognizers, RecognizerEnsemble):
        return recognizers
    if recognizers is None:
        recognizers = DEFAULT_RECOGNIZERS
    if isinstance(recognizers, str | FaceRecognizer):
        recognizers = [recognizers]
    recognizers = list(recognizers)
    if not recognizers:
        raise InputError("recognizers: expected at least one recognizer name or module, got none")
    return RecognizerEnsemble(recognizers, source_template=template, weights_dir=weights_dir)


def _settings(table: dict[str, dict[str, float]], strength: str) -> dict[str, float]:
    if strength not in table:
        raise InputError(f"strength: expected one of {list(table)}, got {strength!r}")
    return dict(table[strength])


class PGDProtector(Protector):
    """Protector running identity-targeted :func:`pgd` against a recognizer ensemble.

    Args:
        recognizers: names or modules (default :data:`DEFAULT_RECOGNIZERS`), or a ready ``RecognizerEnsemble``.
        strength: ``"low"`` (eps 4/255, 20 steps), ``"mid"`` (8/255, 50) or ``"high"`` (16/255, 100); see
            :data:`PGD_STRENGTHS`.
        eps: overrides the strength's budget.
        steps: overrides the strength's step count.
        alpha: step size (default ``2.5 * eps / steps``).
        random_start: uniform random start in the eps-ball.
        device: where the recognizers run (crops are moved there and back).
        weights_dir: folder searched first for recognizer weights.
        template: crop template (``protector-256``; ``protector-128`` to compare with 128-px models).
    """

    name = "pgd"

    def __init__(
        self,
        recognizers: Sequence[FaceRecognizer | str] | RecognizerEnsemble | None = None,
        strength: Strength = "mid",
        eps: float | None = None,
        steps: int | None = None,
        alpha: float | None = None,
        random_start: bool = True,
        device: str | torch.device | None = None,
        weights_dir: str | None = None,
        template: str = "protector-256",
    ) -> None:
        super().__init__()
        self.template = template
        s = _settings(PGD_STRENGTHS, strength)
        self.strength = strength
        self.eps = float(s["eps"] if eps is None else eps)
        self.steps = int(s["steps"] if steps is None else steps)
        self.alpha = alpha
        self.random_start = random_start
        self.ensemble = _build_ensemble(recognizers, weights_dir, template)
        if device is not None:
            self.ensemble.to(device)

    def protect(self, faces: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """PGD-protected crops (same shape and device as ``faces``, in [0,1])."""
        self.check_input(faces)
        dev = next(iter(self.ensemble.parameters()), faces).device
        adv = pgd(faces.to(dev), self.ensemble, eps=self.eps, steps=self.steps, alpha=self.alpha,
                  random_start=self.random_start, generator=generator)
        return adv.to(faces.device, faces.dtype)


class FGSMProtector(Protector):
    """Protector running identity-targeted :func:`fgsm` against a recognizer ensemble.

    Args:
        recognizers: names or modules (default :data:`DEFAULT_RECOGNIZERS`), or a ready ``RecognizerEnsemble``.
        strength: ``"low"`` (eps 4/255), ``"mid"`` (8/255) or ``"high"`` (16/255); see :data:`FGSM_STRENGTHS`.
        eps: overrides the strength's budget.
        random_start: R+FGSM random step first (see :func:`fgsm`).
        device: where the recognizers run.
        weights_dir: folder searched first for recognizer weights.
        template: crop template (``protector-256``; ``protector-128`` to compare with 128-px models).
    """

    name = "fgsm"

    def __init__(
        self,
        recognizers: Sequence[FaceRecognizer | str] | RecognizerEnsemble | None = None,
        strength: Strength = "mid",
        eps: float | None = None,
        random_start: bool = True,
        device: str | torch.device | None = None,
        weights_dir: str | None = None,
        template: str = "protector-256",
    ) -> None:
        super().__init__()
        self.template = template
        s = _settings(FGSM_STRENGTHS, strength)
        self.strength = strength
        self.eps = float(s["eps"] if eps is None else eps)
        self.random_start = random_start
        self.ensemble = _build_ensemble(recognizers, weights_dir, template)
        if device is not None:
            self.ensemble.to(device)

    def protect(self, faces: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """FGSM-protected crops (same shape and device as ``faces``, in [0,1])."""
        self.check_input(faces)
        dev = next(iter(self.ensemble.parameters()), faces).device
        adv = fgsm(faces.to(dev), self.ensemble, eps=self.eps, random_start=self.random_start, generator=generator)
        return adv.to(faces.device, faces.dtype)


@register_protector("pgd", "identity-targeted PGD against a recognizer ensemble (Madry et al. 2018)")
def _make_pgd(
    recognizers: Sequence[FaceRecognizer | str] | RecognizerEnsemble | None = None,
    strength: Strength = "mid",
    eps: float | None = None,
    steps: int | None = None,
    alpha: float | None = None,
    random_start: bool = True,
    device: str | torch.device | None = None,
    weights_dir: str | None = None,
    template: str = "protector-256",
) -> PGDProtector:
    """Factory of :class:`PGDProtector` (the same keyword arguments)."""
    return PGDProtector(recognizers, strength, eps, steps, alpha, random_start, device, weights_dir, template)


@register_protector("fgsm", "identity-targeted FGSM against a recognizer ensemble (Goodfellow et al. 2015)")
def _make_fgsm(
    recognizers: Sequence[FaceRecognizer | str] | RecognizerEnsemble | None = None,
    strength: Strength = "mid",
    eps: float | None = None,
    random_start: bool = True,
    device: str | torch.device | None = None,
    weights_dir: str | None = None,
    template: str = "protector-256",
) -> FGSMProtector:
    """Factory of :class:`FGSMProtector` (the same keyword arguments)."""
    return FGSMProtector(recognizers, strength, eps, random_start, device, weights_dir, template)


__all__ = ["FGSMProtector", "PGDProtector"]
