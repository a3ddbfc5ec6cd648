"""The NullSwap total loss (nullswap.txt, Eq. 13) with DLW identity weighting (Eqs. 2-7)."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from nullswap.errors import InputError
from nullswap.losses.adversarial import generator_adversarial_loss
from nullswap.losses.distillation import distillation_loss
from nullswap.losses.dlw import IdentityLossAggregator
from nullswap.losses.identity import identity_cosines, threshold_hinge, threshold_target
from nullswap.losses.line_energy import line_energy_loss, lines_config
from nullswap.losses.masking import masked_luma_loss, masking_config
from nullswap.losses.reconstruction import MSE_FORMS, chroma_loss, mse_loss, perceptual_loss
from nullswap.losses.shared_change import shared_change_loss

log = logging.getLogger(__name__)

#: Eq. 13 coefficients of Sec. 4.1.
DEFAULT_LAMBDAS: dict[str, float] = {"lambda_id": 0.08, "lambda_mse": 1.8, "lambda_lpips": 1.2, "lambda_d": 0.1}
#: Sec. 4.1 DLW constants (``beta_max`` is ``beta*``).
DEFAULT_DLW: dict[str, float] = {"alpha": 3.0, "beta_init": 0.5, "beta_max": 2.0, "gamma": 0.1, "k": 30,
                                 "eps_d": 1e-6, "eps_w": 1e-6}


def _unique(names: Sequence[str]) -> list[str]:
    out: list[str] = []
    for i, n in enumerate(names):
        out.append(n if list(names).count(n) == 1 else f"{n}#{i}")
    return out


def _mean_across_ranks(values: list[float], device: torch.device) -> list[float]:
    """Average loss values over DDP ranks (so every rank, and a resumed run, computes the same DLW weights)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t / dist.get_world_size()).tolist()


def psnr_floor_penalty(clean: torch.Tensor, protected: torch.Tensor, floor_db: float) -> torch.Tensor:
    """The PSNR-floor wall ``mean_i relu(MSE_i - 10^(-floor_db/10))`` over images ``i`` (values in [0,1]).

    It is 0 when every image is above the floor. See :class:`NullSwapLoss` ``psnr_floor``.
    """
    mse = (protected.float() - clean.float()).flatten(1).pow(2).mean(1)
    return torch.relu(mse - 10.0 ** (-float(floor_db) / 10.0)).mean()


