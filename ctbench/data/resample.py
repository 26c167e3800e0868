"""One fused, anti-aliased step from the source voxel grid to the protocol's output grid.

The protocol reads: resample to ``spacing_mm`` (0.72 × 0.72 × 2.5 mm), crop or air-pad a
``crop_shape`` box (320 × 320 × 160) centred on the body, resize to ``output_shape`` (128 × 128 × 64).
Resample and resize are both linear maps, so they are fused: output voxel ``i`` along an axis is the
area of resampled voxels ``[start + f·i, start + f·(i+1))`` (``f`` = crop / output = 2.5), whose centre
lies at source index ``p_i = spacing_mm · (start + f·i + (f-1)/2) / source_spacing``.

Each output value is a normalised sum of source voxels weighted by a triangle (tent) kernel around
``p_i`` whose half-width is ``max(1, r)`` source voxels, ``r`` = output spacing / source spacing:
plain linear interpolation when upsampling, and a tent ``r`` voxels wide when shrinking (the
anti-aliasing filter of PIL's and torch's ``antialias=True`` bilinear resize): every source voxel
contributes, so detail finer than the output grid is averaged away instead of folding back as moiré.
Source voxels outside the scan count as air (``pad_value_hu``), which is the protocol's air padding.
The kernel is separable, so the step is three sparse matrix products.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from scipy import ndimage, sparse

from ctbench.protocol import Protocol

BODY_GRID_MM = 4.0
"""The body mask is found on the source subsampled to about this spacing (it only places the crop)."""


@dataclass(frozen=True)
class Geometry:
    """Where the output grid lies in a source scan's RAS+ voxel grid, per axis (x, y, z).

    ``start``: first voxel of the crop box in the resampled (``spacing_mm``) grid, whose voxel 0 is
    centred on source voxel 0. ``scale`` and ``offset``: output index ``i`` is centred at source index
    ``scale · i + offset``.
    """

    source_shape: tuple[int, int, int]
    start: tuple[int, int, int]
    scale: tuple[float, float, float]
    offset: tuple[float, float, float]
    output_shape: tuple[int, int, int]

    def positions(self, axis: int) -> np.ndarray:
        """Source index (float) of each output voxel centre along ``axis``."""
        return self.scale[axis] * np.arange(self.output_shape[axis], dtype=np.float64) + self.offset[axis]

    def inside_source(self) -> np.ndarray:
        """Boolean ``(x, y, z)`` mask of output voxels whose centre lies inside the scanned field."""
        m = [(p >= -0.5) & (p <= n - 0.5) for p, n in ((self.positions(a), self.source_shape[a]) for a in range(3))]
        return m[0][:, None, None] & m[1][None, :, None] & m[2][None, None, :]

    def output_affine(self, source_affine: np.ndarray) -> np.ndarray:
        """4×4 voxel → RAS mm affine of the output grid, from the source's RAS+ affine."""
        to_source = np.eye(4)
        to_source[:3, :3] = np.diag(self.scale)
        to_source[:3, 3] = self.offset
        return np.asarray(source_affine, dtype=np.float64) @ to_source

    def crop_box(self, protocol: Protocol, source_affine: np.ndarray) -> dict:
        """The crop box as recorded in the manifest.

        ``start_resampled_vox`` / ``shape_resampled_vox``: the box in the 0.72 mm grid; ``ras_source_vox_*``:
        its corners (outer voxel edges) in the source's voxel indices after reorientation to RAS+;
        ``ras_mm_*``: the same corners in world RAS mm.
        """
        half = 0.5 * np.asarray(self.scale)
        lo = np.asarray(self.offset) - half
        hi = np.asarray([self.positions(a)[-1] for a in range(3)]) + half
        corners = np.asarray(source_affine)[:3, :3] @ np.stack([lo, hi], axis=1) + np.asarray(source_affine)[:3, 3:4]
        return {
            "start_resampled_vox": [int(s) for s in self.start],
            "shape_resampled_vox": [int(s) for s in protocol.crop_shape],
            "ras_source_vox_min": [round(float(v), 3) for v in lo],
            "ras_source_vox_max": [round(float(v), 3) for v in hi],
            "ras_mm_min": [round(float(v), 2) for v in corners.min(axis=1)],
            "ras_mm_max": [round(float(v), 2) for v in corners.max(axis=1)],
        }


def body_centre(data: np.ndarray, spacing_mm: tuple[float, float, float], threshold_hu: float) -> np.ndarray | None:
    """Centre (source voxel index, float, x/y/z) of the bounding box of the largest body component.

    The mask is ``HU > threshold_hu`` on the scan subsampled to about ``BODY_GRID_MM``, opened once
    (so a thin contact with the table does not merge them), and reduced to its largest 6-connected
    component. Returns ``None`` when no voxel exceeds the threshold.
    """
    step = [max(1, int(round(BODY_GRID_MM / s))) for s in spacing_mm]
    mask = data[:: step[0], :: step[1], :: step[2]] > threshold_hu
    if not mask.any():
        return None
    opened = ndimage.binary_opening(mask)
    mask = opened if opened.any() else mask
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        mask = labels == int(np.argmax(sizes))
    idx = np.nonzero(mask)
    lo = np.array([i.min() for i in idx], dtype=np.float64) * step
    hi = np.array([i.max() for i in idx], dtype=np.float64) * step
    return (lo + hi) / 2.0


