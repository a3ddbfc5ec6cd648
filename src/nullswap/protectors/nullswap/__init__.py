"""The NullSwap identity-cloaking network (nullswap.txt, Sec. 3.2, Figure 2) and its :class:`Protector` wrapper.

Modules: :mod:`~nullswap.protectors.nullswap.blocks` (ConvBlock, SEResBlock, DeConvBlock),
:mod:`~nullswap.protectors.nullswap.config` (:class:`NullSwapConfig`), :mod:`~nullswap.protectors.nullswap.networks`
(generator and discriminator), :mod:`~nullswap.protectors.nullswap.checkpoint` (``model.safetensors`` +
``config.json``) and :mod:`~nullswap.protectors.nullswap.protector` (:class:`NullSwapProtector`, the registered
``"nullswap"`` factory). Everything is importable from this package.

Architecture (``H`` = input size, ``/4`` = ``H/4``):

* **ID Extraction**: ConvBlock (3x3, stride 2) + 2x2 max-pool (``/4``) + ``L`` SEResBlocks (width ``id_channels``).
* **Perturbation Block**: ConvBlock + ``M`` SEResBlocks (width ``perturb_channels``), plus the adaptive random noise of
  Eq. 1, ``beta * (alpha * N(0, 1) + eta)``, added to the deterministic perturbation.
* **Feature Block**: 3 ConvBlocks (strides 1, 2, 2 -> ``/4``) + ``N`` SEResBlocks (width ``feature_channels``).
* **Cloaking Block**: ``concat(gamma * perturbation, features)`` -> SEResBlock -> DeConvBlock (``/2``) -> ConvBlock
  -> DeConvBlock (``/1``); then ``concat(input image)`` -> 2 ConvBlocks -> 3x3 conv to a 3-channel residual ``r``.
* **Output mapping** (Choice, the paper does not give one): ``I' = sigmoid(logit(I) + s * r)``, computed so that it is
  bit-exactly the identity at ``r = 0`` (see :func:`_logit_residual`). The output is always in ``[0, 1]``, the network
  starts as the identity (PSNR stays high from the first step), and ``s`` (``perturbation_scale``) is a meaningful
  strength knob: ``s = 0`` returns the input, larger ``s`` pushes further along the learned perturbation direction.

Widths are not given by the paper. Choice: ``id_channels=128``, ``perturb_channels=64``, ``feature_channels=64``,
``cloak_channels=64`` (the last DeConvBlock halves it to 32 for the full-resolution stage), SE reduction 16 (Hu et al.),
bottleneck expansion 4 (He et al.); all exposed in :class:`NullSwapConfig`.
"""

from typing import Literal

from nullswap.protectors.base import STRENGTH_SCALES, strength_scale
from nullswap.protectors.nullswap.blocks import ConvBlock, DeConvBlock, SEResBlock, SqueezeExcitation
from nullswap.protectors.nullswap.checkpoint import (
    CONFIG_FILENAME,
    DEFAULT_WEIGHTS_DIR,
    FORMAT,
    FORMAT_VERSION,
    MODEL_FILENAME,
    load_nullswap,
    save_nullswap,
)
from nullswap.protectors.nullswap.config import NullSwapConfig
from nullswap.protectors.nullswap.networks import (
    NullSwapDiscriminator,
    NullSwapGenerator,
    count_parameters,
    unwrap_module,
)
from nullswap.protectors.nullswap.protector import NullSwapProtector

Strength = Literal["low", "mid", "high"]

# ``strength`` -> ``perturbation_scale``: :data:`nullswap.protectors.base.STRENGTH_SCALES` (re-exported here).

__all__ = [
    "CONFIG_FILENAME",
    "DEFAULT_WEIGHTS_DIR",
    "FORMAT",
    "FORMAT_VERSION",
    "MODEL_FILENAME",
    "STRENGTH_SCALES",
    "ConvBlock",
    "DeConvBlock",
    "NullSwapConfig",
    "NullSwapDiscriminator",
    "NullSwapGenerator",
    "NullSwapProtector",
    "SEResBlock",
    "SqueezeExcitation",
    "Strength",
    "count_parameters",
    "load_nullswap",
    "save_nullswap",
    "strength_scale",
    "unwrap_module",
]
