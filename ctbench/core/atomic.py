"""Atomic writes: write to a temporary file in the destination folder, then ``os.replace``.

A crash or Ctrl-C during a write leaves either the old file or no file, never a truncated one.
:func:`atomic_path` serves writers that need a path (NIfTI, PNG, ``torch.save``); :func:`write_text_atomic`
and :func:`write_bytes_atomic` write a whole text or byte string; :func:`install_copy` puts a copy of a file
or a folder in place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _default_mode() -> int:
    """Permissions a plain ``open(path, "w")`` would give: 0o666 less the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is moved onto ``path`` atomically.

    The folder of ``path`` must exist. The temporary name keeps ``path``'s suffixes (``.nii.gz`` stays
    ``.nii.gz``) so libraries that pick a format from the file name behave the same. The file gets ordinary
    permissions (not ``mkstemp``'s private 0600), so a shared results or data folder stays readable by the
    group. On error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _default_mode())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, creating its folder if needed; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, creating its folder if needed; returns ``path``."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def install_copy(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy ``src`` (a file or a folder) to ``dest``: copied beside ``dest`` first, then moved in with ``os.replace``.

    An existing ``dest`` is replaced. For a file the switch is atomic; for a folder the old one is moved aside
    and the new one moved in (two renames), so ``dest`` is never a half-copied folder. Returns ``dest``.
    """
    src, dest = Path(src), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        staged = tmp / dest.name
        if src.is_dir():
            shutil.copytree(src, staged)
        else:
            shutil.copyfile(src, staged)
        if dest.is_dir():
            os.replace(dest, tmp / "old")
        os.replace(staged, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
