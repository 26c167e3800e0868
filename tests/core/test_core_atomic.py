"""Atomic writes: all or nothing, and ordinary file permissions."""

import os
import stat
from pathlib import Path

import pytest

from ctbench.core.atomic import atomic_path, install_copy, write_bytes_atomic, write_text_atomic


def _fail_mid_write(target: Path, exc: Exception) -> None:
    """Write half a file through ``atomic_path``, then raise ``exc`` before the block ends."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise exc


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "manifest.json"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError, match="crash mid-write"):
        _fail_mid_write(target, RuntimeError("crash mid-write"))
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_written_file_has_umask_permissions_not_private(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


def test_temporary_keeps_double_suffix(tmp_path):
    with atomic_path(tmp_path / "case.nii.gz") as tmp:
        assert tmp.name.endswith(".nii.gz")
        tmp.write_bytes(b"1")
    assert (tmp_path / "case.nii.gz").read_bytes() == b"1"


def test_bytes_writer_creates_folder_and_raising_writer_keeps_old_bytes(tmp_path):
    target = tmp_path / "sub" / "stats.npz"
    assert write_bytes_atomic(target, b"old") == target
    with pytest.raises(OSError, match="disk full"):
        _fail_mid_write(target, OSError("disk full"))
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["stats.npz"]


def test_install_copy_replaces_a_file_or_a_folder(tmp_path):
    src_file = tmp_path / "w.pth"
    src_file.write_bytes(b"weights")
    dest = tmp_path / "cache" / "w.pth"
    install_copy(src_file, dest)
    assert dest.read_bytes() == b"weights"
    src_dir = tmp_path / "module"
    (src_dir / "variables").mkdir(parents=True)
    (src_dir / "saved_model.pb").write_bytes(b"new")
    old = tmp_path / "cache" / "module"
    (old / "stale").mkdir(parents=True)
    install_copy(src_dir, old)
    assert sorted(p.name for p in old.iterdir()) == ["saved_model.pb", "variables"]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["module", "w.pth"]  # nothing left beside
