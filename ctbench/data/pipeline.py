"""The ``flare22-v1`` pipeline for one scan: RAS+ source in HU → ``(D, H, W)`` volume in [-1, 1].

Steps: (read and reorient: :mod:`ctbench.data.scan_io`) → refuse bad scans (:mod:`ctbench.data.checks`)
→ find the body and place the crop box → fused anti-aliased resample + crop/pad + resize
(:mod:`ctbench.data.resample`) → clip at percentiles of the output voxels inside the scanned field (air
padding excluded, so they do not depend on how much of the box the scan fills) → scale to [-1, 1].
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial

import numpy as np

from ctbench.data.checks import ScanError, check_geometry, check_values
from ctbench.data.prepared import from_hu
from ctbench.data.resample import Geometry, body_centre, plan_geometry, resample
from ctbench.data.scan_io import Scan, read_scan
from ctbench.protocol import FLARE22_V1, Protocol


@dataclass
class PreparedVolume:
    """One prepared scan: ``volume`` float32 ``(D, H, W)`` in [-1, 1], its HU pair and RAS affine."""

    volume: np.ndarray
    hu_lo: float
    hu_hi: float
    affine: np.ndarray
    geometry: Geometry
    crop_box: dict


def load_checked(path: str | os.PathLike, protocol: Protocol = FLARE22_V1) -> Scan:
    """Read a NIfTI file or DICOM folder into RAS+ and refuse it (``ScanError``) if it is bad input."""
    scan = read_scan(path, check=partial(check_geometry, protocol=protocol))
    check_values(scan.path, scan.data)
    return scan


def prepare_scan(scan: Scan, protocol: Protocol = FLARE22_V1) -> PreparedVolume:
    """Run the protocol on a RAS+ scan (see the module docstring)."""
    centre = body_centre(scan.data, scan.spacing_mm, protocol.body_threshold_hu)
    if centre is None:
        raise ScanError(scan.path, f"no body found: no voxel above {protocol.body_threshold_hu:g} HU")
    geometry = plan_geometry(scan.data.shape, scan.spacing_mm, centre, protocol)
    hu = resample(scan.data, geometry, protocol.pad_value_hu)
    lo, hi = (float(v) for v in np.percentile(hu[geometry.inside_source()], protocol.clip_percentiles))
    if not hi - lo >= 1.0:
        raise ScanError(scan.path, f"no contrast: the {protocol.clip_percentiles} percentiles are {lo:g}, {hi:g} HU")
    volume = np.ascontiguousarray(from_hu(hu, lo, hi).transpose(2, 1, 0))
    return PreparedVolume(
        volume=volume,
        hu_lo=lo,
        hu_hi=hi,
        affine=geometry.output_affine(scan.affine),
        geometry=geometry,
        crop_box=geometry.crop_box(protocol, scan.affine),
    )
