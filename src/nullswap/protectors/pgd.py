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


class _EnsembleAttackProtector(Protector):
    """An identity-targeted attack on a recognizer ensemble as a :class:`Protector` (shared by PGD and FGSM).

    Subclasses set ``name`` and :attr:`strengths` (``strength -> {"eps": ..., ...}``) and implement :meth:`_attack`.

    Args:
        recognizers: names or modules (default :data:`~nullswap.attacks.DEFAULT_RECOGNIZERS`), or a ready
            ``RecognizerEnsemble``.
        strength: a key of :attr:`strengths`.
        eps: overrides the strength's L-inf budget.
        random_start: random start in the eps-ball (see the attack).
        device: where the recognizers run (crops are moved there and back).
        weights_dir: folder searched first for recognizer weights.
        template: crop template (``protector-256``; ``protector-128`` to compare with 128-px models).

    Raises:
        InputError: unknown ``strength`` or an empty recognizer list.
    """

    strengths: dict[str, dict[str, float]] = {}

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
        if strength not in self.strengths:
            raise InputError(f"strength: expected one of {list(self.strengths)}, got {strength!r}")
        self.template = template
        self.strength = strength
        self.eps = float(self.setting("eps") if eps is None else eps)
        self.random_start = random_start
        self.ensemble = _build_ensemble(recognizers, weights_dir, template)
        if device is not None:
            self.ensemble.to(device)

    def setting(self, key: str) -> float:
        """The strength table's value of ``key`` (``"eps"``, ``"steps"``) for this protector's strength."""
        return self.strengths[self.strength][key]

    def _attack(self, faces: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def protect(self, faces: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Protected crops (same shape, device and dtype as ``faces``, in [0,1])."""
        self.check_input(faces)
        dev = next(iter(self.ensemble.parameters()), faces).device
        return self._attack(faces.to(dev), generator).to(faces.device, faces.dtype)


@register_protector("pgd", "identity-targeted PGD against a recognizer ensemble (Madry et al. 2018)")
class PGDProtector(_EnsembleAttackProtector):
    """Protector running identity-targeted :func:`~nullswap.attacks.pgd` against a recognizer ensemble.

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
    strengths = PGD_STRENGTHS

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
        super().__init__(recognizers, strength, eps, random_start, device, weights_dir, template)
        self.steps = int(self.setting("steps") if steps is None else steps)
        self.alpha = alpha

    def _attack(self, faces: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return pgd(faces, self.ensemble, eps=self.eps, steps=self.steps, alpha=self.alpha,
                   random_start=self.random_start, generator=generator, on_step=self.on_step)


@register_protector("fgsm", "identity-targeted FGSM against a recognizer ensemble (Goodfellow et al. 2015)")
class FGSMProtector(_EnsembleAttackProtector):
    """Protector running identity-targeted :func:`~nullswap.attacks.fgsm` against a recognizer ensemble.

    Args:
        recognizers: names or modules (default :data:`DEFAULT_RECOGNIZERS`), or a ready ``RecognizerEnsemble``.
        strength: ``"low"`` (eps 4/255), ``"mid"`` (8/255) or ``"high"`` (16/255); see :data:`FGSM_STRENGTHS`.
        eps: overrides the strength's budget.
        random_start: R+FGSM random step first (see :func:`~nullswap.attacks.fgsm`).
        device: where the recognizers run.
        weights_dir: folder searched first for recognizer weights.
        template: crop template (``protector-256``; ``protector-128`` to compare with 128-px models).
    """

    name = "fgsm"
    strengths = FGSM_STRENGTHS

    def _attack(self, faces: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return fgsm(faces, self.ensemble, eps=self.eps, random_start=self.random_start, generator=generator)


__all__ = ["FGSMProtector", "PGDProtector"]
