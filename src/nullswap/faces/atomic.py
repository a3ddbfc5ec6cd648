"""Atomic file writes: a hidden ``.NAME.part`` sibling, renamed over the destination only once it is complete.

A reader (or a batch run resumed after a crash) never sees a half-written photo: the destination either keeps its
old content or holds the whole new file. The rename is :func:`os.replace`, atomic within one file system, which the
``.part`` sibling shares with the destination.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nullswap.errors import ImageWriteError

__all__ = ["atomic_write", "part_path", "write_bytes_atomic"]


def part_path(path: str | os.PathLike[str]) -> Path:
    """The temporary sibling a write to ``path`` goes through: ``.NAME.part`` in the same folder."""
    p = Path(path)
    return p.with_name(f".{p.name}.part")


@contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield the ``.part`` path to write; when the block ends normally it is renamed to ``path``.

    The ``.part`` file is removed whatever happens, so a failed write leaves ``path`` as it was and no debris.

    Example:
        >>> with atomic_write("out.png") as tmp:  # doctest: +SKIP
        ...     image.save(tmp, format="PNG")

    Raises:
        ImageWriteError: writing or renaming failed (``"permission denied (...)"`` for a
            :class:`PermissionError`); any other exception of the block propagates unchanged.
    """
    p = Path(path)
    tmp = part_path(p)
    try:
        yield tmp
        os.replace(tmp, p)
    except PermissionError as e:
        raise ImageWriteError(p, f"permission denied ({e})") from e
    except OSError as e:
        raise ImageWriteError(p, str(e)) from e
    finally:
        if tmp.exists():
            tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_write`; returns ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ImageWriteError: the file cannot be written.
    """
    p = Path(path)
    with atomic_write(p) as tmp:
        tmp.write_bytes(data)
    return p
