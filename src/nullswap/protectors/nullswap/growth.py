"""Start a deeper NullSwap generator, or one with a detail branch, from a trained one: the same function at step one.

Not in the paper (Wang et al. train from scratch on GPUs). Choice (issue 12): the CPU-trained generator plateaued
with its training-batch cosines as high as its validation ones (underfitting, not overfitting), so the next model
adds SEResBlocks towards the paper's depths (L=4, M=3, N=5) and continues from the trained weights rather than
spending the CPU hours again. The growth is function-preserving in the manner of Net2Net's deepening (Chen et al.
2016, "Net2Net: Accelerating learning via knowledge transfer"): an added :class:`SEResBlock` computes
``relu(SE(bn3(...)) + x)``; with ``bn3``'s scale and shift set to 0 its branch outputs 0 (in train and eval mode), and
its input is a ReLU output (``x >= 0``), so the block returns ``x`` exactly. Gradients reach ``bn3``'s scale from the
first step, so the new blocks start learning at once (the "zero-init residual" of Goyal et al. 2017).

The same holds for the full-resolution detail branch (``detail_channels``, issue 12): a generator trained without it
grows one whose output convolution ``detail_out`` is set to zero, so the branch adds nothing at the first step and
its weight gets a gradient at once (Net2Net's widening by a new, zero-weighted path).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import torch

from nullswap.errors import InputError
from nullswap.protectors.nullswap.blocks import SEResBlock
from nullswap.protectors.nullswap.networks import NullSwapGenerator

log = logging.getLogger(__name__)

__all__ = ["grow_generator"]

#: Config fields that set the number of SEResBlocks (may grow); every other field must match the trained model's.
DEPTH_FIELDS: tuple[str, ...] = ("L", "M", "N")
#: Fields of the detail branch: a generator trained without one (``detail_channels`` 0) may grow one.
DETAIL_FIELDS: tuple[str, ...] = ("detail_channels", "detail_blocks")
#: Fields that only matter for a fresh start (initial values), not for the shapes of trained weights.
_INIT_FIELDS: tuple[str, ...] = ("alpha_init", "beta_init", "gamma_init", "residual_init_std")


def grow_generator(generator: NullSwapGenerator, source: str | Path) -> dict[str, int]:
    """Load the trained generator at ``source`` into ``generator``, which may have more SEResBlocks or a detail branch.

    Every tensor of the trained generator is copied to the same name (added blocks come after the trained ones in
    each ``nn.Sequential``, so the names of the trained blocks do not move); each added SEResBlock gets ``bn3``
    weight and bias 0, which makes it the identity, and an added detail branch gets ``detail_out`` 0 (module
    docstring). Modifies ``generator`` in place.

    Args:
        generator: the freshly built, deeper (or equally deep) generator.
        source: a NullSwap checkpoint folder (``model.safetensors`` + ``config.json``, e.g. a run's ``export/``).

    Returns:
        ``{"copied": tensors copied, "added_blocks": identity SEResBlocks added (trunk), "added_detail": 1 if a
        detail branch was added else 0}``.

    Raises:
        WeightsNotFoundError, WeightsError: ``source`` is not a loadable NullSwap checkpoint.
        InputError: the configs differ in anything but L/M/N, an added detail branch (and initial values), or
            ``generator`` is shallower, or drops or changes the trained model's detail branch.
    """
    from nullswap.protectors.nullswap.checkpoint import load_nullswap

    trained, old_cfg, _ = load_nullswap(source)
    old, new = asdict(old_cfg), asdict(generator.config)
    add_detail = old["detail_channels"] == 0 and new["detail_channels"] > 0
    free = DEPTH_FIELDS + _INIT_FIELDS + (DETAIL_FIELDS if add_detail else ())
    if old["detail_channels"] == 0 and new["detail_channels"] == 0:
        free += ("detail_blocks",)  # unused without a branch
    diff = [k for k in new if k not in free and new[k] != old.get(k)]
    if diff:
        k = diff[0]
        raise InputError(
            f"init: expected a generator config that differs from {str(source)!r} only in depth (L, M, N) or an "
            f"added detail branch, got {k}={new[k]!r} against its {k}={old.get(k)!r} ({len(diff)} differing fields)"
        )
    shallower = [k for k in DEPTH_FIELDS if new[k] < old[k]]
    if shallower:
        k = shallower[0]
        raise InputError(f"init: expected {k} >= the trained generator's {old[k]}, got {k}={new[k]}")
    state = generator.state_dict()
    src = trained.state_dict()
    for k, v in src.items():  # same names and shapes by construction; checked anyway (strict)
        if k not in state or tuple(state[k].shape) != tuple(v.shape):
            raise InputError(f"init: expected {k} of shape {tuple(v.shape)} in the new generator, got "
                             f"{tuple(state[k].shape) if k in state else 'no such tensor'}")
        state[k] = v.detach().clone()
    added = 0
    for name, module in generator.named_modules():
        # trunk blocks only: an added detail branch keeps its fresh init (its zero output convolution is what
        # makes it add nothing), so its blocks compute something from the first step
        if isinstance(module, SEResBlock) and f"{name}.bn3.weight" not in src and not name.startswith("detail."):
            state[f"{name}.bn3.weight"] = torch.zeros_like(state[f"{name}.bn3.weight"])
            state[f"{name}.bn3.bias"] = torch.zeros_like(state[f"{name}.bn3.bias"])
            added += 1
    if add_detail:
        state["detail_out.weight"] = torch.zeros_like(state["detail_out.weight"])
        state["detail_out.bias"] = torch.zeros_like(state["detail_out.bias"])
    generator.load_state_dict(state, strict=True)
    log.info("init: generator grown from %s (L/M/N %d/%d/%d -> %d/%d/%d, detail branch %s): %d tensors copied, "
             "%d identity blocks added", source, old["L"], old["M"], old["N"], new["L"], new["M"], new["N"],
             f"added ({new['detail_channels']} channels)" if add_detail else "unchanged", len(src), added)
    return {"copied": len(src), "added_blocks": added, "added_detail": int(add_detail)}
