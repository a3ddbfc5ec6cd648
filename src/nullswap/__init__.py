"""nullswap: identity cloaking against deepfake face swapping (NullSwap, ID-Guard, ARS, retentive defense)."""

from nullswap.__about__ import __version__

__all__ = ["__version__"]
