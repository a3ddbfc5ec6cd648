"""The C allocator's arenas: fewer of them for a process that protects photos on several threads (issue 14).

glibc's ``malloc`` gives each thread that allocates while another holds the lock its own arena (up to 8 per core), and
memory freed inside an arena stays mapped for that arena's later use. ``nullswap protect DIR`` decodes the next photo,
protects the current one and writes the previous one on three threads, each handling tens of megabytes per 12-MP
photo, so the freed buffers of each thread stay resident side by side. :func:`limit_malloc_arenas` caps the arenas
(``mallopt(M_ARENA_MAX, n)``, what the ``MALLOC_ARENA_MAX`` environment variable does at start-up).

Choice (measured 2026-12-07 23:07-23:09 UTC, ``python benchmarks/protect.py --threads 2 --n 50 --n12 3 --repeat 1
--no-pgd --refine 0 --malloc-arenas 0`` / ``2``, interleaved, twice each, 2-core VM, one pass v8): peak RSS after the
pipelined 12-MP folder 1462 / 1512 MiB with glibc's default against 1220 / 1242 MiB with 2 arenas, after the 50
shared JPEGs 1098 / 1138 against 977 / 991 MiB; photos per second within the runs' noise (12-MP folder 1.40 / 1.37
against 1.32 / 1.33, shared JPEGs 5.25 / 5.11 against 5.27 / 4.45). The command line calls it before it starts
any thread; the library never does (the process's allocator belongs to the application that embeds it).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

#: ``M_ARENA_MAX`` of glibc's ``<malloc.h>``.
M_ARENA_MAX = -8

#: Arenas :func:`limit_malloc_arenas` allows by default.
DEFAULT_ARENAS = 2


def limit_malloc_arenas(arenas: int = DEFAULT_ARENAS) -> bool:
    """Cap glibc's malloc arenas at ``arenas`` for this process; ``True`` when applied.

    A no-op returning ``False`` where the C library is not glibc (macOS, Windows, musl) or ``mallopt`` refuses. Call
    it before threads start allocating: arenas that already exist stay.

    Raises:
        ValueError: ``arenas`` is not a positive int.
    """
    if isinstance(arenas, bool) or not isinstance(arenas, int) or arenas < 1:
        raise ValueError(f"arenas: expected an int >= 1, got {arenas!r}")
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError) as e:  # not glibc: nothing to cap
        log.debug("malloc arenas left as they are: %s", e)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_ARENA_MAX, arenas))
    log.debug("malloc arenas capped at %d: %s", arenas, ok)
    return ok


__all__ = ["DEFAULT_ARENAS", "M_ARENA_MAX", "limit_malloc_arenas"]
