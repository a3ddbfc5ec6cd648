"""Batch protection of many photos: input expansion, collision-free output names, resume, per-photo outcomes.

Rules (what ``nullswap protect`` documents):

- Inputs are files, folders (searched recursively for image extensions) and glob patterns. Files named
  ``*.protected.*`` (earlier outputs) are not picked up from folders.
- Output: ``--out DIR`` writes ``DIR/NAME.EXT``; without ``--out``, or when ``DIR`` is the photo's own folder, the
  output is ``NAME.protected.EXT`` beside it. An input is never overwritten.
- Two inputs that would get the same output name, or an output name already taken by a file this tool did not write,
  get ``NAME-2.EXT``, ``NAME-3.EXT``, ... (logged).
- Resume: a manifest ``.nullswap-manifest.json`` in each output folder records, per output file, the source's sha256 and
  the settings. A photo whose output exists with a matching manifest entry is skipped.
- Outcomes per photo: its worst face's verdict, ``protected``, ``partial`` or ``weak`` (:mod:`nullswap.verdict`;
  ``unverified`` when verification is off; the output is written in every case), ``skipped`` (done before: the
  verdicts recorded then are kept), ``no-face`` (nothing to protect: no output written, not a failure),
  ``unsupported`` (a readable image nullswap does not protect, an animated GIF/WebP/PNG or a multi-page TIFF: listed
  with its reason, no output written, not a failure), ``failed`` (unreadable or not an image, unwritable output,
  ...: reported, the batch goes on).
- Before the work: :func:`check_output_folders` creates and probes every output folder, so an unwritable one stops
  the run before the first photo.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nullswap.errors import ImageWriteError, InputError, NullswapError, UnsupportedImageError
from nullswap.faces.io import is_image_path

log = logging.getLogger(__name__)

MANIFEST = ".nullswap-manifest.json"


@dataclass
class Job:
    """One photo to protect and where its output goes."""

    source: Path
    output: Path


@dataclass
class Outcome:
    """What happened to one photo."""

    source: Path
    output: Path | None
    status: str  # protected | partial | weak | unverified | skipped | no-face | unsupported | failed
    faces: int = 0
    message: str = ""
    report: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    verdicts: list[dict[str, Any]] = field(default_factory=list)  # per face: FaceVerdict.to_dict() (+ "box")


#: Every photo status, in summary order.
STATUSES: tuple[str, ...] = ("protected", "partial", "weak", "unverified", "skipped", "no-face", "unsupported",
                             "failed")


def expand_inputs(inputs: Sequence[str | Path]) -> tuple[list[Path], list[Outcome]]:
    """Files, folders (recursive, by extension) and globs -> (sorted unique photo paths, failures for bad inputs).

    A named file that is not an image (by extension) or does not exist is a failure; files in folders that are not
    images are ignored.
    """
    found: dict[Path, None] = {}
    bad: list[Outcome] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and is_image_path(f) and ".protected." not in f.name and not f.name.startswith("."):
                    found[f] = None
        elif p.is_file():
            if is_image_path(p):
                found[p] = None
            else:
                bad.append(Outcome(p, None, "failed", message=f"not an image file (extension {p.suffix!r})"))
        elif any(ch in str(raw) for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(str(raw), recursive=True))
            files = [m for m in matches if m.is_file() and is_image_path(m)]
            if not files:
                bad.append(Outcome(p, None, "failed", message="the pattern matches no image"))
            for m in files:
                found[m] = None
        elif p.is_symlink():
            bad.append(Outcome(p, None, "failed", message="broken or looping symbolic link"))
        else:
            bad.append(Outcome(p, None, "failed", message="no such file or folder"))
    return list(found), bad


def sha256_of(path: Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_manifest(folder: Path) -> dict[str, Any]:
    f = folder / MANIFEST
    if f.is_file():
        try:
            return json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            log.warning("unreadable manifest %s: ignored", f)
    return {}


def _write_manifest(folder: Path, data: dict[str, Any]) -> None:
    tmp = folder / (MANIFEST + ".part")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(folder / MANIFEST)


def check_output_folders(folders: Iterable[Path]) -> None:
    """Create every output folder and write (then remove) a probe file in it, before any photo is processed.

    Raises:
        InputError: a folder cannot be created or written to (names it and the system's reason).
    """
    for folder in dict.fromkeys(folders):
        probe = folder / f".nullswap-write-test-{os.getpid()}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            reason = e.strerror or type(e).__name__
            raise InputError(f"output folder {str(folder)!r}: expected a folder this user can write to, got "
                             f"{reason.lower()}") from None


def plan_outputs(photos: Iterable[Path], out: Path | None) -> list[Job]:
    """Assign every photo a collision-free output path (see module rules)."""
    taken: set[Path] = set()
    jobs: list[Job] = []
    for src in photos:
        folder = out if out is not None else src.parent
        same = folder.resolve() == src.parent.resolve()
        stem = f"{src.stem}.protected" if same else src.stem
        cand = folder / f"{stem}{src.suffix}"
        k = 2
        while cand.resolve() in taken or cand.resolve() == src.resolve():
            cand = folder / f"{stem}-{k}{src.suffix}"
            k += 1
        taken.add(cand.resolve())
        jobs.append(Job(src, cand))
    return jobs


def run_batch(
    jobs: Sequence[Job],
    protect_file: Callable[[Path], Any],
    *,
    settings: dict[str, Any],
    report: bool = False,
    strip_gps: bool = True,
    on_done: Callable[[Outcome], None] | None = None,
    prefetch: Callable[[Path], None] | None = None,
) -> list[Outcome]:
    """Protect every job's photo, never stopping on one photo's failure.

    A folder is a pipeline: while the models work on one photo, ``prefetch`` decodes the next one and a writer
    thread encodes the previous one's output (then its report and its manifest entry). Writing happens in job order
    on one thread, so outputs, names, manifests, outcomes and ``on_done`` calls are those of a sequential run; at
    most one finished photo waits to be written. An interrupt (Ctrl-C) lets the pending writes finish first.

    Args:
        jobs: from :func:`plan_outputs`.
        protect_file: ``path -> ProtectedImage``.
        settings: recorded in the manifest; a changed setting re-protects.
        report: write ``NAME.report.json`` beside each output.
        strip_gps: drop EXIF GPS from outputs (default; ``False`` keeps the location).
        on_done: called after each photo (progress), from the writer thread.
        prefetch: ``path -> None``, starts decoding the next photo to protect (e.g. :meth:`PhotoProtector.prefetch`).
    """
    manifests: dict[Path, dict[str, Any]] = {}
    lock = threading.Lock()  # the manifests: read by the main thread, updated by the writer

    def finish(item: Outcome | tuple[_Todo, Any]) -> Outcome:
        if isinstance(item, Outcome):
            outcome = item
        else:
            todo, result = item
            outcome = _write(todo, result, report, strip_gps)
            if outcome.status in WRITTEN and outcome.output is not None:
                with lock:
                    todo.manifest[outcome.output.name] = {
                        "source": str(todo.job.source), "sha256": todo.digest, "settings": settings,
                        "faces": outcome.faces, "status": outcome.status,
                        "verdicts": [_compact(v) for v in outcome.verdicts]}
                    try:
                        _write_manifest(todo.job.output.parent, todo.manifest)
                    except OSError as e:
                        log.warning("could not write the manifest in %s: %s", todo.job.output.parent, e)
        if on_done:
            on_done(outcome)
        return outcome

    from nullswap.threads import worker_pool  # lazily: it imports torch

    futures: list[Future[Outcome]] = []
    with worker_pool(1, "nullswap-write") as writer:  # one PyTorch thread (nullswap.threads)
        nxt = _prepare(jobs[0], manifests, settings, lock) if jobs else None
        for i in range(len(jobs)):
            cur = nxt
            nxt = _prepare(jobs[i + 1], manifests, settings, lock) if i + 1 < len(jobs) else None
            if prefetch is not None and isinstance(nxt, _Todo):
                prefetch(nxt.job.source)
            item: Outcome | tuple[_Todo, Any]
            if isinstance(cur, _Todo):
                try:
                    item = (cur, protect_file(cur.job.source))
                except UnsupportedImageError as e:  # animated / multi-page: listed, not a failure
                    item = Outcome(cur.job.source, None, "unsupported", message=e.reason)
                except NullswapError as e:
                    item = Outcome(cur.job.source, None, "failed", message=str(e))
                except (OSError, ValueError, RuntimeError) as e:  # unexpected: still never stop the batch
                    log.exception("failed on %s", cur.job.source)
                    item = Outcome(cur.job.source, None, "failed", message=f"{type(e).__name__}: {e}")
            else:
                item = cur  # failed or skipped before any work
            while len(futures) > 1 and not futures[-2].done():  # at most one finished photo waits for the writer
                futures[-2].result()
            futures.append(writer.submit(finish, item))
            del item  # the writer holds the finished photo until it is written, then its memory goes
    return [f.result() for f in futures]


@dataclass
class _Todo:
    """A photo that needs protecting: its job, its output folder's manifest and its sha256."""

    job: Job
    manifest: dict[str, Any]
    digest: str


def _prepare(job: Job, manifests: dict[Path, dict[str, Any]], settings: dict[str, Any],
             lock: threading.Lock) -> Outcome | _Todo:
    """Before the work: the output folder, the source's sha256, and whether it was done before (``skipped``)."""
    folder = job.output.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return Outcome(job.source, None, "failed", message=f"cannot create output folder {folder}: {e}")
    with lock:
        if folder not in manifests:
            manifests[folder] = _read_manifest(folder)
        man = manifests[folder]
    try:
        digest = sha256_of(job.source)
    except OSError as e:
        return Outcome(job.source, None, "failed", message=f"cannot read: {e}")
    with lock:
        entries = list(man.items())
    for name, entry in entries:  # done before (possibly under a de-collided name)?
        done = folder / name
        if (entry.get("source") == str(job.source) and entry.get("sha256") == digest
                and entry.get("settings") == settings and done.exists()):
            return Outcome(job.source, done, "skipped", faces=int(entry.get("faces", 0)),
                           message=f"done before ({entry.get('status', 'protected')})",
                           verdicts=list(entry.get("verdicts", [])),
                           extra={"previous_status": entry.get("status", "protected")})
    return _Todo(job, man, digest)


#: Statuses of a photo whose output was written by this run.
WRITTEN = ("protected", "partial", "weak", "unverified")


def _compact(v: dict[str, Any]) -> dict[str, Any]:
    """What the manifest keeps of a face verdict (enough to report it again when the photo is skipped)."""
    return {k: v[k] for k in ("outcome", "summary", "strength", "box") if k in v}


def _write(todo: _Todo, result: Any, report: bool, strip_gps: bool) -> Outcome:
    """Write a protected photo (and its report) under its output name, de-collided at write time."""
    job = todo.job
    if not result.faces:
        return Outcome(job.source, None, "no-face", message="no face found: nothing to protect, no output written",
                       report=result.report)
    output = job.output
    if output.exists():
        k = 2
        stem = output.stem
        while output.exists():  # a file we did not write (or other settings): never overwrite
            output = output.with_name(f"{stem}-{k}{output.suffix}")
            k += 1
        log.warning("%s exists and was not written by this run's settings: writing %s", job.output, output.name)
    try:
        written = result.save(output, strip_gps=strip_gps)
    except (ImageWriteError, InputError, OSError) as e:
        return Outcome(job.source, None, "failed", faces=len(result.faces), message=f"cannot write: {e}")
    if report and result.report is not None:
        try:
            written.with_name(written.stem + ".report.json").write_text(json.dumps(result.report, indent=1))
        except OSError as e:
            log.warning("could not write the report for %s: %s", written, e)
    verdicts = [{**f.verdict.to_dict(), "box": f.box} for f in result.faces if f.verdict is not None]
    return Outcome(job.source, written, result.status, faces=len(result.faces), report=result.report,
                   extra={"sha256": todo.digest}, verdicts=verdicts)


__all__ = ["MANIFEST", "STATUSES", "WRITTEN", "Job", "Outcome", "check_output_folders", "expand_inputs",
           "plan_outputs", "run_batch", "sha256_of"]