def plan_geometry(
    shape: tuple[int, int, int], spacing_mm: tuple[float, float, float], centre_vox: np.ndarray, protocol: Protocol
) -> Geometry:
    """The crop box centred on ``centre_vox`` (source index), snapped to the resampled grid."""
    start, scale, offset = [], [], []
    for a in range(3):
        s_res, s_src = protocol.spacing_mm[a], spacing_mm[a]
        f = protocol.crop_shape[a] / protocol.output_shape[a]
        st = int(round(centre_vox[a] * s_src / s_res - protocol.crop_shape[a] / 2.0 + 0.5))
        start.append(st)
        scale.append(s_res * f / s_src)
        offset.append(s_res * (st + (f - 1.0) / 2.0) / s_src)
    return Geometry(
        source_shape=_xyz([int(s) for s in shape]),
        start=_xyz(start),
        scale=_xyz(scale),
        offset=_xyz(offset),
        output_shape=_xyz(protocol.output_shape),
    )


_T = TypeVar("_T")


def _xyz(values: Sequence[_T]) -> tuple[_T, _T, _T]:
    """Per-axis values as an ``(x, y, z)`` triple."""
    x, y, z = values
    return x, y, z


def tent_weights(positions: np.ndarray, n_source: int, ratio: float) -> tuple[np.ndarray, int, int]:
    """Resampling matrix for one axis.

    ``positions``: source index of each output sample, ``(n_out,)``; ``ratio``: output spacing / source
    spacing. Returns ``(W, j0, j1)``: ``W`` float32 ``(n_out, j1 - j0)`` over source voxels ``j0 .. j1-1``,
    rows normalised over the whole kernel (voxels outside the scan take the rest of the weight).
    """
    half = max(1.0, float(ratio))
    lo = np.floor(positions - half).astype(np.int64) + 1
    width = int(np.ceil(2 * half)) + 1
    j = lo[:, None] + np.arange(width)[None, :]
    w = np.clip(1.0 - np.abs(j - positions[:, None]) / half, 0.0, None)
    w /= w.sum(axis=1, keepdims=True)
    inside = (j >= 0) & (j < n_source)
    j0 = int(max(0, j[inside].min())) if inside.any() else 0
    j1 = int(min(n_source, j[inside].max() + 1)) if inside.any() else 1
    out = np.zeros((len(positions), j1 - j0), dtype=np.float64)
    rows = np.broadcast_to(np.arange(len(positions))[:, None], j.shape)
    np.add.at(out, (rows[inside], j[inside] - j0), w[inside])
    return out.astype(np.float32), j0, j1


def _contract(array: np.ndarray, weights: sparse.csr_matrix, axis: int) -> np.ndarray:
    """Apply a sparse ``(n_out, n_in)`` matrix along ``axis`` of a float32 array."""
    moved = np.moveaxis(array, axis, 0)
    flat = np.ascontiguousarray(moved).reshape(moved.shape[0], -1)
    out = (weights @ flat).astype(np.float32, copy=False)
    return np.moveaxis(out.reshape(weights.shape[0], *moved.shape[1:]), 0, axis)


def resample(data: np.ndarray, geometry: Geometry, pad_value: float) -> np.ndarray:
    """Resample a RAS+ ``(x, y, z)`` source array (HU, any real dtype) onto the output grid.

    Returns float32 ``(x, y, z)`` = ``geometry.output_shape``. Tent-kernel anti-aliasing per axis (see
    the module docstring); voxels outside the source are ``pad_value``, and source values below it (the
    -2048 or -3024 HU some scanners store outside the reconstruction circle) are raised to it. Only the
    source voxels the kernels touch are converted to float; each axis is one sparse matrix product
    (single-threaded).
    """
    mats = [tent_weights(geometry.positions(a), data.shape[a], geometry.scale[a]) for a in range(3)]
    (_, x0, x1), (_, y0, y1), (_, z0, z1) = mats
    out = np.subtract(data[x0:x1, y0:y1, z0:z1], np.float32(pad_value), dtype=np.float32)
    np.maximum(out, 0.0, out=out)  # nothing below air: -2048 / -3024 outside the reconstruction circle -> pad
    # contract the axis that shrinks most first, to keep the intermediates small
    for a in sorted(range(3), key=lambda a: mats[a][0].shape[0] / mats[a][0].shape[1]):
        out = _contract(out, sparse.csr_matrix(mats[a][0]), a)
    out += np.float32(pad_value)
    return np.ascontiguousarray(out)


def resample_labels(labels: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Nearest-neighbour resampling of an integer label map ``(x, y, z)`` (same grid as the scan).

    Output voxels outside the source get label 0. Returns ``(x, y, z)`` with ``labels``' dtype.
    """
    idx = []
    for a in range(3):
        j = np.rint(geometry.positions(a)).astype(np.int64)
        idx.append((np.clip(j, 0, labels.shape[a] - 1), (j >= 0) & (j < labels.shape[a])))
    (ix, mx), (iy, my), (iz, mz) = idx
    out = labels[np.ix_(ix, iy, iz)].copy()
    out[~(mx[:, None, None] & my[None, :, None] & mz[None, None, :])] = 0
    return out
