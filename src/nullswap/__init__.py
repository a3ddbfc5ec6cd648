"""nullswap: identity cloaking against deepfake face swapping (NullSwap, ID-Guard, ARS, retentive defense).

Protect a photo::

    import nullswap
    result = nullswap.protect("photo.jpg", report=True)
    result.save("photo.protected.jpg")
"""

from nullswap.__about__ import __version__
from nullswap.protection import PhotoProtector, ProtectedImage, protect

__all__ = ["PhotoProtector", "ProtectedImage", "__version__", "protect"]
