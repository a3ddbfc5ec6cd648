"""Atomic writes through a ``.part`` sibling (nullswap.faces.atomic)."""

import os

import pytest

from nullswap.errors import ImageWriteError
from nullswap.faces.atomic import atomic_write, part_path, write_bytes_atomic


def test_write_replaces_the_destination_and_leaves_no_part(tmp_path):
    dst = tmp_path / "out.jpg"
    dst.write_bytes(b"old")
    assert write_bytes_atomic(dst, b"new") == dst
    assert dst.read_bytes() == b"new"
    assert part_path(dst) == tmp_path / ".out.jpg.part"
    assert sorted(os.listdir(tmp_path)) == ["out.jpg"]


def test_failed_block_keeps_the_old_file_and_removes_the_part(tmp_path):
    dst = tmp_path / "out.png"
    dst.write_bytes(b"old")
    with pytest.raises(ImageWriteError, match="disk full"), atomic_write(dst) as tmp:
        tmp.write_bytes(b"half")
        raise OSError("disk full")
    assert dst.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["out.png"]


def test_other_errors_propagate_unchanged(tmp_path):
    with pytest.raises(ValueError, match="bad mode"), atomic_write(tmp_path / "a.png") as tmp:
        tmp.write_bytes(b"x")
        raise ValueError("bad mode")
    assert os.listdir(tmp_path) == []


def test_missing_folder_is_an_image_write_error(tmp_path):
    with pytest.raises(ImageWriteError):
        write_bytes_atomic(tmp_path / "nope" / "a.jpg", b"x")
