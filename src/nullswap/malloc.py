"""The C allocator's settings for a process that protects photos (issue 14): fewer arenas, freed buffers kept.

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

Each photo allocates and frees the same large buffers again (the decode, the faces' region, the written file's
read-back, onnxruntime's activations: it runs without its own arena). glibc serves blocks above its mmap threshold
(128 KiB at start, raised by each freed mapped block up to 32 MiB) with fresh ``mmap`` pages and returns memory
above its trim threshold at the heap's top to the kernel, so every photo page-faults its buffers in again: ~115k
minor faults and ~290 ms of kernel time per 12-MP photo, ~16k and ~50 ms for the 6-face group photo.
:func:`keep_freed_memory` fixes both thresholds (``mallopt(M_MMAP_THRESHOLD)``, ``mallopt(M_TRIM_THRESHOLD)``,
what ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` do at start-up) so that freed buffers are reused.

Choice (measured 2026-12-07 23:49-23:58 UTC, 2-core VM, one pass v8, a ``/tmp`` script: 2 warm-up then 8 runs of
``protect_file`` + ``save`` per photo of ``benchmarks/protect.py``, arenas capped at 2; the thresholds set by the
environment variables; four processes each, alternated): with 32 MiB / 256 MiB against glibc's dynamic thresholds,
12 MP median 565-669 against 697-707 ms per photo, 42-73k against 107-121k minor faults and 101-206 against
268-299 ms kernel time per photo; the group photo 1.8k against 15.9k faults per photo in 3 of 4 runs (12-21k in the
4th), 14-46 against 48-52 ms kernel time; 1 MP within the noise (2.4-3.0k against 2.7-3.9k faults); the process's
peak RSS 1178-1227 against 1143-1198 MiB. A 128 MiB mmap threshold (the 12-MP buffers on the heap too) halved the
12-MP faults again (25-27k) for no measurable time (547-634 against 583-645 ms, three processes each); 32 MiB is
glibc's own ceiling for its dynamic threshold. Folders (``python benchmarks/protect.py --threads 2 --n 50 --n12 3
--repeat 3 --refine 0 --no-pgd --malloc-keep 0`` / ``1``, alternated, 2026-12-07 23:59-00:01 UTC): peak RSS after
the pipelined 12-MP folder 1243 / 1278 MiB against 1210 / 1215 MiB with glibc's dynamic thresholds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from typing import Any

log = logging.getLogger(__name__)

#: ``M_ARENA_MAX`` of glibc's ``<malloc.h>``.
M_ARENA_MAX = -8

#: ``M_TRIM_THRESHOLD`` and ``M_MMAP_THRESHOLD`` of glibc's ``<malloc.h>``.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: Arenas :func:`limit_malloc_arenas` allows by default.
DEFAULT_ARENAS = 2

#: Blocks up to this size come from the heap (and are reused) rather than from fresh mappings.
DEFAULT_MMAP_THRESHOLD = 32 << 20

#: Free memory kept at the heap's top before it is returned to the kernel.
DEFAULT_TRIM_THRESHOLD = 256 << 20


def _mallopt() -> Any:
    """The C library's ``mallopt`` (glibc; ``None`` off Linux or where the C library has none)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError) as e:  # not glibc
        log.debug("no mallopt: %s", e)
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt


def limit_malloc_arenas(arenas: int = DEFAULT_ARENAS) -> bool:
    """Cap glibc's malloc arenas at ``arenas`` for this process; ``True`` when applied.

    A no-op returning ``False`` where the C library is not glibc (macOS, Windows, musl) or ``mallopt`` refuses. Call
    it before threads start allocating: arenas that already exist stay.

    Raises:
        ValueError: ``arenas`` is not a positive int.
    """
    if isinstance(arenas, bool) or not isinstance(arenas, int) or arenas < 1:
        raise ValueError(f"arenas: expected an int >= 1, got {arenas!r}")
    mallopt = _mallopt()
    if mallopt is None:
        return False
    ok = bool(mallopt(M_ARENA_MAX, arenas))
    log.debug("malloc arenas capped at %d: %s", arenas, ok)
    return ok


def keep_freed_memory(mmap_threshold: int = DEFAULT_MMAP_THRESHOLD,
                      trim_threshold: int = DEFAULT_TRIM_THRESHOLD) -> bool:
    """Fix glibc's mmap and trim thresholds so that a photo's large buffers reuse the last photo's memory.

    ``True`` when both were applied; a no-op returning ``False`` where the C library is not glibc. Call it once, at
    start-up (the thresholds stop adapting to the process: glibc's dynamic mmap threshold is switched off).

    Args:
        mmap_threshold: bytes; larger blocks still get their own mapping (released when freed).
        trim_threshold: bytes of free memory kept at the heap's top.

    Raises:
        ValueError: a threshold is not a positive int below 2 GiB (``mallopt`` takes a C ``int``).
    """
    for name, v in (("mmap_threshold", mmap_threshold), ("trim_threshold", trim_threshold)):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 < v < 2**31:
            raise ValueError(f"{name}: expected an int of bytes in [1, 2**31), got {v!r}")
    mallopt = _mallopt()
    if mallopt is None:
        return False
    ok = bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))
    log.debug("malloc mmap threshold %d, trim threshold %d: %s", mmap_threshold, trim_threshold, ok)
    return ok


__all__ = ["DEFAULT_ARENAS", "DEFAULT_MMAP_THRESHOLD", "DEFAULT_TRIM_THRESHOLD", "M_ARENA_MAX", "M_MMAP_THRESHOLD",
           "M_TRIM_THRESHOLD", "keep_freed_memory", "limit_malloc_arenas"]
