"""LFW verification of a recognizer moved to :mod:`nullswap.evaluation.lfw_verification`; its names resolve here.

The re-export is lazy (on attribute access): a module-level import would make the recognizers depend on the
evaluation layer above them.
"""

from __future__ import annotations

__all__ = ["embed_lfw", "verify_lfw"]  # noqa: F822 - resolved by __getattr__


def __getattr__(name: str) -> object:
    """``embed_lfw`` / ``verify_lfw`` from :mod:`nullswap.evaluation.lfw_verification`."""
    if name in __all__:
        from nullswap.evaluation import lfw_verification

        return getattr(lfw_verification, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
