"""The FLARE22 data protocol: reading scans, preparing them, the prepared-folder format, phantoms, Dataset.

Public API (import from here):

* prepared folder: :func:`load_manifest`, :func:`manifest_sha256`, :func:`cases`, :func:`read_volume`,
  :func:`write_volume`, :func:`read_hu_range`, :func:`to_hu`, :func:`from_hu`
* :class:`PreparedDataset` (torch ``Dataset``), :func:`prepare` (batch), :func:`synthesize` (phantoms)

Heavy modules (torch, SimpleITK) are imported only when their names are first used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_manifest": "ctbench.data.prepared",
    "manifest_sha256": "ctbench.data.prepared",
    "cases": "ctbench.data.prepared",
    "read_volume": "ctbench.data.prepared",
    "write_volume": "ctbench.data.prepared",
    "read_hu_range": "ctbench.data.prepared",
    "to_hu": "ctbench.data.prepared",
    "from_hu": "ctbench.data.prepared",
    "Manifest": "ctbench.data.prepared",
    "CaseRecord": "ctbench.data.prepared",
    "PreparedCase": "ctbench.data.prepared",
    "PreparedDataset": "ctbench.data.dataset",
    "prepare": "ctbench.data.batch",
    "PrepareError": "ctbench.data.batch",
    "synthesize": "ctbench.data.synth",
    "ScanError": "ctbench.data.checks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ctbench.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
