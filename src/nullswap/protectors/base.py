"""The :class:`Protector` interface every defense implements, and the protector registry.

A protector takes aligned face crops (RGB float ``(B,3,H,W)`` in ``[0,1]``, aligned to :attr:`Protector.template`)
and returns protected crops of the same shape in ``[0,1]``. The face pipeline (detect, align, paste back) is shared by
all protectors, so a protector only ever sees crops.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from nullswap.checks import check_image_batch
from nullswap.errors import InputError
from nullswap.faces.templates import get_template
from nullswap.registry import Registry, check_keywords

log = logging.getLogger(__name__)

#: ``strength`` -> factor on a learned perturbation (NullSwap's output residual; ID-Guard/ARS/retentive perturbation
#: and its bound ``eps``). Choice: 0.5 / 1.0 / 1.5; ``"mid"`` is the trained operating point.
STRENGTH_SCALES: dict[str, float] = {"low": 0.5, "mid": 1.0, "high": 1.5}


def strength_scale(strength: str | float) -> float:
    """The perturbation factor of a strength name (:data:`STRENGTH_SCALES`) or a positive number.

    Raises:
        InputError: unknown name or a non-positive number.
    """
    if isinstance(strength, str):
        if strength not in STRENGTH_SCALES:
            raise InputError(f"strength: expected one of {list(STRENGTH_SCALES)} or a number > 0, got {strength!r}")
        return STRENGTH_SCALES[strength]
    if isinstance(strength, bool) or not isinstance(strength, int | float) or not math.isfinite(strength) \
            or strength <= 0:
        raise InputError(f"strength: expected one of {list(STRENGTH_SCALES)} or a number > 0, got {strength!r}")
    return float(strength)


class Protector(nn.Module):
    """A face-crop protector: ``protect(crops) -> protected crops``.

    Attributes:
        name: registry name (``"nullswap"``, ``"pgd"``, ...).
        template: alignment template of the crops it expects (``"protector-256"`` by default).
        on_step: progress of an iterative protector (PGD, NullSwap's refinement steps): if set, called as
            ``on_step(steps done, steps)`` after every step of a :meth:`protect` call; one-pass protectors never
            call it. Progress only: it cannot change the result.
    """

    name: str = "protector"
    template: str = "protector-256"
    on_step: Callable[[int, int], None] | None = None

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the crops."""
        return get_template(self.template).size

    def check_input(self, faces: torch.Tensor) -> torch.Tensor:
        """Validate a crop batch: RGB float ``(B,3,H,W)`` in [0,1] of the template's size."""
        check_image_batch(faces, f"{self.name} input")
        if tuple(faces.shape[-2:]) != tuple(self.input_size):
            raise InputError(
                f"{self.name}: expected crops of size {tuple(self.input_size)} (template {self.template!r}), "
                f"got {tuple(faces.shape[-2:])}"
            )
        return faces

    def protect(self, faces: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Protected crops, same shape as ``faces``, in [0,1].

        Args:
            faces: aligned crops ``(B,3,H,W)`` in [0,1].
            generator: random source for stochastic protectors (seeded runs are repeatable).
        """
        raise NotImplementedError

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`protect` without a generator."""
        return self.protect(faces)


class IdentityProtector(Protector):
    """The "no protection" reference row: returns the crops unchanged (named ``clean`` and ``identity``)."""

    name = "clean"

    def check_input(self, faces: torch.Tensor) -> torch.Tensor:
        """Any crop size is accepted (the reference row works with every template)."""
        check_image_batch(faces, f"{self.name} input")
        return faces

    def protect(self, faces: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """The crops, unchanged (a copy)."""
        return self.check_input(faces).clone()


@dataclass(frozen=True)
class _Entry:
    name: str
    factory: Callable[..., Protector]
    description: str


def _load_builtins() -> None:
    import nullswap.protectors.zoo  # noqa: F401  (registers the built-in protectors)


#: Protector factories and descriptions by name (built-ins load at the first lookup).
PROTECTORS: Registry[_Entry] = Registry("protector", loader=_load_builtins)


def register_protector(
    name: str, description: str = ""
) -> Callable[[Callable[..., Protector]], Callable[..., Protector]]:
    """Decorator registering a protector factory ``factory(**kwargs) -> Protector`` under ``name``.

    The factory names the keyword arguments it takes; :func:`create_protector` rejects any other (a ``**_`` does not
    accept them; a ``**kwargs`` of another name forwards them to code that checks them). Callers pass ``strength``
    and ``device`` to every method, so a factory should take both.

    Raises:
        DuplicateNameError: a protector of that name is already registered.
    """

    def deco(factory: Callable[..., Protector]) -> Callable[..., Protector]:
        PROTECTORS.register(name, _Entry(name, factory, description))
        return factory

    return deco


def list_protectors() -> list[str]:
    """Names of all registered protectors."""
    return PROTECTORS.names()


def protector_description(name: str) -> str:
    """One-line description of a registered protector.

    Raises:
        UnknownModelError: for an unknown name, listing the known ones.
    """
    return PROTECTORS.get(name).description


def create_protector(name: str, **kwargs: object) -> Protector:
    """Build a registered protector by name.

    Args:
        name: a name from :func:`list_protectors`.
        **kwargs: the factory's keyword arguments (``checkpoint``, ``strength``, ``device``, ...).

    Raises:
        UnknownModelError: for an unknown name, listing the known ones.
        InputError: a keyword argument the factory does not take, naming the accepted ones.
    """
    entry = PROTECTORS.get(name)
    check_keywords("protector", name, entry.factory, kwargs)
    return entry.factory(**kwargs)


def _make_identity(strength: str | float = "mid", device: str | torch.device | None = None) -> IdentityProtector:
    """Factory of the reference row; ``strength`` and ``device`` are accepted (callers pass them to every method)."""
    return IdentityProtector()


register_protector("clean", "no protection (reference row)")(_make_identity)
register_protector("identity", "no protection (alias of clean)")(_make_identity)

__all__ = [
    "IdentityProtector",
    "Protector",
    "create_protector",
    "list_protectors",
    "protector_description",
    "register_protector",
    "STRENGTH_SCALES",
    "strength_scale",
]
