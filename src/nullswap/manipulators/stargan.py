"""StarGAN's CelebA generator (Choi et al. 2018, stargan.txt), loadable from the official ``200000-G.ckpt``.

The architecture reproduces the official ``model.Generator`` (github.com/yunjey/stargan) module by module so the
official checkpoint's keys (``main.0.weight``, ``main.1.weight`` ..., residual blocks ``main.9.main.0.weight`` ...)
load strictly: a 7x7 conv on the image concatenated with the spatially tiled domain label, two stride-2 convs, six
residual blocks, two transposed convs and a 7x7 conv + ``tanh``; InstanceNorm with affine parameters and running
statistics (``track_running_stats=True``) after every conv. The CelebA model uses ``c_dim=5`` attributes
``[Black_Hair, Blond_Hair, Brown_Hair, Male, Young]``, ``conv_dim=64``, ``repeat_num=6``, images in [-1, 1].

The weights are not redistributed here: a user downloads ``stargan_celeba_128`` (the official ``download.sh``) and
passes ``create_manipulator("stargan-celeba", checkpoint=".../200000-G.ckpt")``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nullswap._common import freeze, load_strict
from nullswap.errors import InputError, WeightsError, WeightsNotFoundError
from nullswap.manipulators.base import Manipulator, register_manipulator
from nullswap.registry import check_keywords

log = logging.getLogger(__name__)

CELEBA_ATTRIBUTES: tuple[str, ...] = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Young")
"""The official CelebA model's domain labels, in label order (``--selected_attrs`` default)."""

CHECKPOINT_NAME = "200000-G.ckpt"


class InstanceNorm2d(nn.InstanceNorm2d):
    """``nn.InstanceNorm2d(affine=True, track_running_stats=True)`` that always normalises with input statistics.

    Choice: the official test loop never calls ``eval()``, so the released model runs on instance statistics; the
    running-statistic buffers are kept (and loaded) only so the checkpoint keys match.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features, affine=True, track_running_stats=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Instance normalisation with the input's own mean/variance and the affine parameters."""
        return F.instance_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)


class ResidualBlock(nn.Module):
    """Official StarGAN residual block: ``x + main(x)``, ``main`` = conv-IN-ReLU-conv-IN (no conv biases)."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(dim_in, dim_out, kernel_size=3, stride=1, padding=1, bias=False),
            InstanceNorm2d(dim_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(dim_out, dim_out, kernel_size=3, stride=1, padding=1, bias=False),
            InstanceNorm2d(dim_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual update."""
        return x + self.main(x)


