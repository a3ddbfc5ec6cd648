"""FGSM and PGD baselines against face recognizers (identity-targeted).

Their :class:`~nullswap.protectors.base.Protector` wrappers (``create_protector("pgd" | "fgsm")``) are in
:mod:`nullswap.protectors.pgd`; ``nullswap.attacks.PGDProtector`` and ``FGSMProtector`` still work.

Both attacks minimise the NullSwap identity objective (nullswap.txt, Eq. 12) applied per image: the cosine similarity
between the recognizer embedding of the perturbed crop and that of the clean crop, averaged over an ensemble of
recognizers,

    L(x') = (1/K) * sum_k cos(E_k(x'), E_k(x)),

under an L_inf budget ``||x' - x||_inf <= eps`` and ``x'`` in [0, 1].

* FGSM (Goodfellow, Shlens and Szegedy 2015): one signed-gradient step ``x' = clip(x - eps * sign(grad L(x)))``.
  As ``x' = x`` is an exact maximum of the cosine (zero gradient), the step is by default taken from a random
  corner of the eps/2-ball (R+FGSM, Tramer et al. 2018); see :func:`fgsm`.
* PGD (Madry et al. 2018): optional uniform random start in the eps-ball, then ``steps`` iterations of
  ``x' <- Proj_{eps-ball and [0,1]}(x' - alpha * sign(grad L(x')))``. The default step size
  ``alpha = 2.5 * eps / steps`` is the Madry-lab convention (the ``robustness`` library): it lets the iterate cross
  the whole ball (2 eps) from any start with some slack.

These are the FGSM/PGD rows of ARS's comparisons (ars.txt, "Baselines"), aimed at the identity used by face
swappers rather than at a particular swapping generator.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from nullswap.checks import check_image_batch
from nullswap.errors import InputError

log = logging.getLogger(__name__)

Strength = Literal["low", "mid", "high"]

DEFAULT_RECOGNIZERS: tuple[str, ...] = ("dlib-resnet29", "mobilefacenet-casia")
"""Recognizers the ``pgd`` / ``fgsm`` protectors attack by default."""

PGD_STRENGTHS: dict[str, dict[str, float]] = {
    "low": {"eps": 4 / 255, "steps": 20},
    "mid": {"eps": 8 / 255, "steps": 50},
    "high": {"eps": 16 / 255, "steps": 100},
}
"""PGD settings per strength (``alpha`` defaults to ``2.5 * eps / steps``)."""

FGSM_STRENGTHS: dict[str, dict[str, float]] = {
    "low": {"eps": 4 / 255},
    "mid": {"eps": 8 / 255},
    "high": {"eps": 16 / 255},
}
"""FGSM settings per strength."""


@contextlib.contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """Eval mode and ``requires_grad=False`` on every parameter for the block; both restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in flags:
            p.requires_grad_(flag)


