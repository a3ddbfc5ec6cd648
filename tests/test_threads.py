"""``nullswap.threads``: worker threads that leave the caller's PyTorch threads alone."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_workers_run_one_torch_thread_and_the_caller_keeps_its_own():
    # a fresh process: the count PyTorch keeps per thread is set once, at a thread's first use
    code = textwrap.dedent("""
        import torch
        torch.set_num_threads(2)
        from nullswap.threads import worker_pool
        with worker_pool(2, "t") as pool:
            inside = pool.submit(torch.get_num_threads).result()
            big = pool.submit(lambda: float((torch.ones(2_000_000) * 2).sum())).result()
        print(inside, big, torch.get_num_threads())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1", "4000000.0", "2"]


def test_a_plain_pool_keeps_the_process_count():
    code = textwrap.dedent("""
        import torch
        torch.set_num_threads(2)
        from nullswap.threads import worker_pool
        with worker_pool(1, "t", one_torch_thread=False) as pool:
            print(pool.submit(torch.get_num_threads).result(), torch.get_num_threads())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["2", "2"]


def test_a_folders_writer_thread_runs_one_torch_thread(tmp_path):
    """run_batch's writer (where on_done is called) must not start an OpenMP team of its own."""
    import torch

    from nullswap.batch import plan_outputs, run_batch

    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes(b"a")

    class Result:
        faces: list = []
        report = None

    seen: list[int] = []
    run_batch(plan_outputs([src / "a.png"], tmp_path / "out"), lambda p: Result(), settings={},
              on_done=lambda o: seen.append(torch.get_num_threads()))
    assert seen == [1]
