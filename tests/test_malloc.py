"""``nullswap.malloc``: the arena cap the command line sets before it starts threads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nullswap.malloc import keep_freed_memory, limit_malloc_arenas


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_arena_counts_are_refused(bad):
    with pytest.raises(ValueError, match="expected an int >= 1"):
        limit_malloc_arenas(bad)


@pytest.mark.parametrize("bad", [0, -1, 2**31, 1.5, True, "2"])
def test_bad_thresholds_are_refused(bad):
    with pytest.raises(ValueError, match="mmap_threshold: expected an int of bytes"):
        keep_freed_memory(mmap_threshold=bad)
    with pytest.raises(ValueError, match="trim_threshold: expected an int of bytes"):
        keep_freed_memory(trim_threshold=bad)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
@pytest.mark.parametrize("call", ["limit_malloc_arenas(2)", "keep_freed_memory()"])
def test_settings_apply_on_glibc_in_a_fresh_process(call):
    # a fresh process, so this test run's own allocator is left alone
    code = f"from nullswap.malloc import keep_freed_memory, limit_malloc_arenas; print({call})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    try:
        glibc = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        glibc = None
    if not glibc:
        pytest.skip("not glibc: the call is a no-op there")
    assert out == "True"


def test_protect_cli_sets_the_allocator_before_its_threads(monkeypatch, tmp_path):
    """The command calls both (before loading models or starting the folder's threads)."""
    from typer.testing import CliRunner

    import nullswap.malloc
    from nullswap.cli.main import app

    calls = []
    monkeypatch.setattr(nullswap.malloc, "limit_malloc_arenas", lambda *a: calls.append("arenas") or True)
    monkeypatch.setattr(nullswap.malloc, "keep_freed_memory", lambda *a: calls.append("keep") or True)
    r = CliRunner().invoke(app, ["protect", str(tmp_path / "none.jpg"), "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "no images found" in r.output  # it failed on the input, after the settings
    assert calls == ["arenas", "keep"]
