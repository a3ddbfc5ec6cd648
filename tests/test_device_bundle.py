"""scripts/device/bundle.py: the payload split over calls (first-fit decreasing under the per-call limit)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "scripts" / "device" / "bundle.py"


def _bundle():
    spec = importlib.util.spec_from_file_location("device_bundle", _PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_split_calls_fits_every_group_and_keeps_every_item():
    b = _bundle()
    items = [("dlib", 22), ("pack", 32), ("arcface", 14), ("py", 10), ("faceplugin", 5), ("mfn", 4), ("whl", 2)]
    groups = b.split_calls(items, 36)
    sizes = dict(items)
    assert sorted(n for g in groups for n in g) == sorted(sizes)
    assert all(sum(sizes[n] for n in g) <= 36 for g in groups)
    assert len(groups) == 3  # 89 units in 36-unit calls: three is the least possible
    assert b.split_calls(items, 1000) == [[n for n, _ in sorted(items, key=lambda t: -t[1])]]


def test_split_calls_refuses_an_item_too_large():
    with pytest.raises(SystemExit, match="does not fit"):
        _bundle().split_calls([("pack", 40 * 2**20)], 30 * 2**20)
