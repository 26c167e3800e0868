"""Where ctbench caches things, and ``.npz`` files keyed by the content of their inputs.

Everything cached lives below :func:`cache_root`. A keyed entry is a set of named numpy arrays computed from
some inputs, described by a JSON-able dict of *fields* (e.g. protocol, manifest sha256, split, weights sha256,
metric version). Its key is :func:`~ctbench.core.hashing.json_sha256` of the fields; the file is
``<folder>/<key>.npz`` (``<key>.<tag>.npz`` for a variant such as unfinished progress) and carries the
fields' canonical JSON inside, as the array :data:`FIELDS_ARRAY`; a ``.json`` file beside it holds
``{"key", "fields"}`` for people. On load the stored fields are compared with the wanted ones, so a file
copied or renamed under another key is never served. Files are written atomically, so an interrupted write
leaves the previous entry or none. An entry that is missing, unreadable or made from other fields is a
miss: the caller computes it again and stores it over the old one.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ctbench.core.atomic import atomic_path, write_text_atomic
from ctbench.core.hashing import canonical_json, json_sha256

FIELDS_ARRAY = "__fields__"
"""Name of the array (a 0-d unicode string) holding the fields' canonical JSON inside a keyed ``.npz``."""


def cache_root() -> Path:
    """``$CTBENCH_CACHE`` or ``~/.cache/ctbench``; everything ctbench caches lives below it."""
    return Path(os.environ.get("CTBENCH_CACHE") or Path.home() / ".cache" / "ctbench").expanduser()


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray], fields: dict[str, Any] | None = None) -> Path:
    """Write ``arrays`` as an uncompressed ``.npz`` atomically; with ``fields``, their canonical JSON goes in too.

    The folder is created if needed. Returns ``path``. Raises ``ValueError`` if an array is named :data:`FIELDS_ARRAY`.
    """
    if FIELDS_ARRAY in arrays:
        raise ValueError(f"array name {FIELDS_ARRAY!r} is reserved for the cache fields")
    if fields is not None:
        arrays = {**arrays, FIELDS_ARRAY: np.array(canonical_json(fields))}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # straight to disk: no second copy in memory
        # numpy's stub types **kwds beside the keyword `allow_pickle: bool`, so any str-keyed splat is flagged
        np.savez(f, **arrays)  # type: ignore[arg-type]
    return path


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (pickles refused), read into memory, :data:`FIELDS_ARRAY` left out.

    Raises ``OSError``, ``EOFError``, ``ValueError``, ``KeyError`` or ``zipfile.BadZipFile`` for a missing or
    unreadable file.
    """
    with np.load(path, allow_pickle=False) as z:
        return {name: z[name] for name in z.files if name != FIELDS_ARRAY}


class KeyedCache:
    """A folder of ``.npz`` entries, each named by the sha256 of the fields it was computed from."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    @staticmethod
    def key(fields: dict[str, Any]) -> str:
        """sha256 (hex) of the canonical JSON of ``fields``."""
        return json_sha256(fields)

    def path(self, fields: dict[str, Any], tag: str = "") -> Path:
        """``<folder>/<key>.npz``, or ``<folder>/<key>.<tag>.npz`` for a variant of the entry."""
        return self.folder / f"{self.key(fields)}{'.' + tag if tag else ''}.npz"

    def load(self, fields: dict[str, Any], tag: str = "") -> dict[str, np.ndarray] | None:
        """The arrays stored for exactly ``fields``, or None (missing, unreadable, or other fields inside)."""
        try:
            with np.load(self.path(fields, tag), allow_pickle=False) as z:
                if FIELDS_ARRAY not in z.files or str(z[FIELDS_ARRAY]) != canonical_json(fields):
                    return None
                return {name: z[name] for name in z.files if name != FIELDS_ARRAY}
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile):
            return None

    def store(self, fields: dict[str, Any], arrays: dict[str, np.ndarray], tag: str = "") -> Path:
        """Write the entry of ``fields`` atomically, and ``{"key", "fields"}`` as JSON beside it; returns its path."""
        path = write_npz(self.path(fields, tag), arrays, fields)
        sidecar = {"key": self.key(fields), "fields": json.loads(canonical_json(fields))}
        write_text_atomic(path.with_suffix(".json"), json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
        return path

    def discard(self, fields: dict[str, Any], tag: str = "") -> None:
        """Remove the entry of ``fields`` (and its JSON) if present."""
        path = self.path(fields, tag)
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)

