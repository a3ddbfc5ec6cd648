"""The folder pipeline of nullswap.batch.run_batch: prefetch of the next photo, ordered writes, resume."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nullswap.batch import MANIFEST, plan_outputs, run_batch


@dataclass
class _Face:
    verdict: Any = None
    box: list[float] = field(default_factory=lambda: [0.0, 0.0, 1.0, 1.0])


@dataclass
class _Result:
    faces: list[_Face]
    status: str = "unverified"
    report: dict[str, Any] | None = None

    def save(self, path: Path, *, strip_gps: bool = True) -> Path:
        path.write_bytes(b"protected")
        return path


def test_pipeline_prefetches_the_next_photo_and_keeps_order_and_resume(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    names = ["a.png", "b.png", "noface.png", "c.png"]
    for n in names:
        (src / n).write_bytes(n.encode())
    jobs = plan_outputs(sorted(src.iterdir()), tmp_path / "out")
    prefetched: list[str] = []
    protected: list[str] = []
    done: list[str] = []

    def protect_file(p: Path) -> _Result:
        protected.append(p.name)
        return _Result([] if p.name == "noface.png" else [_Face()])

    outcomes = run_batch(jobs, protect_file, settings={"m": 1}, prefetch=lambda p: prefetched.append(p.name),
                         on_done=lambda o: done.append(o.source.name))
    order = [j.source.name for j in jobs]
    assert [o.source.name for o in outcomes] == order == done == protected
    assert prefetched == order[1:]  # each photo's successor, while it is protected
    assert [o.status for o in outcomes] == ["unverified", "unverified", "unverified", "no-face"]
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert sorted(manifest) == ["a.png", "b.png", "c.png"]
    again = run_batch(jobs, protect_file, settings={"m": 1}, prefetch=lambda p: prefetched.append(p.name))
    assert [o.status for o in again] == ["skipped", "skipped", "skipped", "no-face"]
    assert prefetched[len(order) - 1:] == ["noface.png"]  # done photos are not decoded again
