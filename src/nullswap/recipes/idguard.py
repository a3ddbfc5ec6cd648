"""The ID-Guard training recipe (id-guard.txt, Sec. III, Eq. 3-12).

One iteration on clean crops ``x``: the generator gives ``x' = clip(x + G(cat(x, delta_p)))``; for every training
manipulator ``M_k`` the IDM terms (Eq. 4-7) give ``l_k`` (:func:`nullswap.losses.idguard.attack_loss`), plus the same
terms for ``x + delta_p`` (Eq. 12's second term, which trains ``delta_p``); the task weights ``lambda_k`` (Eq. 9) come
from strategy S-I (MGDA min-norm over the gradients of ``l_k`` w.r.t. the shared perturbation), S-II (KPI x prior,
Eq. 10-11) or equal weights. ``delta_p`` is initialised by PGD against the surrogate (Sec. III-D) on the first batch.
There is no discriminator.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from nullswap.errors import InputError
from nullswap.losses.idguard import FeatureTap, attack_loss, attack_terms, binary_mask, gradient_prior, heatmap_mask
from nullswap.losses.weighting import kpi_weights, min_norm_weights
from nullswap.manipulators.base import Manipulator
from nullswap.metrics.disruption import l2_disruption
from nullswap.protectors.base import Protector
from nullswap.protectors.idguard import IDGuardConfig, IDGuardGenerator, save_idguard
from nullswap.protectors.retentive import PerturbationProtector, config_from_dict, template_for, unwrap
from nullswap.recipes.retentive import DefenseRecipe, build_ensemble, build_manipulator
from nullswap.recognizers.ensemble import RecognizerEnsemble

log = logging.getLogger(__name__)

STRATEGIES = ("mgda", "kpi", "equal")


class IDGuardRecipe(DefenseRecipe):
    """ID-Guard generator trained against one or more frozen manipulators and a recognizer ensemble.

    Args:
        model_cfg: :class:`~nullswap.protectors.idguard.IDGuardConfig` fields.
        loss_cfg: ``weights`` (``{bin, hm, feat, id}``, default 1 each), ``strategy`` (``"mgda"`` = S-I, ``"kpi"`` =
            S-II, ``"equal"``), ``prior_alpha`` (``alpha_k`` per manipulator, Eq. 10), ``prior_term`` (Eq. 12's
            ``D(M(x), M(x + delta_p))`` term), ``gradient_prior`` (``{enabled, steps, step_size}``, Sec. IV-A5),
            ``heatmap_probes``, ``heatmap_smooth``, ``mask_scale``, ``feature_layer`` (module path or null).
        manipulators: the frozen ``S_M`` (the first one is the surrogate ``M_s`` of the gradient prior).
        ensemble: the ``ID(.)`` recognizers of Eq. 6 and of the heat map (at least one).
    """

    def __init__(self, model_cfg: dict[str, Any], loss_cfg: dict[str, Any], manipulators: list[Manipulator],
                 ensemble: RecognizerEnsemble) -> None:
        if not manipulators:
            raise InputError("manipulators: expected at least one manipulator, got none")
        if len(ensemble) == 0:
            raise InputError("recognizers: expected at least one recognizer (ID-Guard's Eq. 6 and heat map), got none")
        super().__init__(manipulators[0], ensemble, manipulators=nn.ModuleList(manipulators))
        self.config = config_from_dict(IDGuardConfig, model_cfg, "idguard model")
        lc = self.loss_cfg = dict(loss_cfg or {})
        self.term_weights = {"bin": 1.0, "hm": 1.0, "feat": 1.0, "id": 1.0, **dict(lc.get("weights") or {})}
        self.strategy = str(lc.get("strategy", "kpi"))
        if self.strategy not in STRATEGIES:
            raise InputError(f"loss.strategy: expected one of {STRATEGIES}, got {self.strategy!r}")
        alpha = lc.get("prior_alpha") or [1.0] * len(manipulators)
        if len(alpha) != len(manipulators):
            raise InputError(f"loss.prior_alpha: expected {len(manipulators)} values (one per manipulator), "
                             f"got {len(alpha)}")
        self.prior_alpha = [float(a) for a in alpha]
        self.prior_term = bool(lc.get("prior_term", True))
        gp = {"enabled": True, "steps": 10, "step_size": 0.005, **dict(lc.get("gradient_prior") or {})}
        self.gp = gp
        self.probes = int(lc.get("heatmap_probes", 4))
        self.smooth = int(lc.get("heatmap_smooth", 7))
        self.generator = IDGuardGenerator(self.config)
        self.register_buffer("m_bin", binary_mask(template_for(self.config.image_size),
                                                  float(lc.get("mask_scale", 1.0))), persistent=False)
        self.taps = [FeatureTap(m, lc.get("feature_layer")) for m in manipulators]
        self.last_kpi: list[float] = []
        self.last_weights: list[float] = []
        log.info("ID-Guard recipe: generator %d params, manipulators %s, strategy %s, feature taps %s",
                 sum(p.numel() for p in self.generator.parameters()), [getattr(m, "name", "?") for m in manipulators],
                 self.strategy, [t.layer for t in self.taps])

    @classmethod
    def from_config(cls, cfg: dict[str, Any], weights_dir: str | None = None) -> IDGuardRecipe:
        """Build from a training config: ``model``, ``loss``, ``manipulator`` or ``manipulators``, ``recognizers``."""
        model_cfg = dict(cfg.get("model") or {})
        size = config_from_dict(IDGuardConfig, model_cfg, "idguard model").image_size
        names = list(cfg.get("manipulators") or [cfg.get("manipulator")])
        mans = [build_manipulator({"manipulator": n}, size) for n in names]
        return cls(model_cfg, dict(cfg.get("loss") or {}), mans, build_ensemble(cfg, size, weights_dir))

    def extra_state(self) -> dict[str, Any]:
        """Last KPIs and task weights (for logs; S-II uses the current step's KPI, so nothing else is needed)."""
        return {"kpi": self.last_kpi, "weights": self.last_weights}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`extra_state` output."""
        self.last_kpi = list((state or {}).get("kpi") or [])
        self.last_weights = list((state or {}).get("weights") or [])

    def init_prior(self, images: torch.Tensor) -> None:
        """Set ``delta_p`` by PGD against the surrogate ``M_s`` (first manipulator) on ``images`` (Sec. III-D)."""
        gen = unwrap(self.generator, IDGuardGenerator)
        m, cond = self.manipulators[0], self.condition(images)
        prior = gradient_prior(lambda z: m(z, cond), images, self.config.eps, int(self.gp["steps"]),
                               float(self.gp["step_size"]))
        with torch.no_grad():
            gen.prior.copy_(prior.to(gen.prior))
            gen.prior_ready.fill_(1)
        log.info("ID-Guard gradient prior initialised on %d images (mean |delta_p| = %.4f)", images.shape[0],
                 float(prior.abs().mean()))

    def _terms(self, k: int, x: torch.Tensor, x_adv: torch.Tensor, cond: torch.Tensor | None,
               y: torch.Tensor, f_clean: torch.Tensor, id_clean: list[torch.Tensor], m_hm: torch.Tensor
               ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        m, tap = self.manipulators[k], self.taps[k]
        ya = m(x_adv, cond)
        fa = tap.pop()
        return attack_terms(y, ya, f_clean, fa, self.m_bin, m_hm, id_clean, self.ensemble(ya)), ya

    def generator_step(self, images: torch.Tensor, epoch: int) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
        """Eq. 9 / 12 on clean crops; returns ``(loss, logs, x')``."""
        x = images
        gen = unwrap(self.generator, IDGuardGenerator)
        if self.gp["enabled"] and int(gen.prior_ready) == 0 and self.training:
            self.init_prior(x)
        protected, delta, dp = self.generator(x, return_parts=True)
        m_hm = heatmap_mask(self.ensemble, x, self.probes, self.smooth)
        losses: list[torch.Tensor] = []
        kpis: list[float] = []
        logs: dict[str, float] = {}
        for k, m in enumerate(self.manipulators):
            cond = self.condition(x, manipulator=m)
            with torch.no_grad():
                y = m(x, cond)
                f_clean = self.taps[k].pop()
                id_clean = [e.detach() for e in self.ensemble(y)]
            terms, ya = self._terms(k, x, protected, cond, y, f_clean, id_clean, m_hm)
            l_k = attack_loss(terms, self.term_weights)
            if self.prior_term:  # Eq. 12, second term: D(M(x), M(x + delta_p))
                terms_p, _ = self._terms(k, x, (x + dp).clamp(0, 1), cond, y, f_clean, id_clean, m_hm)
                l_k = l_k + attack_loss(terms_p, self.term_weights)
                logs[f"m{k}/prior_bin"] = float(terms_p["bin"].detach())
            losses.append(l_k)
            kpis.append(float(l2_disruption(y, ya.detach()).mean()))  # KPI: the L2 distance (Sec. III-C)
            for name, v in terms.items():
                logs[f"m{k}/{name}"] = float(v.detach())
            logs[f"m{k}/kpi"] = kpis[-1]
        if self.strategy == "mgda" and len(losses) > 1:  # S-I: min-norm over task gradients w.r.t. shared output
            grads = [torch.autograd.grad(lk, delta, retain_graph=True)[0] for lk in losses]
            lam = min_norm_weights(grads)
        elif self.strategy == "kpi":  # S-II, Eq. 10-11
            lam = kpi_weights(kpis, self.prior_alpha)
        else:
            lam = torch.ones(len(losses), dtype=torch.float64)
        loss = sum(float(w) * lk for w, lk in zip(lam, losses, strict=True))  # Eq. 9
        self.last_kpi, self.last_weights = kpis, [float(w) for w in lam]
        for k, w in enumerate(self.last_weights):
            logs[f"m{k}/lambda"] = w
        logs["loss/total"] = float(loss.detach())
        logs["linf/perturbation"] = float(delta.detach().abs().max())
        return loss, logs, protected

    def protector(self, strength: str | float = "mid") -> Protector:
        """A protector sharing ``self.generator``."""
        return PerturbationProtector(self.generator, self.config.image_size, strength, name="idguard")

    def export(self, out_dir: str, meta: dict[str, Any]) -> None:
        """Write ``model.safetensors`` + ``config.json`` (``delta_p`` is part of the generator)."""
        extra = {**dict(meta or {}), "manipulators": [getattr(m, "name", None) for m in self.manipulators],
                 "recognizers": list(self.ensemble.names), "loss": self.loss_cfg}
        save_idguard(out_dir, self.generator, self.config, extra)


__all__ = ["STRATEGIES", "IDGuardRecipe"]
