"""The retentive-defense training recipe (retentive-defense.txt, Sec. 3.2) and the base shared by ID-Guard and ARS.

One iteration: ``x_adv = PG(x)`` (Eq. 2-3), ``G(x_adv)`` through the frozen manipulation model, the loss of Eq. 8;
there is no discriminator. :class:`DefenseRecipe` holds what the ID-Guard / ARS / retentive recipes share: the frozen
manipulator and recognizer ensemble, train/eval handling, state dicts restricted to the trainable networks, and the
manipulation condition of each step (:meth:`DefenseRecipe.condition`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import _IncompatibleKeys

from nullswap.errors import InputError
from nullswap.faces.templates import get_template
from nullswap.losses.retentive import RetentiveLoss, l2_distance
from nullswap.manipulators.base import FaceSwapper, Manipulator
from nullswap.protectors.base import Protector
from nullswap.protectors.retentive import (
    PerturbationProtector,
    RetentiveConfig,
    RetentiveGenerator,
    config_from_dict,
    save_retentive,
    template_for,
)
from nullswap.recognizers.ensemble import RecognizerEnsemble

log = logging.getLogger(__name__)

_TRAINABLE = ("generator", "discriminator")


def build_manipulator(cfg: dict[str, Any], image_size: int) -> Manipulator:
    """The frozen manipulation model ``create_manipulator(cfg["manipulator"])``, checked against ``image_size``.

    Raises:
        InputError: no ``manipulator`` in the config, or a manipulator whose crop size is not ``image_size``.
    """
    from nullswap.manipulators import create_manipulator

    name = cfg.get("manipulator")
    if not name:
        raise InputError("manipulator: expected a manipulator name (see nullswap.manipulators.list_manipulators), "
                         "got none")
    m = create_manipulator(str(name))
    if tuple(m.input_size) != (image_size, image_size):
        raise InputError(f"manipulator {name!r}: expected crops of {image_size}x{image_size} to match "
                         f"model.image_size, got {tuple(m.input_size)}")
    return m


def build_ensemble(cfg: dict[str, Any], image_size: int, weights_dir: str | None = None) -> RecognizerEnsemble:
    """Recognizer ensemble of ``cfg["recognizers"]`` (may be empty) on the crops' template.

    Raises:
        InputError: a ``data.template`` whose size is not ``image_size``.
    """
    template = (cfg.get("data") or {}).get("template") or template_for(image_size)
    if tuple(get_template(template).size) != (image_size, image_size):
        raise InputError(f"data.template: expected a {image_size}x{image_size} template to match model.image_size, "
                         f"got {template!r} of size {tuple(get_template(template).size)}")
    return RecognizerEnsemble(list(cfg.get("recognizers") or []), source_template=template, weights_dir=weights_dir)


class DefenseRecipe(nn.Module):
    """Base of the perturbation-generator recipes: frozen ``manipulator`` / ``ensemble`` helpers + trainable nets.

    Subclasses set ``self.generator`` and ``self.discriminator`` and implement the steps. The helpers are
    registered submodules (``recipe.to(device)`` moves them) but never appear in :meth:`state_dict` or
    :meth:`optimizer_groups`.
    """

    generator: nn.Module
    discriminator: nn.Module | None

    def __init__(self, manipulator: Manipulator, ensemble: RecognizerEnsemble, **helpers: nn.Module | None) -> None:
        super().__init__()
        self.manipulator = manipulator
        self.ensemble = ensemble
        self._helper_names = ["manipulator", "ensemble"]
        for name, mod in helpers.items():
            setattr(self, name, mod)
            if mod is not None:
                self._helper_names.append(name)
        for name in self._helper_names:
            mod = getattr(self, name)
            mod.eval()
            for p in mod.parameters():
                p.requires_grad_(False)
        self.discriminator = None

    def train(self, mode: bool = True) -> DefenseRecipe:
        """Train/eval mode for the trainable networks; the frozen helpers always stay in eval mode."""
        super().train(mode)
        for name in self._helper_names:
            getattr(self, name).eval()
        return self

    def state_dict(self, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False) -> Any:
        """State of ``generator`` and ``discriminator`` only."""
        out = OrderedDict() if destination is None else destination
        for name in _TRAINABLE:
            mod = getattr(self, name, None)
            if mod is not None:
                mod.state_dict(destination=out, prefix=f"{prefix}{name}.", keep_vars=keep_vars)
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Load a :meth:`state_dict`.

        Raises:
            RuntimeError: with ``strict``, missing or unexpected keys.
        """
        missing: list[str] = []
        unexpected = [k for k in state_dict if k.split(".", 1)[0] not in _TRAINABLE
                      or getattr(self, k.split(".", 1)[0], None) is None]
        for name in _TRAINABLE:
            mod = getattr(self, name, None)
            if mod is None:
                continue
            sub = {k[len(name) + 1:]: v for k, v in state_dict.items() if k.startswith(name + ".")}
            res = mod.load_state_dict(sub, strict=False, assign=assign)
            missing += [f"{name}.{k}" for k in res.missing_keys]
            unexpected += [f"{name}.{k}" for k in res.unexpected_keys]
        if strict and (missing or unexpected):
            raise RuntimeError(f"{type(self).__name__}.load_state_dict: missing keys {missing}, "
                               f"unexpected keys {unexpected}")
        return _IncompatibleKeys(missing, unexpected)

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters: ``{"generator": [...], "discriminator": [...]}``."""
        gen = [p for p in self.generator.parameters() if p.requires_grad]
        disc = [p for p in self.discriminator.parameters() if p.requires_grad] if self.discriminator is not None else []
        return {"generator": gen, "discriminator": disc}

    def extra_state(self) -> dict[str, Any]:
        """JSON-serialisable non-tensor state (none by default)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`extra_state` output (nothing by default)."""

    def discriminator_step(self, images: torch.Tensor, protected: torch.Tensor
                           ) -> tuple[torch.Tensor, dict[str, float]]:
        """No discriminator by default.

        Raises:
            InputError: always, for recipes without a discriminator.
        """
        raise InputError(f"{type(self).__name__}.discriminator_step: expected a recipe with a discriminator, got none")

    def condition(self, x: torch.Tensor, generator: torch.Generator | None = None,
                  manipulator: Manipulator | None = None) -> torch.Tensor | None:
        """The manipulation condition ``c`` of ``G(x, c)`` for clean crops (``manipulator`` defaults to the first).

        Choice (the papers fix one edit per run or enumerate the attribute domains): ``"none"`` -> ``None``;
        ``"identity"`` (a face swapper) -> the swapper's identity of the batch rolled by one (every face gets another
        face of the batch as source; itself for a batch of one); ``"attributes"`` -> a random binary target vector of
        ``manipulator.num_attributes`` (or ``c_dim``; default 5, the papers' five CelebA attributes) per image.
        """
        m = self.manipulator if manipulator is None else manipulator
        kind = getattr(m, "condition", "none")
        if kind == "none":
            return None
        if kind == "identity":
            if not isinstance(m, FaceSwapper):
                raise InputError(f"manipulator: expected a FaceSwapper for condition 'identity', "
                                 f"got {type(m).__name__}")
            with torch.no_grad():
                return m.identity(x.roll(1, 0)).detach()
        if kind == "attributes":
            n = int(getattr(m, "num_attributes", getattr(m, "c_dim", 5)))
            return torch.randint(0, 2, (x.shape[0], n), generator=generator).to(x.device, x.dtype)
        raise InputError(f"manipulator condition: expected 'none', 'identity' or 'attributes', got {kind!r}")


class RetentiveRecipe(DefenseRecipe):
    """PG (U-Net) trained with Eq. 8 against one frozen manipulator.

    Args:
        model_cfg: :class:`~nullswap.protectors.retentive.RetentiveConfig` fields.
        loss_cfg: :class:`~nullswap.losses.retentive.RetentiveLoss` arguments.
        manipulator: the frozen ``G``.
        ensemble: recognizers for the trainer's evaluation (may be empty).
        perceptual: frozen ``F``-distance of Eq. 5 ``(x, y) -> (B,)`` (or ``None``).
    """

    def __init__(self, model_cfg: dict[str, Any], loss_cfg: dict[str, Any], manipulator: Manipulator,
                 ensemble: RecognizerEnsemble, perceptual: nn.Module | None = None) -> None:
        super().__init__(manipulator, ensemble, perceptual=perceptual)
        self.config = config_from_dict(RetentiveConfig, model_cfg, "retentive model")
        self.loss_cfg = dict(loss_cfg or {})
        self.criterion = RetentiveLoss(**self.loss_cfg)
        self.generator = RetentiveGenerator(self.config)
        log.info("retentive recipe: generator %d params, manipulator %s",
                 sum(p.numel() for p in self.generator.parameters()), getattr(manipulator, "name", "?"))

    @classmethod
    def from_config(cls, cfg: dict[str, Any], weights_dir: str | None = None) -> RetentiveRecipe:
        """Build from a training config: ``model``, ``loss``, ``manipulator``, ``recognizers``, ``perceptual``."""
        from nullswap.metrics.perceptual import create_perceptual

        model_cfg = dict(cfg.get("model") or {})
        size = config_from_dict(RetentiveConfig, model_cfg, "retentive model").image_size
        loss_cfg = dict(cfg.get("loss") or {})
        perceptual = None
        if float(loss_cfg.get("lambda_feat", 1.0)) > 0:
            perceptual = create_perceptual(cfg.get("perceptual", "auto"))
        return cls(model_cfg, loss_cfg, build_manipulator(cfg, size), build_ensemble(cfg, size, weights_dir),
                   perceptual)

    def generator_step(self, images: torch.Tensor, epoch: int) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
        """Eq. 8 on a batch of clean crops; returns ``(loss, logs, x_adv)``."""
        x_adv = self.generator(images)
        out_adv = self.manipulator(x_adv, self.condition(images))
        loss, logs = self.criterion(images, x_adv, out_adv, self.perceptual)
        with torch.no_grad():
            logs["rms/perturbation"] = float(l2_distance(x_adv, images))
        return loss, logs, x_adv

    def protector(self, strength: str | float = "mid") -> Protector:
        """A protector sharing ``self.generator``."""
        return PerturbationProtector(self.generator, self.config.image_size, strength, name="retentive")

    def export(self, out_dir: str, meta: dict[str, Any]) -> None:
        """Write ``model.safetensors`` + ``config.json``."""
        extra = {**dict(meta or {}), "manipulator": getattr(self.manipulator, "name", None), "loss": self.loss_cfg,
                 "recognizers": list(self.ensemble.names)}
        save_retentive(out_dir, self.generator, self.config, extra)


__all__ = ["DefenseRecipe", "RetentiveRecipe", "build_ensemble", "build_manipulator"]
