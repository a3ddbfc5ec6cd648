"""Training: one Lightning Fabric loop for every protector recipe, configs, checkpoints."""

from nullswap.train.config import load_config
from nullswap.train.trainer import FitResult, Trainer, build_datasets

__all__ = ["FitResult", "Trainer", "build_datasets", "load_config"]
