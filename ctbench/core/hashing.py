r"""Content hashes (sha256, lowercase hex): of JSON-able values, of a file, of a folder.

Rules, stated once:

* **Canonical JSON** of a value is ``json.dumps(value, sort_keys=True, default=str)``: keys sorted at every
  level, Python's default separators, non-ASCII escaped, and values JSON cannot hold (paths, dates) written
  as ``str(value)``. :func:`json_sha256` hashes its UTF-8 bytes. Two dicts with the same items in any order
  hash the same.
* **A file** hashes as the sha256 of its bytes, so the result equals ``sha256sum FILE``.
* **A folder** (a DICOM series, a TF SavedModel) hashes as the sha256 of one line per regular file below it,
  ``<relative path>\0<sha256 of the file>\n``, the relative paths written with ``/`` and the lines sorted by
  that path. Renaming, adding, removing or changing any file changes the hash; where the folder lives,
  timestamps and empty folders do not.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

CHUNK_BYTES = 1 << 20
"""Files are read in 1 MiB blocks."""


def canonical_json(value: Any) -> str:
    """``value`` as canonical JSON text (see the module docstring)."""
    return json.dumps(value, sort_keys=True, default=str)


def json_sha256(value: Any) -> str:
    """sha256 (hex) of the canonical JSON of ``value``: the key of configs, protocols, manifests and caches."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def _bytes_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK_BYTES):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes, or of a folder's files by the folder rule of the module docstring.

    Raises ``FileNotFoundError`` if ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_dir():
        return _bytes_sha256(path)
    files = sorted((p.relative_to(path).as_posix(), p) for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for rel, f in files:
        h.update(f"{rel}\0{_bytes_sha256(f)}\n".encode())
    return h.hexdigest()
