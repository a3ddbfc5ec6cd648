"""NullSwap as a :class:`~nullswap.protectors.base.Protector` (inference on aligned crops) and its factory.

The wrapper adds what inference needs around the generator: the strength knob, the PSNR-floor guard and the optional
identity-targeted refinement steps (see :class:`NullSwapProtector`).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nullswap.errors import InputError, WeightsNotFoundError
from nullswap.protectors.base import Protector, register_protector, strength_scale
from nullswap.protectors.nullswap.checkpoint import DEFAULT_WEIGHTS_DIR, MODEL_FILENAME, load_nullswap
from nullswap.protectors.nullswap.config import NullSwapConfig
from nullswap.protectors.nullswap.inference import fuse_for_inference, is_fused, resolve_precision
from nullswap.protectors.nullswap.ort_generator import OrtGenerator, create_ort_generator, resolve_backend
from nullswap.recognizers.ort_runner import OrtUnavailableError

log = logging.getLogger(__name__)

__all__ = ["NullSwapProtector", "blurred_copy"]


def blurred_copy(y: torch.Tensor, sigma: float) -> torch.Tensor:
    """``y`` convolved with a Gaussian of ``sigma`` pixels, kernel ``2 ceil(2 sigma) + 1`` wide (``refine_blur``)."""
    import kornia  # lazily: only the blurred refinement objective needs it

    k = 2 * math.ceil(2 * sigma) + 1
    return kornia.filters.gaussian_blur2d(y, (k, k), (sigma, sigma))


def shape_gradient(g: torch.Tensor, chroma: float = 1.0, inv_w: torch.Tensor | None = None) -> torch.Tensor:
    """A refinement step's gradient with its colour part times ``chroma`` and its grey part times ``inv_w``.

    ``refine_chroma`` / ``refine_masking`` of :class:`NullSwapProtector` (``inv_w``: one over the crop's masking
    weights, or ``None``); unchanged when neither applies.
    """
    if chroma == 1.0 and inv_w is None:
        return g
    grey = g.mean(1, keepdim=True)
    return chroma * (g - grey) + (grey if inv_w is None else grey * inv_w)


def psnr_radius(x: torch.Tensor, floor_db: float) -> float:
    """The L2 radius of a PSNR floor for one crop of ``x``: ``||y - x||_2 <= r`` iff PSNR >= ``floor_db`` (range 1)."""
    return (x[0].numel() * 10.0 ** (-float(floor_db) / 10.0)) ** 0.5


def l2_ball_step(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, alpha: float, radius: float) -> torch.Tensor:
    """One normalised L2 descent step from ``y`` along ``-g``, projected on the ball ``||y - x||_2 <= radius``.

    Per crop: ``d = y - alpha g / ||g|| - x``, scaled down to ``radius`` where longer; returns ``x + d`` (no [0, 1]
    clamp: the caller clamps with its own per-pixel cap).
    """
    norm = g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    d = y - alpha * g / norm - x
    dn = d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return x + d * (radius / dn).clamp(max=1.0)


class NullSwapProtector(Protector):
    """NullSwap as a :class:`Protector`: runs the generator on aligned crops.

    Args:
        generator: a :class:`NullSwapGenerator` (or a wrapper of one; its train/eval mode is left as it is).
        config: the generator's config (sets the crop size).
        strength: ``"low"``, ``"mid"`` or ``"high"`` (or a number): the factor on the generator's output residual,
            see :data:`STRENGTH_SCALES`.
        noise_scale: factor on Eq. 1's random term at inference.
        psnr_floor: quality guard in dB (``None``: off). Each crop's change is scaled down, if needed, so its PSNR
            against the input is at least this; ``strength="high"`` lowers the floor by 4 dB. The factory takes it
            from the checkpoint's training loss (``psnr_floor``) by default, so inference keeps the promise
            training made even where batch-norm running statistics make eval-mode outputs differ from training's.
        refine: ``K`` identity-targeted gradient steps after the one pass ("one pass plus a few steps"):
            starting from the generator's output, steps against ``mean_k cos(E_k(y), E_k(x))`` on
            ``refine_recognizers``, each projected back into the same budget: with a PSNR floor, L2 steps on the
            floor's L2 ball (step ``2.5 r / K``); without one, signed steps ``a = min(2.5 cap / K, cap / 2)``; always
            ``|y - x| <= cap`` per pixel (the model's ``max_delta`` at this strength, else 8/255) and [0, 1]
            (Madry-lab step convention). 0 = the generator alone. Not in the paper; Choice (issue 12): a few attack
            steps on top of a learned cloak cost a fraction of PGD-50.
        refine_recognizers: the ensemble the refinement attacks (names or a built
            :class:`~nullswap.recognizers.ensemble.RecognizerEnsemble`); the factory passes the checkpoint's training
            recognizers.
        refine_blur: ``sigma`` (pixels of the crop) of a Gaussian-blurred copy the refinement also attacks: every
            second step (the 2nd, 4th, ...) descends ``mean_k cos(E_k(G_sigma * y), E_k(x))`` instead of
            ``mean_k cos(E_k(y), E_k(x))``. LowKey (Cherepanova et al. 2021, Eq. 1) adds a Gaussian-smoothed copy's
            term to its objective so the cloak transfers to unseen recognizers; alternating the two terms over the
            steps follows that sum at the plain objective's cost (Choice: measured on the validation identities against
            summing both terms at every step, which costs twice as much and fooled the unseen recognizers no more
            often; MODEL_CARD.md). The kernel is ``2 ceil(2 sigma) + 1`` wide. 0 = off (the plain objective).
        refine_chroma: factor in [0, 1] on the colour part of each refinement step: the step direction is the
            gradient's grey part (its mean over R, G, B, on all three channels: a luminance change) plus
            ``refine_chroma`` times the rest (the colour part). 1 (default) = the plain gradient; 0 = luminance
            only. Choice (issue 12, measured: MODEL_CARD.md): the montage shows that the refinement, not the one
            pass, adds the coloured mottle on large faces; the steps then move in a metric that charges colour
            ``1 / refine_chroma^2`` times as much as grey.
        refine_masking: also divide each pixel's grey part by :func:`~nullswap.losses.masking.masking_weights` of
            the clean crop (contrast masking: larger steps on brows, eyes, hairline and edges, smaller on flat
            skin). The same L2 ball and PSNR guard bound the result in both cases, so only the placement changes
            (without a floor the steps are signed, and a sign ignores the scaling: then only ``refine_chroma`` 0 has
            an effect, luminance-only signs).
        precision: ``"fp32"`` (default) or ``"bf16"``: the generator under ``torch.autocast`` in bfloat16 (its
            convolutions; the output mapping, guard and refinement stay float32), within 0.5/255 of float32's output
            (``tests/protectors/test_nullswap_inference.py``). Added for speed (issue 14): 1.0-1.2x faster on the
            47k-parameter v4 generator, slower than float32 on v8 (:func:`~nullswap.protectors.nullswap.inference.
            resolve_precision`); evaluation keeps float32, the raw model.

    The crop size is ``config.image_size`` (template ``protector-128`` for 128, else ``protector-256``).
    """

    name = "nullswap"

    def __init__(
        self,
        generator: nn.Module,
        config: NullSwapConfig,
        strength: str | float = "mid",
        noise_scale: float = 1.0,
        psnr_floor: float | None = None,
        refine: int = 0,
        refine_recognizers: Any = None,
        refine_blur: float = 0.0,
        precision: str = "fp32",
        refine_chroma: float = 1.0,
        refine_masking: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(refine_chroma, bool) or not isinstance(refine_chroma, int | float) \
                or not 0.0 <= refine_chroma <= 1.0:
            raise InputError(f"refine_chroma: expected a factor in [0, 1], got {refine_chroma!r}")
        self.refine_chroma = float(refine_chroma)
        self.refine_masking = bool(refine_masking)
        if precision not in ("fp32", "bf16"):
            raise InputError(f"precision: expected 'fp32' or 'bf16', got {precision!r}")
        self.precision = precision
        if isinstance(refine, bool) or not isinstance(refine, int) or refine < 0:
            raise InputError(f"refine: expected an int >= 0 (attack steps), got {refine!r}")
        if refine and not refine_recognizers:
            raise InputError("refine: expected refine_recognizers (the ensemble to attack) with refine > 0, got none")
        if isinstance(refine_blur, bool) or not isinstance(refine_blur, int | float) or not math.isfinite(refine_blur) \
                or refine_blur < 0:
            raise InputError(f"refine_blur: expected a blur sigma >= 0 (0 = off), got {refine_blur!r}")
        self.refine = refine
        self.refine_blur = float(refine_blur)
        #: the last :meth:`protect` call's guard: crops seen, crops whose change was scaled down, smallest factor
        self.guard_stats: dict[str, float] = {"crops": 0, "rescaled": 0, "min_scale": 1.0}
        self._refine_spec = refine_recognizers
        self._refine_ens: nn.Module | None = None
        self.generator = generator
        self.psnr_floor = None if psnr_floor is None else float(psnr_floor) - (4.0 if strength == "high" else 0.0)
        self.config = config
        self.strength = strength
        self.perturbation_scale = strength_scale(strength)
        self.noise_scale = float(noise_scale)
        self.template = "protector-128" if config.image_size == 128 else "protector-256"

    @property
    def backend(self) -> str:
        """Where the one pass runs: ``ort`` (an :class:`~.ort_generator.OrtGenerator`) or ``torch``."""
        return "ort" if isinstance(self.generator, OrtGenerator) else "torch"

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the crops: the generator's ``image_size``."""
        return (self.config.image_size, self.config.image_size)

    @torch.no_grad()
    def protect(self, faces: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Protected crops (same shape, device and dtype as ``faces``, in [0,1]); seeded ``generator`` -> repeatable."""
        self.check_input(faces)
        if faces.shape[0] == 0:
            return faces.clone()
        p = next(self.generator.parameters())
        x = faces.to(p.device, torch.float32)
        if is_fused(self.generator):  # its weights are channels-last: so is its input (same values)
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            y = self.generator(
                x, generator=generator, noise_scale=self.noise_scale, perturbation_scale=self.perturbation_scale
            )
        x, y = x.contiguous(), y.float().contiguous()
        y = self._guard(x, y)
        if self.refine:
            y = self._refine_steps(x, y)
        return y.to(faces.device, faces.dtype).clamp(0, 1)

    def _guard(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The PSNR-floor guard (identity when ``psnr_floor`` is ``None``); records :attr:`guard_stats`."""
        if self.psnr_floor is None:
            self.guard_stats = {"crops": int(x.shape[0]), "rescaled": 0, "min_scale": 1.0}
            return y
        r = y - x
        mse = r.pow(2).mean((1, 2, 3), keepdim=True).clamp_min(1e-20)
        cap = 10.0 ** (-self.psnr_floor / 10.0)
        scale = (cap / mse).sqrt().clamp(max=1.0)
        self.guard_stats = {
            "crops": int(x.shape[0]),
            "rescaled": int((scale < 1).sum()),
            "min_scale": float(scale.min()) if scale.numel() else 1.0,
        }
        return (x + r * scale).clamp(0, 1)

    def _refine_ensemble(self, device: torch.device) -> nn.Module:
        if self._refine_ens is None:
            from nullswap.recognizers.ensemble import RecognizerEnsemble

            spec = self._refine_spec
            self._refine_ens = (
                spec if isinstance(spec, nn.Module) else RecognizerEnsemble(list(spec), source_template=self.template)
            )
        return self._refine_ens.to(device)

    def _refine_steps(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``refine`` projected gradient steps from ``y`` (see the class docstring).

        With a PSNR floor the steps are L2 steps projected on the floor's L2 ball, ``||y - x||_2 <= r`` with
        ``r = sqrt(n 10^(-floor/10))`` for an n-value crop, step ``2.5 r / K``; without one they are signed
        (L-infinity) steps inside the per-pixel cap. Choice (measured, MODEL_CARD.md): signed steps spend the L2
        budget on a high-frequency pattern, so under the guard they scaled the generator's transferable change down
        and lowered protection on unseen recognizers; L2 steps move inside the budget the guard enforces.
        """
        ens = self._refine_ensemble(x.device)
        cap = (self.config.max_delta or 8.0) / 255.0 * max(float(self.perturbation_scale), 1e-6)
        l2 = self.psnr_floor is not None
        radius = psnr_radius(x, self.psnr_floor) if l2 else 0.0
        alpha = 2.5 * radius / self.refine if l2 else min(2.5 * cap / self.refine, cap / 2)
        with torch.no_grad():
            clean = [e.detach() for e in ens(x)]
            inv_w = None
            if self.refine_masking:
                from nullswap.losses.masking import masking_weights  # lazy: the losses package is for training

                inv_w = 1.0 / masking_weights(x)
        with torch.enable_grad():
            for step in range(self.refine):
                y = y.detach().requires_grad_(True)
                # every second step attacks the blurred copy
                seen = blurred_copy(y, self.refine_blur) if self.refine_blur > 0 and step % 2 == 1 else y
                sim = torch.stack([F.cosine_similarity(e, c, dim=1) for e, c in zip(ens(seen), clean, strict=True)])
                (g,) = torch.autograd.grad(sim.mean(0).sum(), y)
                with torch.no_grad():
                    g = shape_gradient(g, self.refine_chroma, inv_w)
                    y = l2_ball_step(x, y, g, alpha, radius) if l2 else y - alpha * g.sign()
                    y = torch.min(torch.max(y, x - cap), x + cap).clamp(0, 1)
                    y = self._guard(x, y)
                if self.on_step is not None:
                    self.on_step(step + 1, self.refine)
        return y.detach()


@register_protector("nullswap", "NullSwap identity-cloaking generator (Wang et al.), needs trained weights")
def _make_nullswap(
    checkpoint: str | None = None,
    strength: str | float = "mid",
    device: str | torch.device | None = None,
    noise_scale: float = 1.0,
    psnr_floor: float | str | None = "auto",
    refine: int = 0,
    refine_recognizers: Any = None,
    refine_blur: float = 0.0,
    fuse: bool = True,
    precision: str = "fp32",
    refine_chroma: float = 1.0,
    refine_masking: bool = False,
    backend: str = "torch",
) -> NullSwapProtector:
    """Factory: load ``checkpoint`` (or the packaged default) into a :class:`NullSwapProtector` in eval mode.

    ``fuse`` (default) runs the generator as :func:`~nullswap.protectors.nullswap.inference.fuse_for_inference`'s copy
    (batch norm folded, channels-last: the same outputs within 1e-6, faster on the CPU); ``fuse=False`` keeps the
    checkpoint's modules as loaded. ``precision``: ``fp32``, ``bf16`` or ``auto``
    (:func:`~nullswap.protectors.nullswap.inference.resolve_precision`: ``fp32``, measured faster on the shipped model).
    ``backend``: the one pass in ``torch`` (default: training and evaluation measure the PyTorch model), ``ort``
    (onnxruntime, :mod:`~nullswap.protectors.nullswap.ort_generator`: faster on the CPU, outputs within 1e-4, float32
    whatever ``precision`` says) or ``auto`` (``ort`` on the CPU when onnxruntime is installed; ``nullswap protect``'s
    choice). Where onnxruntime cannot run it (not installed, export failed, outputs differ) a warning says so and the
    one pass stays in PyTorch.

    Raises:
        WeightsNotFoundError: no checkpoint given and no packaged default at :data:`DEFAULT_WEIGHTS_DIR`.
    """
    if checkpoint is None:
        if not (DEFAULT_WEIGHTS_DIR / MODEL_FILENAME).is_file():
            raise WeightsNotFoundError(
                "nullswap: expected a trained checkpoint (pass checkpoint=<folder with model.safetensors and "
                f"config.json>, e.g. a training run's export/ folder), got none, and no packaged default at "
                f"{str(DEFAULT_WEIGHTS_DIR)!r}"
            )
        from nullswap.hub import get_weight_spec, resolve

        # verified against the sha256 recorded in the hub (nullswap.hub.registry "nullswap-default")
        checkpoint = str(resolve(get_weight_spec("nullswap-default")).parent)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    gen, config, meta = load_nullswap(checkpoint, map_location=dev)
    if psnr_floor == "auto":  # the floor the model was trained with, if any
        loss = meta.get("loss") if isinstance(meta.get("loss"), dict) else (meta.get("extra") or {}).get("loss", {})
        psnr_floor = (loss or {}).get("psnr_floor")
    if refine and refine_recognizers is None:  # attack what the generator was trained against
        refine_recognizers = list(meta.get("recognizers") or [])
    net: nn.Module | None = None
    if resolve_backend(backend, dev) == "ort":
        try:
            net = create_ort_generator(fuse_for_inference(gen, channels_last=False) if fuse else gen)
            precision = "fp32"  # the session computes in float32
        except OrtUnavailableError as e:
            log.warning("nullswap: the one pass stays in PyTorch (%s)", e)
    if net is None:
        net = fuse_for_inference(gen) if fuse else gen
    prot = NullSwapProtector(
        net,
        config,
        strength=strength,
        noise_scale=noise_scale,
        psnr_floor=None if psnr_floor is None else float(psnr_floor),
        refine=int(refine),
        refine_recognizers=refine_recognizers,
        refine_blur=refine_blur,
        precision=resolve_precision(precision, dev),
        refine_chroma=refine_chroma,
        refine_masking=refine_masking,
    )
    return prot.eval()
