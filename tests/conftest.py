"""Shared fixtures: the location of ``../shared`` (real data and weights), skipped with a message when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_root() -> Path | None:
    env = os.environ.get("NULLSWAP_SHARED")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared", Path.cwd().parent / "shared"]:
        if (cand / "data").is_dir() and (cand / "weights").is_dir():
            return cand.resolve()
    return None


SHARED = _shared_root()


#: CI sets NULLSWAP_REQUIRE_SHARED=1: there, a missing ../shared fails the tests that need it instead of skipping.
REQUIRE_SHARED = os.environ.get("NULLSWAP_REQUIRE_SHARED", "") not in ("", "0")


def need_shared(what: str) -> None:
    """Skip (or, with ``NULLSWAP_REQUIRE_SHARED=1``, fail) because ``what`` from ``../shared`` is absent."""
    msg = f"{what} is not present beside the repository; set NULLSWAP_SHARED"
    if REQUIRE_SHARED:
        pytest.fail(f"NULLSWAP_REQUIRE_SHARED=1: {msg}")
    pytest.skip(msg)


@pytest.fixture(scope="session")
def shared() -> Path:
    """Root of ``../shared``; skips the test with a clear message when it is absent (fails in CI)."""
    if SHARED is None:
        need_shared("../shared (real data and weights)")
    return SHARED


@pytest.fixture(scope="session")
def photos_dir(shared: Path) -> Path:
    return shared / "data" / "photos"


@pytest.fixture(scope="session")
def lfw_dir(shared: Path) -> Path:
    return shared / "data" / "lfw"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Keep every test's cache out of the user's ~/.cache."""
    monkeypatch.setenv("NULLSWAP_HOME", str(tmp_path_factory.getbasetemp() / "nullswap-home"))
