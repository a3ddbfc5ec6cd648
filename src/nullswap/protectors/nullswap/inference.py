"""An inference copy of the NullSwap generator: batch norm folded into the convolutions, channels-last layout.

At inference (eval mode) every batch normalisation of the generator (Sec. 3.2's ConvBlock, SEResBlock and DeConvBlock)
is an affine map per channel with fixed running statistics, so it folds into the convolution before it
(``W' = W * g / sqrt(v + eps)``, ``b' = (b - m) g / sqrt(v + eps) + beta``): the same function with one pass over the
activations fewer per block. The weights are then laid out channels-last, which oneDNN's CPU convolutions prefer.

:func:`native_bf16` says whether the CPU computes bfloat16 natively (AVX512-BF16 / AMX); the protector can then run
the generator's convolutions in bfloat16 (``precision="bf16"``; slower than float32 on the v8 generator, see
:func:`resolve_precision`).

Choice (speed, issue 14; not in the paper): :func:`fuse_for_inference` is applied by the ``nullswap`` protector
factory only. Training, the trainer's validation and checkpoints keep the unfused generator, so the fused copy is never
saved. Outputs equal the unfused eval-mode generator's within float reassociation (max 1e-6 on [0, 1] images in
``tests/protectors/test_nullswap_inference.py``); ``benchmarks/generator_inference.py`` measures the speed-up.
"""

from __future__ import annotations

import copy
import functools
import platform
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from nullswap.errors import InputError
from nullswap.protectors.nullswap.blocks import ConvBlock, DeConvBlock, SEResBlock
from nullswap.protectors.nullswap.networks import NullSwapGenerator

__all__ = ["PRECISIONS", "fuse_for_inference", "is_fused", "native_bf16", "resolve_precision"]

#: Generator precisions at inference: ``fp32``, ``bf16`` (autocast: convolutions in bfloat16, the output mapping in
#: float32) and ``auto`` (``bf16`` where :func:`native_bf16`, else ``fp32``).
PRECISIONS = ("fp32", "bf16", "auto")


def _fold(conv: nn.Module, bn: nn.Module) -> nn.Conv2d:
    if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
        got = f"{type(conv).__name__}, {type(bn).__name__}"
        raise InputError(f"fuse: expected Conv2d followed by BatchNorm2d, got {got}")
    return fuse_conv_bn_eval(conv, bn)


def fuse_for_inference(generator: NullSwapGenerator, *, channels_last: bool = True) -> NullSwapGenerator:
    """A copy of ``generator`` for inference: every Conv + BatchNorm pair folded, weights channels-last, eval mode.

    Args:
        generator: a :class:`NullSwapGenerator` (not modified; its running statistics are what gets folded).
        channels_last: lay the convolution weights out channels-last (oneDNN's preferred CPU layout).

    Returns:
        A new generator in eval mode without batch normalisation layers; it cannot be trained (its batch norms are
        gone) and should not be saved as a checkpoint (its state-dict keys differ).

    Raises:
        InputError: ``generator`` is not a :class:`NullSwapGenerator`.
    """
    if not isinstance(generator, NullSwapGenerator):
        raise InputError(f"fuse_for_inference: expected a NullSwapGenerator, got {type(generator).__name__}")
    g = copy.deepcopy(generator).eval()
    for m in g.modules():
        if isinstance(m, ConvBlock):
            m[0] = _fold(m[0], m[1])
            m[1] = nn.Identity()
        elif isinstance(m, SEResBlock):
            m.conv1, m.bn1 = _fold(m.conv1, m.bn1), nn.Identity()
            m.conv2, m.bn2 = _fold(m.conv2, m.bn2), nn.Identity()
            m.conv3, m.bn3 = _fold(m.conv3, m.bn3), nn.Identity()
            if isinstance(m.shortcut, nn.Sequential):
                m.shortcut = _fold(m.shortcut[0], m.shortcut[1])
        elif isinstance(m, DeConvBlock):
            m.conv, m.bn = _fold(m.conv, m.bn), nn.Identity()
    for p in g.parameters():
        p.requires_grad_(False)
    if channels_last:
        g = g.to(memory_format=torch.channels_last)
    g._nullswap_fused = True  # type: ignore[assignment]
    return g


def is_fused(generator: nn.Module) -> bool:
    """Whether ``generator`` came from :func:`fuse_for_inference`."""
    return bool(getattr(generator, "_nullswap_fused", False))


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (``avx512_bf16`` or ``amx_bf16`` in ``/proc/cpuinfo``; Linux).

    Elsewhere (other systems, or no such flags) ``False``: bfloat16 would then be emulated, slower than float32.
    """
    if platform.system() != "Linux":
        return False
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
            break
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """``fp32`` or ``bf16`` for ``precision`` (one of :data:`PRECISIONS`) on ``device``.

    ``auto`` is ``fp32``. Choice, measured (``python benchmarks/generator_inference.py --repeat 15``, 2026-12-07, the
    2-core VM with AVX512-BF16/AMX, training paused, 2 threads, model v8: 525k parameters): the fused generator took
    18.8 / 82.5 ms per batch of 1 / 6 crops in float32 and 27.0 / 108.9 ms in bfloat16 (autocast's casts cost more
    than its convolutions save on this model; on the 47k-parameter v4 bfloat16 had been 1.0-1.2x faster, so ``auto``
    meant ``bf16`` on a CPU with :func:`native_bf16` until then). ``bf16`` stays selectable.

    Raises:
        InputError: unknown precision.
    """
    if precision not in PRECISIONS:
        raise InputError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    return "fp32" if precision == "auto" else precision
