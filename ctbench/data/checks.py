"""Refusing bad scans: each check raises :class:`ScanError` naming the file and the reason."""

from __future__ import annotations

import os

import numpy as np

from ctbench.core.errors import CtbenchError
from ctbench.protocol import Protocol

AIR_HU = -900.0
"""Voxels at or below this count as air when deciding whether a scan is CT."""
MIN_AIR_FRACTION = 0.001
"""A CT scan of the abdomen has at least this share of air voxels (outside the body, bowel gas)."""


class ScanError(CtbenchError, ValueError):
    """A scan that cannot be prepared; ``str()`` is ``"<path>: <reason>"``."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def check_geometry(
    path: str | os.PathLike, shape: tuple[int, ...], spacing_mm: tuple[float, ...], protocol: Protocol
) -> None:
    """Refuse non-3D arrays, zero / negative / non-finite / absurd spacing and too-small scans."""
    if len(shape) != 3:
        raise ScanError(path, f"not a 3D image: shape {tuple(shape)}")
    sp = np.asarray(spacing_mm, dtype=np.float64)
    if not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ScanError(path, f"invalid voxel spacing {tuple(float(s) for s in sp)} mm (must be positive)")
    if np.any(sp > protocol.max_spacing_mm):
        raise ScanError(
            path, f"absurd voxel spacing {tuple(round(float(s), 3) for s in sp)} mm (> {protocol.max_spacing_mm} mm)"
        )
    if min(shape) < protocol.min_slices:
        raise ScanError(path, f"scan too small: shape {tuple(shape)}, need at least {protocol.min_slices} per axis")


def check_values(path: str | os.PathLike, data: np.ndarray) -> None:
    """Refuse NaN / infinite voxels and scans that are not CT in HU (no air near -1000 HU)."""
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise ScanError(path, f"{bad} NaN or infinite voxels")
    air = float(np.count_nonzero(data <= AIR_HU)) / data.size
    if air < MIN_AIR_FRACTION:
        raise ScanError(
            path,
            f"not a CT scan in HU: only {air:.3%} of voxels are air (<= {AIR_HU:g} HU; "
            f"values span {float(data.min()):g} to {float(data.max()):g}); MR, or CT without its rescale?",
        )
