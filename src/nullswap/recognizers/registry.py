"""Recognizer registry and factory: ``create_recognizer(name)``, ``list_recognizers()`` (like timm's create_model)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from nullswap.errors import UnknownModelError
from nullswap.recognizers.base import FaceRecognizer, RecognizerInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Entry:
    info: RecognizerInfo
    factory: Callable[..., FaceRecognizer]


_REGISTRY: dict[str, _Entry] = {}


def register_recognizer(info: RecognizerInfo):
    """Decorator registering a factory ``f(pretrained: bool, weights_dir, checkpoint) -> FaceRecognizer``.

    Factories must accept ``pretrained``, ``weights_dir`` (a folder searched first by the hub) and ``checkpoint``
    (an explicit file a user supplies) keyword arguments.
    """

    def deco(factory: Callable[..., FaceRecognizer]) -> Callable[..., FaceRecognizer]:
        if info.name in _REGISTRY:
            raise ValueError(f"recognizer {info.name!r} is already registered")
        _REGISTRY[info.name] = _Entry(info, factory)
        return factory

    return deco


def _ensure_loaded() -> None:
    # importing the model modules registers them
    import nullswap.recognizers.zoo  # noqa: F401


def list_recognizers(offline_only: bool = False) -> list[str]:
    """Registered recognizer names; ``offline_only`` keeps those whose weights are obtainable offline."""
    _ensure_loaded()
    return sorted(n for n, e in _REGISTRY.items() if e.info.offline or not offline_only)


def recognizer_info(name: str) -> RecognizerInfo:
    """The :class:`RecognizerInfo` of a registered recognizer."""
    _ensure_loaded()
    try:
        return _REGISTRY[name].info
    except KeyError:
        raise UnknownModelError("recognizer", name, list(_REGISTRY)) from None


def create_recognizer(
    name: str,
    pretrained: bool = True,
    *,
    weights_dir: str | None = None,
    checkpoint: str | None = None,
    device: str | torch.device | None = None,
) -> FaceRecognizer:
    """Build a recognizer by name, in eval mode with frozen parameters.

    Args:
        name: a name from :func:`list_recognizers`.
        pretrained: load the real weights (through the hub); ``False`` gives random weights for tests.
        weights_dir: folder searched first for weight files.
        checkpoint: explicit weight file (for models whose weights users supply themselves).
        device: where to put the module.

    Raises:
        UnknownModelError: for an unknown name.
        WeightsError: when the weights cannot be found or loaded.
    """
    _ensure_loaded()
    try:
        entry = _REGISTRY[name]
    except KeyError:
        raise UnknownModelError("recognizer", name, list(_REGISTRY)) from None
    model = entry.factory(pretrained=pretrained, weights_dir=weights_dir, checkpoint=checkpoint)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if device is not None:
        model.to(device)
    return model
