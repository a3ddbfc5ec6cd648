"""The manipulation-model interface ``G(x, condition) -> image`` and its registry.

Manipulators are what proactive defenses protect against: attribute editors (StarGAN), face swappers (SimSwap and the
project's identity-injection swapper) and reconstruction surrogates (ID-Guard's M_s). They take aligned face crops
(RGB float ``(B,3,H,W)`` in [0,1], template :attr:`Manipulator.template`) and return manipulated crops of the same
shape in [0,1]. They are differentiable, so white/grey-box protectors (ID-Guard, ARS, retentive) can train through them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from nullswap.checks import check_image_batch
from nullswap.errors import InputError
from nullswap.faces.templates import get_template
from nullswap.registry import Registry, check_keywords


class Manipulator(nn.Module):
    """A face manipulation model.

    Attributes:
        name: registry name.
        template: alignment template of the crops it takes.
        condition: what ``condition`` means: ``"none"`` (reconstruction), ``"attributes"`` (a ``(B,c)`` target
            attribute vector), ``"identity"`` (a ``(B,D)`` source identity embedding).
    """

    name: str = "manipulator"
    template: str = "protector-256"
    condition: str = "none"

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the crops."""
        return get_template(self.template).size

    def check_input(self, x: torch.Tensor) -> torch.Tensor:
        """Validate crops: RGB float ``(B,3,H,W)`` in [0,1] of the template's size."""
        check_image_batch(x, f"{self.name} input")
        if tuple(x.shape[-2:]) != tuple(self.input_size):
            raise InputError(f"{self.name}: expected crops of size {tuple(self.input_size)}, got {tuple(x.shape[-2:])}")
        return x

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """Manipulated crops, same shape as ``x``, in [0,1]."""
        raise NotImplementedError


class FaceSwapper(Manipulator):
    """A face swapper: puts the identity of a source face onto target faces.

    ``forward(target, condition=source_identity_embedding)``; :meth:`identity` is the swapper's own identity extractor
    (the component NullSwap attacks); :meth:`swap` chains the two.
    """

    condition = "identity"

    def identity(self, source: torch.Tensor) -> torch.Tensor:
        """Identity embeddings ``(B,D)`` of source crops."""
        raise NotImplementedError

    def swap(self, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """The target crops with the source crops' identities."""
        return self(target, self.identity(source))


@dataclass(frozen=True)
class _Entry:
    name: str
    factory: Callable[..., Manipulator]
    description: str


def _load_builtins() -> None:
    import nullswap.manipulators.zoo  # noqa: F401  (registers the built-in manipulators)


#: Manipulator factories and descriptions by name (built-ins load at the first lookup).
MANIPULATORS: Registry[_Entry] = Registry("manipulator", loader=_load_builtins)


def register_manipulator(name: str, description: str = "") -> Callable[[Callable[..., Manipulator]],
                                                                       Callable[..., Manipulator]]:
    """Decorator registering a factory ``factory(**kwargs) -> Manipulator``.

    Raises:
        DuplicateNameError: a manipulator of that name is already registered.
    """

    def deco(factory: Callable[..., Manipulator]) -> Callable[..., Manipulator]:
        MANIPULATORS.register(name, _Entry(name, factory, description))
        return factory

    return deco


def list_manipulators() -> list[str]:
    """Registered manipulator names."""
    return MANIPULATORS.names()


def unused_model_kwargs(name: str, model_kwargs: dict[str, object]) -> None:
    """Raise when architecture keywords come with ``pretrained=True`` (the checkpoint fixes the architecture).

    Raises:
        InputError: naming the keywords that would be ignored.
    """
    if model_kwargs:
        raise InputError(
            f"manipulator {name!r}: expected architecture keywords only with pretrained=False (a checkpoint fixes the "
            f"architecture), got {sorted(model_kwargs)} with pretrained=True"
        )


def create_manipulator(name: str, **kwargs: object) -> Manipulator:
    """Build a manipulator by name (frozen, eval mode when it loads trained weights).

    Raises:
        UnknownModelError: unknown name.
        InputError: a keyword argument the factory does not take, naming the accepted ones.
    """
    entry = MANIPULATORS.get(name)
    check_keywords("manipulator", name, entry.factory, kwargs)
    return entry.factory(**kwargs)


__all__ = ["FaceSwapper", "Manipulator", "create_manipulator", "list_manipulators", "register_manipulator"]
