"""The ARS training recipe (ars.txt, "Adversarial Robust Safeguard" and Fig. 2).

One iteration: the two-way generator gives ``eta_b, x_b`` (basic) and ``eta, x~`` (robust); the generator loss is
Eq. 2 (for ``f_theta``) + Eq. 10 (for ``g_psi``, through the perturbation module ``p`` and the adv net ``q_phi``).
The adv net ``q_phi`` takes the trainer's discriminator slot and is updated with Eq. 8 on the detached ``x~``.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from nullswap.losses.ars import PerturbationModule, adv_net_loss, basic_loss, robust_loss
from nullswap.manipulators.base import Manipulator
from nullswap.protectors.ars import ARSAdvNet, ARSConfig, ARSGenerator, save_ars
from nullswap.protectors.base import Protector
from nullswap.protectors.retentive import PerturbationProtector, config_from_dict
from nullswap.recipes.retentive import DefenseRecipe, build_ensemble, build_manipulator
from nullswap.recognizers.ensemble import RecognizerEnsemble

log = logging.getLogger(__name__)


class ARSRecipe(DefenseRecipe):
    """ARS generator (``f_theta`` + ``g_psi``) with ``q_phi`` as the discriminator.

    Args:
        model_cfg: :class:`~nullswap.protectors.ars.ARSConfig` fields.
        loss_cfg: ``lambda`` (Eq. 2, paper 10), ``lambda_1`` and ``lambda_2`` (Eq. 10, paper 10), ``prob`` (p's
            application probability, paper 0.5), ``perturb`` (use ``p``; ablation "non-lossy ARS" = false),
            ``adv`` (use ``q_phi``; ablation "ARS w/o Adv" = false).
        manipulator: the frozen ``G``.
        ensemble: recognizers for the trainer's evaluation (may be empty).
    """

    def __init__(self, model_cfg: dict[str, Any], loss_cfg: dict[str, Any], manipulator: Manipulator,
                 ensemble: RecognizerEnsemble) -> None:
        super().__init__(manipulator, ensemble)
        self.config = config_from_dict(ARSConfig, model_cfg, "ars model")
        self.loss_cfg = dict(loss_cfg or {})
        self.lam = float(self.loss_cfg.get("lambda", 10.0))
        self.lambda_1 = float(self.loss_cfg.get("lambda_1", 10.0))
        self.lambda_2 = float(self.loss_cfg.get("lambda_2", 10.0))
        self.use_perturb = bool(self.loss_cfg.get("perturb", True))
        self.use_adv = bool(self.loss_cfg.get("adv", True))
        self.perturb = PerturbationModule(float(self.loss_cfg.get("prob", 0.5)))
        self.generator = ARSGenerator(self.config)
        self.discriminator = ARSAdvNet(self.config) if self.use_adv else None
        self._cond: torch.Tensor | None = None
        log.info("ARS recipe: generator %d params, adv net %d params, manipulator %s",
                 sum(p.numel() for p in self.generator.parameters()),
                 sum(p.numel() for p in self.discriminator.parameters()) if self.discriminator is not None else 0,
                 getattr(manipulator, "name", "?"))

    @classmethod
    def from_config(cls, cfg: dict[str, Any], weights_dir: str | None = None) -> ARSRecipe:
        """Build from a training config: ``model``, ``loss``, ``manipulator``, ``recognizers``."""
        model_cfg = dict(cfg.get("model") or {})
        size = config_from_dict(ARSConfig, model_cfg, "ars model").image_size
        return cls(model_cfg, dict(cfg.get("loss") or {}), build_manipulator(cfg, size),
                   build_ensemble(cfg, size, weights_dir))

    def generator_step(self, images: torch.Tensor, epoch: int) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
        """Eq. 2 + Eq. 10 on clean crops; returns ``(loss, logs, x~)``."""
        cond = self._cond = self.condition(images)
        parts = self.generator(images, return_parts=True)
        loss_b, logs = basic_loss(self.manipulator(parts["x_b"], cond), parts["eta_b"], self.lam)  # Eq. 2
        x_t = parts["x_tilde"]
        x_p = self.perturb(x_t, images) if self.use_perturb else x_t
        out_p = self.manipulator(x_p, cond)
        if self.discriminator is not None:
            out_q = self.manipulator(self.discriminator(x_t), cond)
            lambda_1 = self.lambda_1
        else:
            out_q, lambda_1 = out_p, 0.0
        loss_g, logs_g = robust_loss(out_p, out_q, parts["eta"], lambda_1, self.lambda_2)  # Eq. 10
        loss = loss_b + loss_g
        logs.update(logs_g)
        logs["loss/total"] = float(loss.detach())
        return loss, logs, x_t

    def discriminator_step(self, images: torch.Tensor, protected: torch.Tensor
                           ) -> tuple[torch.Tensor, dict[str, float]]:
        """Eq. 8 for ``q_phi``: ``||G(q(x~)) - G(x)||_2`` on the detached ``x~``."""
        if self.discriminator is None:
            return super().discriminator_step(images, protected)
        cond = self._cond if self._cond is not None and self._cond.shape[0] == images.shape[0] else \
            self.condition(images)
        with torch.no_grad():
            y = self.manipulator(images, cond)
        loss = adv_net_loss(lambda z: self.manipulator(z, cond), self.discriminator(protected.detach()), y)
        return loss, {"loss/adv_net": float(loss.detach())}

    def protector(self, strength: str | float = "mid") -> Protector:
        """A protector sharing ``self.generator``."""
        return PerturbationProtector(self.generator, self.config.image_size, strength, name="ars")

    def export(self, out_dir: str, meta: dict[str, Any]) -> None:
        """Write the generator (``q_phi`` is training-only) as ``model.safetensors`` + ``config.json``."""
        extra = {**dict(meta or {}), "manipulator": getattr(self.manipulator, "name", None), "loss": self.loss_cfg,
                 "recognizers": list(self.ensemble.names)}
        save_ars(out_dir, self.generator, self.config, extra)


__all__ = ["ARSRecipe"]