class StarGANGenerator(nn.Module):
    """The official StarGAN generator (stargan.txt, Sec. 3 and Appendix, Table 4), key-compatible with its ckpts.

    Args:
        conv_dim: stem width (64).
        c_dim: number of domain labels (5 for CelebA).
        repeat_num: residual blocks (6).

    ``forward(x, c)``: ``x`` in [-1, 1] ``(B,3,H,W)``, ``c`` ``(B, c_dim)`` target labels; returns [-1, 1].

    The InstanceNorm layers always normalise with the input's own statistics (see :class:`InstanceNorm2d`).
    """

    def __init__(self, conv_dim: int = 64, c_dim: int = 5, repeat_num: int = 6) -> None:
        super().__init__()
        self.c_dim = c_dim
        layers: list[nn.Module] = [
            nn.Conv2d(3 + c_dim, conv_dim, kernel_size=7, stride=1, padding=3, bias=False),
            InstanceNorm2d(conv_dim),
            nn.ReLU(inplace=True),
        ]
        curr = conv_dim
        for _ in range(2):
            layers += [
                nn.Conv2d(curr, curr * 2, kernel_size=4, stride=2, padding=1, bias=False),
                InstanceNorm2d(curr * 2),
                nn.ReLU(inplace=True),
            ]
            curr *= 2
        layers += [ResidualBlock(curr, curr) for _ in range(repeat_num)]
        for _ in range(2):
            layers += [
                nn.ConvTranspose2d(curr, curr // 2, kernel_size=4, stride=2, padding=1, bias=False),
                InstanceNorm2d(curr // 2),
                nn.ReLU(inplace=True),
            ]
            curr //= 2
        layers += [nn.Conv2d(curr, 3, kernel_size=7, stride=1, padding=3, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Translate ``x`` ([-1,1]) to the domain ``c``."""
        c = c.to(x.dtype).view(c.size(0), c.size(1), 1, 1).repeat(1, 1, x.size(2), x.size(3))
        return self.main(torch.cat([x, c], dim=1))


def official_key_shapes(conv_dim: int = 64, c_dim: int = 5, repeat_num: int = 6) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the official generator's state dict, written out from the official ``model.py`` layout.

    Independent of :class:`StarGANGenerator` (used to test that the module order matches the official one).
    """
    out: dict[str, tuple[int, ...]] = {}

    def norm(i: str, n: int) -> None:
        for k in ("weight", "bias", "running_mean", "running_var"):
            out[f"{i}.{k}"] = (n,)
        out[f"{i}.num_batches_tracked"] = ()

    out["main.0.weight"] = (conv_dim, 3 + c_dim, 7, 7)
    norm("main.1", conv_dim)
    idx, curr = 3, conv_dim
    for _ in range(2):
        out[f"main.{idx}.weight"] = (curr * 2, curr, 4, 4)
        norm(f"main.{idx + 1}", curr * 2)
        idx, curr = idx + 3, curr * 2
    for _ in range(repeat_num):
        out[f"main.{idx}.main.0.weight"] = (curr, curr, 3, 3)
        norm(f"main.{idx}.main.1", curr)
        out[f"main.{idx}.main.3.weight"] = (curr, curr, 3, 3)
        norm(f"main.{idx}.main.4", curr)
        idx += 1
    for _ in range(2):
        out[f"main.{idx}.weight"] = (curr, curr // 2, 4, 4)  # ConvTranspose2d: (in, out, k, k)
        norm(f"main.{idx + 1}", curr // 2)
        idx, curr = idx + 3, curr // 2
    out[f"main.{idx}.weight"] = (3, curr, 7, 7)
    return out


def read_stargan_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an official generator checkpoint (a plain state dict) with ``weights_only=True``.

    Choice: checkpoints saved before PyTorch 0.4.1 lack the ``num_batches_tracked`` counters; they are filled with 0
    (unused: the norms run on instance statistics).

    Raises:
        WeightsNotFoundError: no file at ``path``.
        WeightsError: not a readable state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"stargan-celeba: expected the official generator checkpoint, got {str(path)!r} "
                                   "(not found)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a weights problem
        raise WeightsError(f"stargan-celeba: cannot read {str(path)!r} as a state dict: {e}") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"stargan-celeba: expected a state dict of tensors in {str(path)!r}, got {type(state)}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    for k in [k for k in state if k.endswith(".running_mean")]:
        nbt = k[: -len("running_mean")] + "num_batches_tracked"
        state.setdefault(nbt, torch.tensor(0, dtype=torch.long))
    return state


class StarGAN(Manipulator):
    """StarGAN attribute editor on ``template`` crops in [0,1]; ``condition`` = ``(B, 5)`` target labels.

    Choice: the official model was trained on CelebA's aligned images center-cropped to 178 and resized to 128;
    this wrapper feeds it ``protector-128`` crops (similar scale, not identical framing).
    """

    name = "stargan-celeba"
    template = "protector-128"
    condition = "attributes"

    def __init__(self, generator: StarGANGenerator | None = None, attributes: Sequence[str] = CELEBA_ATTRIBUTES,
                 template: str = "protector-128") -> None:
        super().__init__()
        self.G = generator if generator is not None else StarGANGenerator(c_dim=len(attributes))
        self.attributes = tuple(attributes)
        self.template = template
        if self.G.c_dim != len(self.attributes):
            raise InputError(f"stargan: expected {self.G.c_dim} attribute names, got {len(self.attributes)}")

    def labels(self, on: Sequence[str], batch: int = 1) -> torch.Tensor:
        """A ``(batch, c_dim)`` label tensor with the named attributes set to 1.

        Raises:
            InputError: unknown attribute names.
        """
        bad = [a for a in on if a not in self.attributes]
        if bad:
            raise InputError(f"stargan: expected attributes among {list(self.attributes)}, got {bad}")
        c = torch.zeros(batch, len(self.attributes))
        for a in on:
            c[:, self.attributes.index(a)] = 1
        return c

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """Edited crops in [0,1].

        Raises:
            InputError: bad crops or a condition that is not ``(B, c_dim)``.
        """
        self.check_input(x)
        if condition is None or condition.ndim != 2 or tuple(condition.shape) != (x.shape[0], self.G.c_dim):
            got = None if condition is None else tuple(condition.shape)
            raise InputError(f"{self.name}: expected condition of shape ({x.shape[0]}, {self.G.c_dim}), got {got}")
        return (self.G(x * 2 - 1, condition.to(x.device)) + 1) / 2


def load_stargan(checkpoint: str | Path, **kwargs: Any) -> StarGAN:
    """A frozen, eval-mode :class:`StarGAN` with the official checkpoint loaded strictly.

    Raises:
        WeightsNotFoundError: missing file.
        WeightsError: unreadable file or mismatching keys/shapes.
    """
    gen = StarGANGenerator()
    load_strict(gen, read_stargan_checkpoint(checkpoint), str(checkpoint))
    return freeze(StarGAN(gen, **kwargs))


@register_manipulator("stargan-celeba", "StarGAN CelebA attribute editor (official 200000-G.ckpt, user-supplied)")
def _stargan_celeba(checkpoint: str | Path | None = None, pretrained: bool = True, weights_dir: str | None = None,
                    **kwargs: Any) -> StarGAN:
    """StarGAN with the official CelebA weights (``checkpoint`` or ``weights_dir/200000-G.ckpt``).

    Raises:
        WeightsNotFoundError: no checkpoint given or found.
    """
    check_keywords("manipulator", "stargan-celeba", StarGAN, kwargs)  # the architecture, with or without weights
    if not pretrained:
        return StarGAN(**kwargs)
    if checkpoint is None and weights_dir is not None and (Path(weights_dir) / CHECKPOINT_NAME).is_file():
        checkpoint = Path(weights_dir) / CHECKPOINT_NAME
    if checkpoint is None:
        raise WeightsNotFoundError(
            "stargan-celeba: expected the official StarGAN CelebA generator checkpoint (200000-G.ckpt from "
            "github.com/yunjey/stargan, `bash download.sh pretrained-celeba-128x128`), got none; it is not "
            "redistributed here: pass create_manipulator('stargan-celeba', checkpoint='.../200000-G.ckpt')"
        )
    return load_stargan(checkpoint, **kwargs)


__all__ = [
    "CELEBA_ATTRIBUTES",
    "ResidualBlock",
    "StarGAN",
    "StarGANGenerator",
    "load_stargan",
    "official_key_shapes",
    "read_stargan_checkpoint",
]
