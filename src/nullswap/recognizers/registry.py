"""Recognizer registry and factory: ``create_recognizer(name)``, ``list_recognizers()`` (like timm's create_model)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from nullswap.recognizers.base import FaceRecognizer, RecognizerInfo
from nullswap.registry import Registry, check_keywords

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Entry:
    info: RecognizerInfo
    factory: Callable[..., FaceRecognizer]


def _load_builtins() -> None:
    # importing the model modules registers them
    import nullswap.recognizers.zoo  # noqa: F401


#: Recognizer factories and their :class:`RecognizerInfo`, by name (built-ins load at the first lookup).
RECOGNIZERS: Registry[_Entry] = Registry("recognizer", loader=_load_builtins)


def register_recognizer(info: RecognizerInfo):
    """Decorator registering a factory ``f(pretrained: bool, weights_dir, checkpoint) -> FaceRecognizer``.

    Factories must accept ``pretrained``, ``weights_dir`` (a folder searched first by the hub) and ``checkpoint``
    (an explicit file a user supplies) keyword arguments.

    Raises:
        DuplicateNameError: a recognizer of that name is already registered.
    """

    def deco(factory: Callable[..., FaceRecognizer]) -> Callable[..., FaceRecognizer]:
        RECOGNIZERS.register(info.name, _Entry(info, factory))
        return factory

    return deco


def list_recognizers(offline_only: bool = False) -> list[str]:
    """Registered recognizer names; ``offline_only`` keeps those whose weights are obtainable offline."""
    return [n for n, e in RECOGNIZERS.items() if e.info.offline or not offline_only]


def recognizer_info(name: str) -> RecognizerInfo:
    """The :class:`RecognizerInfo` of a registered recognizer.

    Raises:
        UnknownModelError: for an unknown name.
    """
    return RECOGNIZERS.get(name).info


def _create_keywords(pretrained: bool = True, weights_dir: str | None = None, checkpoint: str | None = None,
                     device: str | torch.device | None = None) -> None:
    """The keyword arguments :func:`create_recognizer` takes (for the message of an unknown one)."""


def create_recognizer(
    name: str,
    pretrained: bool = True,
    *,
    weights_dir: str | None = None,
    checkpoint: str | None = None,
    device: str | torch.device | None = None,
    **unknown: object,
) -> FaceRecognizer:
    """Build a recognizer by name, in eval mode with frozen parameters.

    Args:
        name: a name from :func:`list_recognizers`.
        pretrained: load the real weights (through the hub); ``False`` gives random weights for tests.
        weights_dir: folder searched first for weight files.
        checkpoint: explicit weight file (for models whose weights users supply themselves).
        device: where to put the module.
        **unknown: nothing else is accepted (a misspelled keyword raises :class:`InputError`).

    Raises:
        UnknownModelError: for an unknown name.
        InputError: a keyword argument other than those above (a misspelling), naming the accepted ones.
        WeightsError: when the weights cannot be found or loaded.
    """
    entry = RECOGNIZERS.get(name)
    if unknown:
        check_keywords("recognizer", name, _create_keywords, unknown)
    model = entry.factory(pretrained=pretrained, weights_dir=weights_dir, checkpoint=checkpoint)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if device is not None:
        model.to(device)
    return model