def _embeddings(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    out = model(x)
    return [out] if isinstance(out, torch.Tensor) else list(out)


def identity_similarity(model: nn.Module, x: torch.Tensor, clean: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-image identity objective (Eq. 12): mean over recognizers of ``cos(E_k(x), clean_k)``, shape ``(B,)``.

    Args:
        model: a :class:`~nullswap.recognizers.ensemble.RecognizerEnsemble` (or any module returning one embedding
            tensor or a list of them).
        x: crops ``(B,3,H,W)``.
        clean: reference embeddings, one ``(B, D_k)`` tensor per recognizer.
    """
    embs = _embeddings(model, x)
    if len(embs) != len(clean):
        raise InputError(f"expected {len(clean)} embeddings from the ensemble, got {len(embs)}")
    sims = [F.cosine_similarity(e.float(), c.float(), dim=1) for e, c in zip(embs, clean, strict=True)]
    return torch.stack(sims, 0).mean(0)


def _check_args(images: torch.Tensor, ensemble: object, eps: float) -> None:
    check_image_batch(images, "images")
    if not isinstance(ensemble, nn.Module):
        raise InputError(f"ensemble: expected a RecognizerEnsemble (nn.Module), got {type(ensemble).__name__}")
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 <= eps <= 1:
        raise InputError(f"eps: expected a number in [0, 1] (L_inf budget in [0,1] pixel units), got {eps!r}")


def _grad(model: nn.Module, x: torch.Tensor, clean: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the summed per-image objective w.r.t. ``x`` only (no ``.grad`` is written anywhere)."""
    x = x.detach().requires_grad_(True)
    sim = identity_similarity(model, x, clean)
    (g,) = torch.autograd.grad(sim.sum(), x)
    return g, sim.detach()


@contextlib.contextmanager
def _grad_mode() -> Iterator[None]:
    """Autograd on, whatever the caller's mode (``torch.no_grad`` or ``torch.inference_mode``)."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def fgsm(
    images: torch.Tensor,
    ensemble: nn.Module,
    eps: float = 8 / 255,
    *,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Identity-targeted FGSM (Goodfellow et al. 2015), by default with the R+FGSM random step (Tramer et al. 2018).

    ``L`` is the per-image Eq. 12 cosine between the perturbed and clean embeddings, averaged over the ensemble.
    Because the embeddings are L2-normalised, ``x' = x`` is an exact maximum of ``L`` and its gradient there is zero
    (the sign is then only rounding noise, or 0). So by default the step is taken from a random corner
    ``x0 = clip(x + (eps/2) * sign(N(0, I)))``: ``x' = clip(x0 - (eps/2) * sign(grad L(x0)))`` (R+FGSM), which keeps
    ``|x' - x| <= eps``. With ``random_start=False`` it is the plain ``clip(x - eps * sign(grad L(x)))``.

    Args:
        images: crops ``(B,3,H,W)`` in [0,1] aligned to the ensemble's source template.
        ensemble: a :class:`RecognizerEnsemble` (any module returning embeddings works).
        eps: L_inf budget in [0,1] pixel units.
        random_start: take the R+FGSM random step first (recommended, see above).
        generator: random source of the random step (on CPU or the images' device); seeded runs are repeatable.

    Returns:
        Adversarial crops, same shape/device/dtype, with ``|adv - images| <= eps`` and values in [0,1] (detached).
        The ensemble's train/eval modes and ``requires_grad`` flags are restored; no parameter gradients are left.

    Raises:
        InputError: for a bad batch, ensemble or eps.
    """
    _check_args(images, ensemble, eps)
    with _grad_mode(), _frozen(ensemble):
        x = images.detach().clone()
        if x.shape[0] == 0 or eps == 0:
            return x
        with torch.no_grad():
            clean = [e.detach() for e in _embeddings(ensemble, x)]
        if random_start:
            dev = generator.device if generator is not None else x.device
            r = torch.randn(x.shape, generator=generator, device=dev, dtype=torch.float32).to(x.device, x.dtype)
            x0, step = (x + 0.5 * eps * r.sign()).clamp(0, 1), 0.5 * eps
        else:
            x0, step = x, eps
        g, _ = _grad(ensemble, x0, clean)
        adv = x0 - step * g.sign()
        adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1)
        return adv.detach()


def pgd(
    images: torch.Tensor,
    ensemble: nn.Module,
    eps: float = 8 / 255,
    steps: int = 50,
    alpha: float | None = None,
    random_start: bool = True,
    generator: torch.Generator | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Identity-targeted PGD (Madry et al. 2018) under an L_inf budget.

    Minimises the per-image Eq. 12 objective (mean over recognizers of the cosine between the perturbed and the
    clean embeddings) with signed-gradient steps, projecting onto the eps-ball around ``images`` and onto [0,1]
    after each step. The last iterate is returned.

    Args:
        images: crops ``(B,3,H,W)`` in [0,1] aligned to the ensemble's source template.
        ensemble: a :class:`RecognizerEnsemble` (any module returning embeddings works).
        eps: L_inf budget in [0,1] pixel units.
        steps: number of iterations (>= 1).
        alpha: step size; ``None`` gives ``2.5 * eps / steps`` (Madry-lab convention).
        random_start: start from a uniform random point of the eps-ball (clipped to [0,1]). Without it the first
            gradient is zero up to rounding (``x`` maximises the cosine), so the first step is not informative.
        generator: random source of the start (on CPU or the images' device); seeded runs are repeatable.
        on_step: called as ``on_step(steps done, steps)`` after every step (progress only; it cannot change the
            result).

    Returns:
        Adversarial crops, same shape/device/dtype, detached, ``|adv - images| <= eps``, values in [0,1].
        The ensemble's train/eval modes and ``requires_grad`` flags are restored; no parameter gradients are left.

    Raises:
        InputError: for a bad batch, ensemble, eps, steps or alpha.
    """
    _check_args(images, ensemble, eps)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps: expected an int >= 1, got {steps!r}")
    if alpha is None:
        alpha = 2.5 * eps / steps
    elif isinstance(alpha, bool) or not isinstance(alpha, int | float) or alpha <= 0:
        raise InputError(f"alpha: expected a positive number, got {alpha!r}")
    with _grad_mode(), _frozen(ensemble):
        x = images.detach().clone()
        if x.shape[0] == 0 or eps == 0:
            return x
        with torch.no_grad():
            clean = [e.detach() for e in _embeddings(ensemble, x)]
        if random_start:
            dev = generator.device if generator is not None else x.device
            u = torch.rand(x.shape, generator=generator, device=dev, dtype=torch.float32).to(x.device, x.dtype)
            adv = (x + (2 * u - 1) * eps).clamp(0, 1)
        else:
            adv = x.clone()
        sim = None
        for i in range(steps):
            g, sim = _grad(ensemble, adv, clean)
            adv = adv - alpha * g.sign()
            adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1).detach()
            if on_step is not None:
                on_step(i + 1, steps)
        if sim is not None:
            log.debug("pgd: eps=%.4g steps=%d alpha=%.4g, cosine before last step %.4f", eps, steps, alpha,
                      float(sim.mean()))
        return adv


def __getattr__(name: str) -> object:
    """``PGDProtector`` / ``FGSMProtector`` moved to :mod:`nullswap.protectors.pgd`; imported from here on demand.

    (A module-level import would put ``nullswap.attacks`` and ``nullswap.protectors`` in an import circle.)
    """
    if name in ("PGDProtector", "FGSMProtector"):
        from nullswap.protectors import pgd as _pgd

        return getattr(_pgd, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_RECOGNIZERS",
    "FGSM_STRENGTHS",
    "PGD_STRENGTHS",
    "FGSMProtector",  # noqa: F822 - resolved by __getattr__ (nullswap.protectors.pgd)
    "PGDProtector",  # noqa: F822
    "fgsm",
    "identity_similarity",
    "pgd",
]
