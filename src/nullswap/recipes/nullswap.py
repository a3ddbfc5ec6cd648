"""The NullSwap training recipe (nullswap.txt, Sec. 3 and 4.1) for the generic Fabric trainer.

One training iteration: the generator produces ``I'_s``, the total loss of Eq. 13 (DLW identity loss over the
recognizer ensemble, MSE, perceptual and the adversarial term of Eq. 11) updates the generator, then the discriminator
is updated with Eq. 10 on ``I_s`` vs the detached ``I'_s``.

The recognizer ensemble and the perceptual network are frozen helpers. Choice: they are registered submodules (so
``recipe.to(device)`` moves them) but :meth:`NullSwapRecipe.state_dict` / :meth:`NullSwapRecipe.load_state_dict` only
cover ``generator.*`` and ``discriminator.*``, and :meth:`NullSwapRecipe.optimizer_groups` never lists their
parameters.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import _IncompatibleKeys

from nullswap.errors import InputError
from nullswap.losses.adversarial import discriminator_loss
from nullswap.losses.eot import EOTConfig, RandomDegradation
from nullswap.losses.identity import clean_embeddings
from nullswap.losses.nullswap import NullSwapLoss
from nullswap.protectors.base import Protector
from nullswap.protectors.nullswap import (
    NullSwapConfig,
    NullSwapDiscriminator,
    NullSwapGenerator,
    NullSwapProtector,
    count_parameters,
    save_nullswap,
)
from nullswap.recognizers.ensemble import RecognizerEnsemble

log = logging.getLogger(__name__)

_TRAINABLE = ("generator", "discriminator")


class NullSwapRecipe(nn.Module):
    """NullSwap generator + discriminator with the Eq. 13 loss.

    Args:
        model_cfg: :class:`NullSwapConfig` fields.
        loss_cfg: :class:`~nullswap.losses.nullswap.NullSwapLoss` arguments (``lambda_*``, ``strategy``, ``index``,
            ``dlw``). With ``lambda_d == 0`` no discriminator is built (``discriminator is None``).
        ensemble: frozen recognizer ensemble fed with the generator's crops.
        perceptual: frozen perceptual distance ``(x, y) -> (B,)`` on [0,1] images (Eq. 9).
        eot: expectation over transformation (:class:`~nullswap.losses.eot.EOTConfig` fields); ``None`` = off.
        seed: seed of the EOT draws.
        teacher: per-crop teacher targets for the loss's ``lambda_distill`` term
            (:class:`~nullswap.datasets.teacher_targets.TeacherLookup`); used when :meth:`generator_step` is given the
            batch's dataset indices.

    Clean embeddings are the fixed targets of Eq. 12, so when :meth:`generator_step` is given the dataset indices of
    the batch they are computed once per crop and kept (on the CPU) for later epochs: a recognizer forward pass per
    image saved from every step after the first epoch.
    """

    def __init__(
        self,
        model_cfg: dict[str, Any],
        loss_cfg: dict[str, Any],
        ensemble: RecognizerEnsemble,
        perceptual: nn.Module,
        eot: dict[str, Any] | None = None,
        seed: int = 0,
        teacher: Any = None,
    ) -> None:
        super().__init__()
        self.config = NullSwapConfig.from_dict(model_cfg)
        self.loss_cfg = dict(loss_cfg or {})
        self.criterion = NullSwapLoss.from_config(self.loss_cfg, list(ensemble.names))
        self.generator: nn.Module = NullSwapGenerator(self.config)
        self.discriminator: nn.Module | None = (
            NullSwapDiscriminator(self.config) if self.criterion.lambda_d > 0 else None
        )
        self.ensemble = ensemble
        self.perceptual = perceptual
        self.eot_config = EOTConfig.from_dict(eot) if eot is not None else None
        self.degrade = RandomDegradation(self.eot_config, seed) if self.eot_config is not None else None
        self._emb_cache: dict[int, list[torch.Tensor]] = {}
        self.teacher = teacher
        if teacher is not None and self.criterion.lambda_distill <= 0:
            raise InputError("teacher: expected loss.lambda_distill > 0 to use teacher targets, got "
                             f"{self.criterion.lambda_distill}")
        for helper in (ensemble, perceptual):
            helper.eval()
            for p in helper.parameters():
                p.requires_grad_(False)
        log.info(
            "NullSwap recipe: generator %d params, discriminator %d params, recognizers %s, perceptual %s",
            count_parameters(self.generator),
            count_parameters(self.discriminator) if self.discriminator is not None else 0,
            list(ensemble.names),
            getattr(perceptual, "name", type(perceptual).__name__),
        )

    @classmethod
    def from_config(cls, cfg: dict[str, Any], weights_dir: str | None = None) -> NullSwapRecipe:
        """Build from a training config: ``model``, ``loss``, ``recognizers`` (names), ``perceptual`` (name).

        ``teacher`` (optional): ``{"targets": FILE or [FILES]}``, teacher targets made by ``nullswap teacher`` on
        this config's training crops (:mod:`nullswap.datasets.teacher_targets`), for ``loss.lambda_distill``.

        ``init`` (optional): a trained generator's checkpoint folder to start from instead of a random init; a config
        with more SEResBlocks (L, M, N) grows it function-preserving (:func:`~nullswap.protectors.nullswap.growth.
        grow_generator`). The discriminator starts fresh (its depth follows N).

        The ensemble's source template is ``cfg["data"]["template"]`` when given, else ``protector-<image_size>``.

        Raises:
            InputError: no recognizers, or a data template whose size is not ``model.image_size``.
        """
        from nullswap.metrics.perceptual import create_perceptual

        model_cfg = dict(cfg.get("model") or {})
        size = NullSwapConfig.from_dict(model_cfg).image_size
        names = list(cfg.get("recognizers") or [])
        if not names:
            raise InputError("recognizers: expected at least one recognizer name, got none")
        template = (cfg.get("data") or {}).get("template") or ("protector-128" if size == 128 else "protector-256")
        from nullswap.faces.templates import get_template

        if tuple(get_template(template).size) != (size, size):
            raise InputError(
                f"data.template: expected a {size}x{size} template to match model.image_size={size}, "
                f"got {template!r} of size {tuple(get_template(template).size)}"
            )
        ensemble = RecognizerEnsemble(names, source_template=template, weights_dir=weights_dir)
        perceptual = create_perceptual(cfg.get("perceptual", "auto"))
        teacher = None
        t_cfg = cfg.get("teacher")
        if t_cfg is not None:
            if not isinstance(t_cfg, dict) or set(t_cfg) != {"targets"}:
                raise InputError(f"teacher: expected {{targets: FILE or [FILES]}}, got {t_cfg!r}")
            from nullswap.datasets.teacher_targets import TeacherLookup, load_teacher_targets

            targets = load_teacher_targets(t_cfg["targets"])
            if targets.size != (size, size):
                raise InputError(f"teacher: expected targets of {size}x{size} crops, got {targets.size}")
            teacher = TeacherLookup(targets)
            log.info("teacher targets: %d crops (%s)", len(targets), targets.teacher)
        recipe = cls(model_cfg, dict(cfg.get("loss") or {}), ensemble, perceptual, eot=cfg.get("eot"),
                     seed=int(cfg.get("seed", 0)), teacher=teacher)
        init = cfg.get("init")
        if init is not None:  # start from a trained generator (grown if deeper); a resumed run then loads its own
            if not isinstance(init, str | Path):
                raise InputError(f"init: expected a NullSwap checkpoint folder, got {type(init).__name__} {init!r}")
            from nullswap.protectors.nullswap.growth import grow_generator

            grow_generator(recipe.generator, init)
        return recipe

    # --- modes and state --------------------------------------------------------------------------------------

    def train(self, mode: bool = True) -> NullSwapRecipe:
        """Train/eval mode for the trainable networks; the frozen helpers always stay in eval mode."""
        super().train(mode)
        self.ensemble.eval()
        self.perceptual.eval()
        return self

    def state_dict(self, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False) -> Any:
        """State of ``generator`` and ``discriminator`` only (the frozen helpers are rebuilt from their weights)."""
        out = OrderedDict() if destination is None else destination
        for name in _TRAINABLE:
            mod = getattr(self, name)
            if mod is not None:
                mod.state_dict(destination=out, prefix=f"{prefix}{name}.", keep_vars=keep_vars)
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Load a :meth:`state_dict` (``generator.*`` / ``discriminator.*`` keys).

        Raises:
            RuntimeError: with ``strict``, missing or unexpected keys (as :meth:`torch.nn.Module.load_state_dict`).
        """
        missing: list[str] = []
        unexpected = [k for k in state_dict if k.split(".", 1)[0] not in _TRAINABLE
                      or getattr(self, k.split(".", 1)[0]) is None]
        for name in _TRAINABLE:
            mod = getattr(self, name)
            if mod is None:
                continue
            sub = {k[len(name) + 1 :]: v for k, v in state_dict.items() if k.startswith(name + ".")}
            res = mod.load_state_dict(sub, strict=False, assign=assign)
            missing += [f"{name}.{k}" for k in res.missing_keys]
            unexpected += [f"{name}.{k}" for k in res.unexpected_keys]
        if strict and (missing or unexpected):
            raise RuntimeError(f"NullSwapRecipe.load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        return _IncompatibleKeys(missing, unexpected)

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters: ``{"generator": [...], "discriminator": [...]}`` (empty list without one)."""
        gen = [p for p in self.generator.parameters() if p.requires_grad]
        disc = [p for p in self.discriminator.parameters() if p.requires_grad] if self.discriminator is not None else []
        return {"generator": gen, "discriminator": disc}

    def extra_state(self) -> dict[str, Any]:
        """JSON-serialisable non-tensor state: the DLW history and the EOT draw state (exact resume)."""
        out: dict[str, Any] = {"dlw": self.criterion.state_dict()}
        if self.degrade is not None:
            version, internal, gauss = self.degrade.rng.getstate()
            out["eot_rng"] = [version, list(internal), gauss]
        return out

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`extra_state` output (a missing entry leaves a fresh history / draw state)."""
        if state and "dlw" in state:
            self.criterion.load_state_dict(state["dlw"])
        if state and "eot_rng" in state and self.degrade is not None:
            version, internal, gauss = state["eot_rng"]
            self.degrade.rng.setstate((version, tuple(internal), gauss))

    def _clean_embeddings(self, images: torch.Tensor, indices: torch.Tensor | None) -> list[torch.Tensor]:
        """Clean embeddings of the batch, from the per-crop cache where the dataset indices are known."""
        if indices is None:
            return clean_embeddings(self.ensemble, images)
        idx = [int(i) for i in indices.tolist()]
        todo = [j for j, i in enumerate(idx) if i not in self._emb_cache]
        if todo:
            fresh = clean_embeddings(self.ensemble, images[todo])
            for k, j in enumerate(todo):
                self._emb_cache[idx[j]] = [e[k].detach().cpu() for e in fresh]
        n = len(self.ensemble)
        return [torch.stack([self._emb_cache[i][r] for i in idx]).to(images.device) for r in range(n)]

    # --- steps ------------------------------------------------------------------------------------------------

    def generator_step(
        self, images: torch.Tensor, epoch: int, indices: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
        """Generator loss (Eq. 13) on a batch of clean crops ``I_s``.

        Args:
            images: ``(B,3,H,W)`` crops in [0,1] aligned to the ensemble's source template.
            epoch: 0-based epoch ``t_e`` (drives Eq. 5).
            indices: the crops' dataset indices (enables the clean-embedding cache); ``None`` computes them.

        Returns:
            ``(loss, logs, protected)``; ``protected`` is ``I'_s`` (still attached to the graph).
        """
        protected = self.generator(images)
        fake_logits = self.discriminator(protected) if self.discriminator is not None else None
        seen = self.degrade(protected) if self.degrade is not None else None
        target = mask = None
        if self.teacher is not None and indices is not None:
            target, mask = self.teacher(images, indices)
        loss, logs = self.criterion(
            images, protected, ensemble=self.ensemble, perceptual=self.perceptual, fake_logits=fake_logits,
            epoch=epoch, clean_emb=self._clean_embeddings(images, indices), seen=seen, target=target,
            target_mask=mask,
        )
        return loss, logs, protected

    def discriminator_step(
        self, images: torch.Tensor, protected: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Discriminator loss (Eq. 10, standard GAN form) on clean ``I_s`` vs detached ``I'_s``.

        Raises:
            InputError: the recipe has no discriminator (``lambda_d == 0``).
        """
        if self.discriminator is None:
            raise InputError("discriminator_step: expected a recipe with a discriminator (lambda_d > 0), got none")
        real = self.discriminator(images)
        fake = self.discriminator(protected.detach())
        loss = discriminator_loss(real, fake)
        logs = {"loss/dis": float(loss.detach()), "dis/real_prob": float(torch.sigmoid(real.detach().float()).mean()),
                "dis/fake_prob": float(torch.sigmoid(fake.detach().float()).mean())}
        return loss, logs

    # --- use ----------------------------------------------------------------------------------------------------

    def protector(self, strength: str | float = "mid") -> Protector:
        """A :class:`NullSwapProtector` sharing ``self.generator`` (its train/eval mode is left to the caller).

        It applies the training loss's ``psnr_floor`` as its inference guard, as the exported model will.
        """
        floor = self.loss_cfg.get("psnr_floor")
        return NullSwapProtector(self.generator, self.config, strength=strength,
                                 psnr_floor=None if floor is None else float(floor))

    def export(self, out_dir: str, meta: dict[str, Any]) -> None:
        """Write the generator checkpoint (``model.safetensors`` + ``config.json``) with :func:`save_nullswap`."""
        extra = {
            **dict(meta or {}),
            "recognizers": list(self.ensemble.names),
            "perceptual": getattr(self.perceptual, "name", type(self.perceptual).__name__),
            "loss": self.loss_cfg,
            "eot": self.eot_config.to_dict() if self.eot_config is not None else None,
        }
        if self.teacher is not None:  # provenance of the distillation targets (nullswap teacher)
            extra["teacher"] = {**self.teacher.targets.teacher, "crops": len(self.teacher.targets)}
        save_nullswap(out_dir, self.generator, self.config, extra)


__all__ = ["NullSwapRecipe"]
