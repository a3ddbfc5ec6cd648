"""Worker threads beside the main thread's PyTorch work: each runs PyTorch on one thread (issue 14).

PyTorch's CPU kernels run their parallel regions on OpenMP (libgomp in the PyPI wheels), and every thread that runs
one gets its own team of OpenMP threads, alive as long as the thread. Once the process has more OpenMP threads than
cores, libgomp's idle threads stop spinning almost at once, so each parallel region of the main thread waits for a
futex wake-up of its workers; with the thousands of small convolutions of a gradient step that halves their speed.
Measured (2026-12-08 00:10-00:21 UTC, 2-core VM, 2 threads, model v8): ten refinement steps on one 128-px face
(auto's recipe) took 1.1-1.3 s in a fresh process and 2.4-2.6 s (1.15 cores busy instead of 1.99) once the
verifier's pool thread had run human-mobilefacenet, until that thread exited; ``nullswap protect`` with its default
``auto`` method took 5.0-5.7 s per 1-MP photo and 10.1-12.2 s for the 6-face group photo with that pool, 2.5-3.3 and
6.1-6.7 s with its thread on one PyTorch thread (two processes each, alternated; the one pass alone the same within
the VM's noise, 0.145-0.172 against 0.147-0.161 s at 1 MP). :func:`worker_pool` gives such threads one PyTorch
thread from their start.

The other side, measured too (README, "Session 19"): with every worker on one thread, the one pass alone was 0-15 %
slower (``benchmarks/protect_profile.py --photo "1 MP" --n 20``, four processes each: 164-176 against 140-168 ms per
photo), since idle OpenMP threads then spin beside onnxruntime's instead of sleeping at once; no ``GOMP_SPINCOUNT``
served both (1000: ten steps 2.15 s; 10000: 1.19 s and the one pass within the noise of the default's). So
:class:`~nullswap.protection.PhotoProtector` gives its verifiers the plain pool when its method runs no gradient steps
(the one pass alone: 141 / 152 against 142 / 153 ms, two processes each, 01:00 UTC), one-thread workers otherwise;
the decode pool and a folder's writer run one PyTorch thread either way (no measurable effect on the one pass).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch


def _one_torch_thread() -> None:
    torch.set_num_threads(1)


def worker_pool(max_workers: int, name: str, *, one_torch_thread: bool = True) -> ThreadPoolExecutor:
    """A thread pool whose threads run PyTorch ops on the calling worker alone (no OpenMP team of their own).

    The calling thread keeps its own count: ``torch.set_num_threads`` in a worker also sets the process-wide value
    that PyTorch gives a thread at its first parallel op, so this thread's is fixed here first. Threads started later
    that never ran a PyTorch op begin with one thread too; call ``torch.set_num_threads`` in them to change it.

    Args:
        max_workers: threads of the pool.
        name: prefix of the threads' names.
        one_torch_thread: ``False``: a plain pool (its threads run PyTorch at the process's count, with their own
            OpenMP team). Choice: :class:`~nullswap.protection.PhotoProtector` uses it for the verifiers of a method
            without gradient steps (the one pass alone), which then measured faster with libgomp's threads put to
            sleep at once (module doc: 137-144 against 149-158 ms per 1-MP photo).
    """
    torch.get_num_threads()  # fixes the calling thread's count now (PyTorch initialises it lazily)
    if not one_torch_thread:
        return ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name)
    return ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name, initializer=_one_torch_thread)


__all__ = ["worker_pool"]
