"""Typed exceptions raised by nullswap.

Every public error derives from :class:`NullswapError`, so callers can catch the library's failures without
catching programming errors. Messages always state what was expected and what was found.
"""

from __future__ import annotations


class NullswapError(Exception):
    """Base class of every error nullswap raises on purpose."""


class InputError(NullswapError, ValueError):
    """A tensor or argument does not meet a function's contract (shape, dtype, range)."""


class ImageReadError(NullswapError, OSError):
    """A file could not be read as an image (not an image, truncated, empty, or a decompression bomb)."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot read image {str(path)!r}: {reason}")


class UnsupportedImageError(ImageReadError):
    """A readable image that nullswap does not protect: an animated image or a multi-page TIFF.

    ``nullswap protect`` lists such a photo with the status ``unsupported`` (not a failure); the message starts with
    ``unsupported: animated`` (or ``unsupported: multi-page``).
    """


class ImageWriteError(NullswapError, OSError):
    """A file could not be written (read-only folder, unsupported format, refused overwrite)."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot write image {str(path)!r}: {reason}")


class WeightsError(NullswapError):
    """A weight file is unknown, unavailable from every source, or fails to load."""


class ChecksumError(WeightsError):
    """A weight file's sha256 does not match its spec."""

    def __init__(self, path: object, expected: str, actual: str) -> None:
        self.path = path
        self.expected = expected
        self.actual = actual
        super().__init__(f"sha256 mismatch for {str(path)!r}: expected {expected}, got {actual}")


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """No source could provide a weight file."""


class UnknownModelError(NullswapError, KeyError):
    """A registry was asked for a name it does not hold."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        self.kind = kind
        self.name = name
        self.known = known
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(sorted(known)) or '(none)'}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DetectionError(NullswapError):
    """A face detector failed to run (not raised for images without faces: those give an empty result)."""


class DuplicateNameError(NullswapError, ValueError):
    """A registry was asked to register a name it already holds."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        super().__init__(f"{kind} {name!r}: expected a new name, got one that is already registered")


class UnsupportedJpegError(NullswapError):
    """A JPEG the coefficient-copying writer does not handle (CMYK, unusual sampling); the caller re-encodes it."""
