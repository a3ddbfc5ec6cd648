"""Imports the manipulator modules so their factories register themselves."""

from nullswap.manipulators import autoencoder, base, simswap, stargan, swapper  # noqa: F401
