"""Small helpers shared by models of every kind, in one neutral home (no model module owns them).

``config_from_dict`` (dataclass configs that reject unknown keys), ``load_strict`` (a strict state-dict load whose
error names the key and shape problems), ``freeze`` (eval mode, no parameter gradients), ``unwrap`` (the model inside
DDP / Fabric wrappers) and :data:`ASSETS_ROOT` (the files shipped inside the package). The modules that used to define
them (``nullswap.protectors.retentive``, ``nullswap.manipulators.autoencoder``) still export them.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nullswap.errors import InputError, WeightsError

#: The package's shipped files (``assets/manipulators``, ``assets/nullswap-default``).
ASSETS_ROOT: Path = Path(__file__).resolve().parent / "assets"

__all__ = ["ASSETS_ROOT", "config_from_dict", "freeze", "load_strict", "unwrap"]


def config_from_dict(cls: type, d: dict[str, Any] | None, what: str) -> Any:
    """Build dataclass ``cls`` from a dict, rejecting unknown keys.

    Args:
        cls: a dataclass.
        d: its fields (``None``: all defaults).
        what: the config's name, for the message (``"autoencoder"`` -> ``"autoencoder config: ..."``).

    Raises:
        InputError: unknown keys, listing the known ones.
    """
    d = dict(d or {})
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise InputError(f"{what} config: expected keys among {sorted(names)}, got unknown {unknown}")
    return cls(**d)


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``module.load_state_dict(state, strict=True)`` raising :class:`WeightsError` with the key/shape problems.

    Raises:
        WeightsError: missing or unexpected keys, or shape mismatches (up to 8 of each named).
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or bad:
        raise WeightsError(
            f"{source}: expected the state dict of {type(module).__name__}, got missing keys {missing[:8]}, "
            f"unexpected keys {unexpected[:8]}, shape mismatches {bad[:8]}"
        )
    module.load_state_dict(state, strict=True)


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode, no parameter gradients (inputs stay differentiable); returns ``module``."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def unwrap(module: nn.Module, cls: type) -> nn.Module:
    """The ``cls`` instance inside DDP / Fabric wrappers (follows ``.module``).

    Raises:
        InputError: no ``cls`` instance inside ``module``.
    """
    m = module
    while not isinstance(m, cls) and isinstance(getattr(m, "module", None), nn.Module):
        m = m.module
    if not isinstance(m, cls):
        raise InputError(f"expected a {cls.__name__} (or a wrapper of one), got {type(module).__name__}")
    return m
