"""Face manipulation models (StarGAN, SimSwap, the project's swapper and surrogate) behind ``G(x, condition)``."""

from nullswap.manipulators.base import (
    FaceSwapper,
    Manipulator,
    create_manipulator,
    list_manipulators,
    register_manipulator,
)

__all__ = ["FaceSwapper", "Manipulator", "create_manipulator", "list_manipulators", "register_manipulator"]