def _non_negative(name: str, value: object) -> float:
    """``value`` as a float, or :class:`InputError` unless it is a number >= 0 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise InputError(f"{name}: expected a number >= 0, got {value!r}")
    return float(value)


class NullSwapLoss:
    """``L_total = lambda_id L_id + lambda_MSE L_MSE + lambda_LPIPS L_LPIPS + lambda_D L_D`` (Eq. 13).

    Args:
        recognizer_names: names of the ensemble's recognizers (``c`` = their count), used in the logs.
        lambda_id, lambda_mse, lambda_lpips, lambda_d: Eq. 13 coefficients (defaults: Sec. 4.1).
        strategy: identity-loss weighting, ``"dlw"`` (Eq. 2), ``"average"`` or ``"single"`` (Table 5).
        index: recognizer of ``"single"``.
        dlw: :class:`~nullswap.losses.dlw.DynamicLossWeighting` arguments (defaults: Sec. 4.1).
        sync_ranks: average the identity-loss values across DDP ranks before DLW.
        psnr_floor: optional quality floor in dB (not in the paper; ``None`` = the paper's Eq. 13 exactly). Adds
            ``lambda_floor * mean_i relu(MSE_i - 10^(-floor/10))``: a steep wall on each image's squared error,
            so the identity term can spend the perturbation budget up to the floor but not beyond. Choice, measured:
            with Eq. 13's fixed lambdas the identity/MSE trade-off has no interior equilibrium on our models (the
            cosine falls about 240x faster than the MSE rises, so ``lambda_mse`` below ~19 lets PSNR sink and above
            it collapses the cloak); the floor gives one at the chosen PSNR.
        lambda_floor: weight of that wall (well above ~19 so it holds).
        mse_form: Eq. 8 as the squared error (``"mse"``, default) or the per-image L2 norm (``"l2"``); see
            :func:`~nullswap.losses.reconstruction.mse_loss`.
        identity: ``"cosine"`` (Eq. 12, the paper) or ``"threshold"``: per recognizer
            :func:`~nullswap.losses.identity.threshold_hinge` towards ``threshold_target(t_i, margin)`` where ``t_i``
            is the recognizer's LFW-calibrated threshold (``thresholds`` overrides). Not in the paper; Choice, from the
            measurements of issue 12: Eq. 12 keeps rewarding faces that are already unrecognisable while most faces
            stay above threshold, the threshold-aware term spends the budget on the faces still recognised.
        margin: relative margin below each threshold (see :func:`~nullswap.losses.identity.threshold_target`).
        thresholds: ``{recognizer name: cosine threshold}``; default: the shipped LFW thresholds.
        lambda_chroma: weight of :func:`~nullswap.losses.reconstruction.chroma_loss`, divided by the PSNR floor's
            MSE budget (``10^(-floor/10)``, or 1e-4 without a floor) so that 1.0 means "chroma energy as large as
            the whole budget costs 1".
        lambda_masked: weight of :func:`~nullswap.losses.masking.masked_luma_loss` (the luminance change weighted by
            the contrast-masking rule: flat skin counts fully, brows, hair and edges much less), divided by the same
            budget as ``lambda_chroma``. Not in the paper; Choice, from issue 12's montages (a mottle on the smooth
            skin of large faces that MSE and ST-LPIPS do not see). 0 = off (the reference recipe).
        masking: ``contrast`` / ``exponent`` / ``window`` of that rule (defaults
            :data:`~nullswap.losses.masking.DEFAULT_MASKING`).
        lambda_lines: weight of :func:`~nullswap.losses.line_energy.line_energy_loss` (the oriented energy of the
            luminance change's structure tensor: strokes, stripes and folds cost, grain does not), divided by the
            same budget. Not in the paper; Choice, from issue 12's 2x views (the one pass draws wrinkles). Its
            units are squared gradients (1/px^2) so its weight is not comparable with the other terms'; 0 = off.
        lines: ``sigma`` / ``rho`` of that measure (defaults :data:`~nullswap.losses.line_energy.DEFAULT_LINES`).
        lambda_shared: weight of :func:`~nullswap.losses.shared_change.shared_change_loss` (the unbiased estimate of
            the squared mean change over the batch: the part of the perturbation every face gets, a canonical drawing
            in the template's coordinates), divided by the same budget. Not in the paper; Choice, from issue 12's
            measurement that 18 % of v7's change is shared and, seen 20x, is a drawn face. Needs batches of >= 2;
            0 = off.
        perceptual_images: compute Eq. 9 on only the first ``k`` images of each batch (an unbiased estimate of the
            batch mean at ``k/B`` of the cost: ST-LPIPS is the most expensive term on a CPU); 0 = all.
        recognizers_per_step: identity term on a random ``k`` of the ``c`` recognizers each step (a stochastic
            ensemble: the batch's identity loss is ``(c/k)`` times the sum over the drawn ones, an unbiased estimate
            of the ``"average"`` strategy's ``sum_i L_i`` at ``k/c`` of the recognizers' cost); 0 = all. Needs
            ``strategy="average"``. Not in the paper; Choice for CPU training (recognizer forward+backward passes are
            most of a step).
        subset_seed: seed of those draws (their state is part of :meth:`state_dict`, so a resume continues them).
        psnr_target: optional operating point in dB (not in the paper; ``None`` = fixed ``lambda_id``). The identity
            term is multiplied by a scale ``s`` that is adapted after every step by dual ascent,
            ``log s <- clip(log s + psnr_target_rate * (PSNR_batch - psnr_target), log s_min, log s_max)``, where
            ``PSNR_batch`` is the batch's mean per-image PSNR of ``protected`` (averaged over DDP ranks): a batch
            cleaner than the target raises the weight of the identity term, a dirtier one lowers it, so training
            settles where the mean PSNR equals the target instead of wherever the fixed weights put it. Choice,
            measured (issue 12): with fixed weights the 3x3-masking/chroma run drifted to 40.5 dB raw while the
            shipped model needed its residual scaled x1.28 after training to reach ~38.5 dB; a constrained
            objective in the manner of GECO (Rezende & Viola 2018, "Taming VAEs") lets the generator learn the
            lower operating point instead. ``s`` is part of :meth:`state_dict`.
        psnr_target_rate: dual-ascent step on ``log s`` per dB of error per step.
        id_scale_bounds: ``(s_min, s_max)``; ``s`` starts at 1.
        lambda_distill: weight of :func:`~nullswap.losses.distillation.distillation_loss` (the squared distance of
            ``protected`` to a teacher's output on the same crop, e.g. ``auto``'s refinement steps; the recipe's
            ``teacher`` section names the targets), divided by the same budget as ``lambda_chroma``. Not in the
            paper; Choice (issue 12): the one pass underfits while per-image steps find far better changes, so their
            output is given to it as a dense target. 0 = off.
    """

    def __init__(
        self,
        recognizer_names: Sequence[str],
        lambda_id: float = 0.08,
        lambda_mse: float = 1.8,
        lambda_lpips: float = 1.2,
        lambda_d: float = 0.1,
        strategy: str = "dlw",
        index: int = 0,
        dlw: dict[str, Any] | None = None,
        sync_ranks: bool = True,
        mse_form: str = "mse",
        psnr_floor: float | None = None,
        lambda_floor: float = 200.0,
        identity: str = "cosine",
        margin: float = 0.5,
        thresholds: dict[str, float] | None = None,
        lambda_chroma: float = 0.0,
        lambda_masked: float = 0.0,
        masking: dict[str, Any] | None = None,
        lambda_lines: float = 0.0,
        lines: dict[str, Any] | None = None,
        lambda_shared: float = 0.0,
        perceptual_images: int = 0,
        recognizers_per_step: int = 0,
        subset_seed: int = 0,
        psnr_target: float | None = None,
        psnr_target_rate: float = 1e-3,
        id_scale_bounds: Sequence[float] = (0.1, 10.0),
        lambda_distill: float = 0.0,
    ) -> None:
        names = list(recognizer_names)
        if not names:
            raise InputError("recognizer_names: expected at least one recognizer, got none")
        for k, v in (("lambda_id", lambda_id), ("lambda_mse", lambda_mse), ("lambda_lpips", lambda_lpips),
                     ("lambda_d", lambda_d)):
            if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
                raise InputError(f"{k}: expected a number >= 0, got {v!r}")
        self.names = _unique(names)
        self.lambda_id, self.lambda_mse = float(lambda_id), float(lambda_mse)
        self.lambda_lpips, self.lambda_d = float(lambda_lpips), float(lambda_d)
        self.sync_ranks = sync_ranks
        if mse_form not in MSE_FORMS:
            raise InputError(f"mse_form: expected one of {MSE_FORMS}, got {mse_form!r}")
        self.mse_form = mse_form
        if psnr_floor is not None and not (0 < float(psnr_floor) < 100):
            raise InputError(f"psnr_floor: expected dB in (0, 100) or null, got {psnr_floor!r}")
        self.psnr_floor = None if psnr_floor is None else float(psnr_floor)
        self.lambda_floor = float(lambda_floor)
        if identity not in ("cosine", "threshold"):
            raise InputError(f"identity: expected 'cosine' or 'threshold', got {identity!r}")
        self.identity = identity
        self.margin = float(margin)
        self.targets: list[float] = []
        if identity == "threshold":
            from nullswap.recognizers.thresholds import verification_threshold

            given = dict(thresholds or {})
            self.targets = [threshold_target(given[n] if n in given else verification_threshold(n), self.margin)
                            for n in names]
        self.lambda_chroma = _non_negative("lambda_chroma", lambda_chroma)
        self.lambda_masked = _non_negative("lambda_masked", lambda_masked)
        self.masking = masking_config(masking)
        self.lambda_lines = _non_negative("lambda_lines", lambda_lines)
        self.lines = lines_config(lines)
        self.lambda_shared = _non_negative("lambda_shared", lambda_shared)
        self.lambda_distill = _non_negative("lambda_distill", lambda_distill)
        if isinstance(perceptual_images, bool) or not isinstance(perceptual_images, int) or perceptual_images < 0:
            raise InputError(f"perceptual_images: expected an int >= 0, got {perceptual_images!r}")
        self.perceptual_images = perceptual_images
        k = recognizers_per_step
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= len(names):
            raise InputError(f"recognizers_per_step: expected an int in [0, {len(names)}], got {k!r}")
        if 0 < k < len(names) and strategy != "average":
            raise InputError(f"recognizers_per_step={k}: expected strategy 'average', got {strategy!r}")
        self.recognizers_per_step = k if k < len(names) else 0
        self._rng = random.Random(subset_seed)
        if psnr_target is not None and (isinstance(psnr_target, bool) or not isinstance(psnr_target, int | float)
                                        or not 0 < float(psnr_target) < 100):
            raise InputError(f"psnr_target: expected dB in (0, 100) or null, got {psnr_target!r}")
        self.psnr_target = None if psnr_target is None else float(psnr_target)
        self.psnr_target_rate = _non_negative("psnr_target_rate", psnr_target_rate)
        bounds = list(id_scale_bounds)
        if len(bounds) != 2 or not all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds) \
                or not 0 < bounds[0] <= 1.0 <= bounds[1]:
            raise InputError(
                f"id_scale_bounds: expected (s_min, s_max) with 0 < s_min <= 1 <= s_max, got {id_scale_bounds!r}"
            )
        self._log_scale_bounds = (math.log(float(bounds[0])), math.log(float(bounds[1])))
        self.log_id_scale = 0.0
        dlw_kw = {**DEFAULT_DLW, **(dlw or {})} if strategy == "dlw" else {}
        self.aggregator = IdentityLossAggregator(len(names), strategy, index, **dlw_kw)  # type: ignore[arg-type]

    @classmethod
    def from_config(cls, loss_cfg: dict[str, Any] | None, recognizer_names: Sequence[str]) -> NullSwapLoss:
        """Build from a config's ``loss`` section (keys: the constructor's; unknown keys raise).

        Raises:
            InputError: unknown keys.
        """
        cfg = dict(loss_cfg or {})
        known = {"lambda_id", "lambda_mse", "lambda_lpips", "lambda_d", "strategy", "index", "dlw", "sync_ranks",
                 "mse_form", "psnr_floor", "lambda_floor", "identity", "margin", "thresholds", "lambda_chroma",
                 "lambda_masked", "masking", "lambda_lines", "lines", "lambda_shared", "perceptual_images",
                 "recognizers_per_step", "subset_seed",
                 "psnr_target", "psnr_target_rate", "id_scale_bounds", "lambda_distill"}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise InputError(f"nullswap loss config: expected keys among {sorted(known)}, got unknown {unknown}")
        return cls(recognizer_names, **cfg)

    def __call__(
        self,
        clean: torch.Tensor,
        protected: torch.Tensor,
        *,
        ensemble: nn.Module,
        perceptual: nn.Module | None,
        fake_logits: torch.Tensor | None,
        epoch: float,
        clean_emb: Sequence[torch.Tensor] | None = None,
        seen: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
        target_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Eq. 13 for one batch (updates the DLW history once).

        Args:
            clean: ``I_s``.
            protected: ``I'_s`` (differentiable).
            ensemble: recognizer ensemble for Eq. 12.
            perceptual: perceptual distance for Eq. 9 (may be ``None`` when ``lambda_lpips == 0``).
            fake_logits: discriminator logits of ``I'_s`` for Eq. 11 (``None``: no adversarial term).
            epoch: current epoch ``t_e`` (Eq. 5).
            clean_emb: precomputed clean embeddings.
            seen: what the recognizers are fed instead of ``protected`` (e.g. a randomly degraded copy for
                expectation over transformation, :mod:`nullswap.losses.eot`); the quality terms always use
                ``protected``.
            target: a teacher's output on ``clean`` for ``lambda_distill`` (``None``: no distillation term).
            target_mask: ``(B,)`` bool, the images of the batch that have a target (``None`` = all).

        Returns:
            ``(total, components)``: components are floats ``loss/total``, ``loss/id``, ``loss/mse``, ``loss/lpips``,
            ``loss/adv``, and per recognizer ``id/<name>`` (Eq. 12 value) and ``dlw/<name>`` (its weight).
        """
        n = len(self.names)
        chosen = list(range(n))
        if self.recognizers_per_step:
            chosen = sorted(self._rng.sample(range(n), self.recognizers_per_step))
        cos = identity_cosines(ensemble, clean, protected if seen is None else seen, clean_emb,
                               indices=chosen if self.recognizers_per_step else None)
        if len(cos) != len(chosen):
            raise InputError(f"identity losses: expected {len(chosen)} recognizers, got {len(cos)}")
        if self.identity == "threshold":
            id_list = [threshold_hinge(c, self.targets[i]) for c, i in zip(cos, chosen, strict=True)]
        else:
            id_list = [c.mean() for c in cos]
        values = [float(v.detach()) for v in id_list]
        if self.recognizers_per_step:
            # "average" is sum_i L_i (weights 1); the unbiased estimate from k of the c recognizers is (c/k) sum
            w_each = n / len(chosen)
            l_id = w_each * torch.stack(id_list).sum()
            weights = [w_each] * len(chosen)
        else:
            if self.sync_ranks:
                values = _mean_across_ranks(values, protected.device)
            l_id, weights = self.aggregator(id_list, epoch, values)
        l_mse = mse_loss(clean, protected, self.mse_form)
        id_scale = math.exp(self.log_id_scale) if self.psnr_target is not None else 1.0
        total = self.lambda_id * id_scale * l_id + self.lambda_mse * l_mse
        zero = torch.zeros((), device=protected.device)
        l_floor = zero
        if self.psnr_floor is not None:
            l_floor = psnr_floor_penalty(clean, protected, self.psnr_floor)
            total = total + self.lambda_floor * l_floor
        l_lpips = zero
        if self.lambda_lpips > 0:
            if perceptual is None:
                raise InputError("perceptual: expected a perceptual module when lambda_lpips > 0, got None")
            k = self.perceptual_images or clean.shape[0]
            l_lpips = perceptual_loss(perceptual, clean[:k], protected[:k])
            total = total + self.lambda_lpips * l_lpips
        # the terms added for issue 12 are divided by the PSNR floor's MSE budget (1e-4 without a floor)
        budget = 10.0 ** (-self.psnr_floor / 10.0) if self.psnr_floor is not None else 1e-4
        l_chroma = zero
        if self.lambda_chroma > 0:
            l_chroma = chroma_loss(clean, protected)
            total = total + self.lambda_chroma * l_chroma / budget
        l_masked = zero
        if self.lambda_masked > 0:
            l_masked = masked_luma_loss(clean, protected, **self.masking)
            total = total + self.lambda_masked * l_masked / budget
        l_lines = zero
        if self.lambda_lines > 0:
            l_lines = line_energy_loss(clean, protected, **self.lines)
            total = total + self.lambda_lines * l_lines / budget
        l_shared = zero
        if self.lambda_shared > 0:
            l_shared = shared_change_loss(clean, protected)
            total = total + self.lambda_shared * l_shared / budget
        l_distill = zero
        if self.lambda_distill > 0 and target is not None:
            l_distill = distillation_loss(protected, target, target_mask)
            total = total + self.lambda_distill * l_distill / budget
        l_adv = zero
        if fake_logits is not None:
            l_adv = generator_adversarial_loss(fake_logits)
            if self.lambda_d > 0:
                total = total + self.lambda_d * l_adv
        if self.psnr_target is not None:
            self._update_id_scale(clean, protected)
        comps = {"loss/total": float(total.detach()), "loss/id": float(l_id.detach()),
                 "loss/mse": float(l_mse.detach()), "loss/lpips": float(l_lpips.detach()),
                 "loss/adv": float(l_adv.detach()), "loss/floor": float(l_floor.detach()),
                 "loss/chroma": float(l_chroma.detach()), "loss/masked": float(l_masked.detach()),
                 "loss/lines": float(l_lines.detach()), "loss/shared": float(l_shared.detach()),
                 "loss/distill": float(l_distill.detach()),
                 "loss/id_scale": id_scale}
        for j, (i, v, w) in enumerate(zip(chosen, values, weights, strict=True)):
            name = self.names[i]
            comps[f"id/{name}"] = float(v)
            comps[f"dlw/{name}"] = float(w)
            comps[f"cos/{name}"] = float(cos[j].detach().mean())
            if self.targets:
                comps[f"above_target/{name}"] = float((cos[j].detach() > self.targets[i]).float().mean())
        return total, comps

    def _update_id_scale(self, clean: torch.Tensor, protected: torch.Tensor) -> None:
        """One dual-ascent step on ``log s`` towards ``psnr_target`` (see the class docstring)."""
        with torch.no_grad():
            mse = (protected.detach().float() - clean.detach().float()).pow(2).flatten(1).mean(1)
            psnr = float((-10.0 * torch.log10(mse.clamp_min(1e-12))).mean())
        if self.sync_ranks:
            psnr = _mean_across_ranks([psnr], protected.device)[0]
        lo, hi = self._log_scale_bounds
        self.log_id_scale = min(max(self.log_id_scale + self.psnr_target_rate * (psnr - self.psnr_target), lo), hi)

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: DLW history, recognizer-draw RNG and the ``psnr_target`` scale's ``log s``."""
        state = dict(self.aggregator.state_dict())
        version, internal, gauss = self._rng.getstate()
        state["_subset_rng"] = [version, list(internal), gauss]
        state["_log_id_scale"] = self.log_id_scale
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (older states without the draw RNG or the scale keep fresh ones)."""
        state = dict(state)
        rng = state.pop("_subset_rng", None)
        self.log_id_scale = float(state.pop("_log_id_scale", 0.0))
        self.aggregator.load_state_dict(state)
        if rng is not None:
            version, internal, gauss = rng
            self._rng.setstate((version, tuple(internal), gauss))


__all__ = ["DEFAULT_DLW", "DEFAULT_LAMBDAS", "NullSwapLoss"]
