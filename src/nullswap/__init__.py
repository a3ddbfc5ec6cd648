"""nullswap: identity cloaking against deepfake face swapping (NullSwap, ID-Guard, ARS, retentive defense).

Protect a photo::

    import nullswap
    result = nullswap.protect("photo.jpg", report=True)
    result.save("photo.protected.jpg")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nullswap.__about__ import __version__

if TYPE_CHECKING:
    from nullswap.protection import PhotoProtector, ProtectedImage, protect

__all__ = ["PhotoProtector", "ProtectedImage", "__version__", "protect"]

_LAZY = {"PhotoProtector", "ProtectedImage", "protect"}


def __getattr__(name: str) -> Any:
    """Import the photo API (and torch) on first use, so ``nullswap --help`` and ``--version`` stay fast."""
    if name in _LAZY:
        from nullswap import protection

        return getattr(protection, name)
    raise AttributeError(f"module 'nullswap' has no attribute {name!r}")
