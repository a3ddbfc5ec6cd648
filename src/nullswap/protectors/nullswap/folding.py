"""Fold a residual factor into a trained NullSwap generator: strength ``s`` baked into the weights.

Not in the paper. Choice (issue 12, how the shipped models v6-v8 were made): the generator trains under a PSNR floor
and its raw output may sit at a higher PSNR than the operating point wanted; :meth:`NullSwapGenerator.forward`
applies ``perturbation_scale`` ``s`` as ``r -> s * r`` on the summed residual (and ``max_delta -> s * max_delta`` on
the soft per-pixel cap), so multiplying the weight and bias of every residual head
(:meth:`NullSwapGenerator.residual_heads`: ``to_residual`` and, where present, the detail branch's ``detail_out``) by
``s`` gives a model whose strength 1 computes the trained model at strength ``s``. With ``keep_cap`` the cap stays the
trained model's (then the folded model computes ``s * r`` under the old cap: not the same function at strength ``s``
unless the cap is inactive; v8 was folded this way, MODEL_CARD.md).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from nullswap.errors import InputError
from nullswap.protectors.nullswap.config import NullSwapConfig
from nullswap.protectors.nullswap.networks import NullSwapGenerator

__all__ = ["fold_residual_factor"]


def fold_residual_factor(
    generator: NullSwapGenerator, factor: float, *, keep_cap: bool = False
) -> tuple[NullSwapGenerator, NullSwapConfig]:
    """A copy of ``generator`` with its residual heads multiplied by ``factor`` (module docstring).

    Args:
        generator: a trained generator (not modified).
        factor: the residual factor, > 0.
        keep_cap: keep ``max_delta`` as trained instead of scaling it with the residual.

    Returns:
        ``(folded generator in eval mode, its config)``.

    Raises:
        InputError: not a generator, or a factor that is not a finite number > 0.
    """
    if not isinstance(generator, NullSwapGenerator):
        raise InputError(f"fold: expected a NullSwapGenerator, got {type(generator).__name__}")
    if isinstance(factor, bool) or not isinstance(factor, int | float) or not math.isfinite(factor) or factor <= 0:
        raise InputError(f"fold: expected a finite residual factor > 0, got {factor!r}")
    cfg = generator.config
    cfg2 = dataclasses.replace(cfg, max_delta=float(cfg.max_delta) * (1.0 if keep_cap else float(factor)))
    folded = NullSwapGenerator(cfg2)
    folded.load_state_dict(generator.state_dict(), strict=True)
    with torch.no_grad():
        for head in folded.residual_heads():
            head.weight.mul_(float(factor))
            if head.bias is not None:
                head.bias.mul_(float(factor))
    return folded.eval(), cfg2
