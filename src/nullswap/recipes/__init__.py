"""Training recipes: modules that own a protector's trainable networks and its losses (see :mod:`nullswap.train`).

A recipe exposes ``generator``, ``discriminator`` (or ``None``), ``ensemble``, ``optimizer_groups()``,
``generator_step(images, epoch)``, ``discriminator_step(images, protected)``, ``extra_state()`` /
``load_extra_state(state)``, ``protector()`` and ``export(out_dir, meta)``.
"""

from __future__ import annotations

from typing import Any

from nullswap.errors import UnknownModelError

_RECIPES = ("nullswap", "surrogate-ae", "swapper", "idguard", "ars", "retentive")


def list_recipes() -> list[str]:
    """Names of the available recipes."""
    return list(_RECIPES)


def create_recipe(name: str, cfg: dict[str, Any]) -> Any:
    """Build the recipe ``name`` from a resolved training config (``cfg["weights_dir"]`` is optional).

    Raises:
        UnknownModelError: unknown recipe name.
    """
    if name == "nullswap":
        from nullswap.recipes.nullswap import NullSwapRecipe

        return NullSwapRecipe.from_config(cfg, weights_dir=cfg.get("weights_dir"))
    if name == "surrogate-ae":
        from nullswap.recipes.manipulators import AutoencoderRecipe

        return AutoencoderRecipe.from_config(cfg)
    if name == "swapper":
        from nullswap.recipes.manipulators import SwapperRecipe

        return SwapperRecipe.from_config(cfg)
    if name == "idguard":
        from nullswap.recipes.idguard import IDGuardRecipe

        return IDGuardRecipe.from_config(cfg, weights_dir=cfg.get("weights_dir"))
    if name == "ars":
        from nullswap.recipes.ars import ARSRecipe

        return ARSRecipe.from_config(cfg, weights_dir=cfg.get("weights_dir"))
    if name == "retentive":
        from nullswap.recipes.retentive import RetentiveRecipe

        return RetentiveRecipe.from_config(cfg, weights_dir=cfg.get("weights_dir"))
    raise UnknownModelError("recipe", name, list(_RECIPES))


__all__ = ["create_recipe", "list_recipes"]
