"""Reading source scans (NIfTI through nibabel, DICOM series through SimpleITK) into RAS+ arrays.

DICOM is read with SimpleITK (GDCM) rather than pydicom: it decodes the compressed transfer syntaxes
hospitals use (JPEG-2000, JPEG-lossless) without extra plugins, sorts slices by position, applies
the rescale slope / intercept to give HU, and computes slice spacing from positions, not tags.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np
from nibabel.arrayproxy import ArrayProxy

from ctbench.data.checks import ScanError

GeometryCheck = Callable[[Path, tuple[int, ...], tuple[float, ...]], None]
"""``check(path, shape, spacing_mm)``: raises :class:`ScanError` to refuse a scan before its voxels are read."""


@dataclass
class Scan:
    """A scan in RAS+ voxel order: ``data`` ``(x, y, z)`` in HU, ``affine`` 4×4 voxel → RAS mm.

    ``data`` keeps the stored integer type when the file's scaling is the identity (no float copy of a
    whole scan); otherwise it is float32. It may be a flipped view of the array read.
    """

    path: Path
    data: np.ndarray
    affine: np.ndarray
    original_shape: tuple[int, ...]
    original_spacing_mm: tuple[float, ...]
    original_orientation: str
    """Axis codes of the array as stored, e.g. ``"LPS"``; ``"RAI"`` is RAS stored feet-first."""

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size (x, y, z) of ``data``, mm."""
        return _spacing(self.affine)


def array_proxy(img: nib.Nifti1Image) -> ArrayProxy:
    """The voxel data of an image ``nib.load`` read from a file: a proxy that reads them on demand, raw
    (``get_unscaled()``) or scaled, and holds the stored scaling (``slope``, ``inter``)."""
    return cast(ArrayProxy, img.dataobj)  # nibabel types dataobj as any array-like; from a file it is a proxy


def is_nifti(path: Path) -> bool:
    """Whether the name ends in ``.nii`` or ``.nii.gz``."""
    return path.name.endswith((".nii", ".nii.gz"))


def dicom_series_files(folder: str | os.PathLike) -> list[str]:
    """File names of the largest DICOM series in ``folder`` (empty if it holds none)."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # "No Series were found" for every folder without DICOM
    try:
        series = reader.GetGDCMSeriesIDs(str(folder)) or ()
        files: list[tuple[str, ...]] = [reader.GetGDCMSeriesFileNames(str(folder), s) for s in series]
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
    largest: tuple[str, ...] = max(files, key=len) if files else ()
    return list(largest)


def _squeeze_trailing(path: Path, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Drop trailing singleton axes past the third; refuse 2D and multi-volume 4D images."""
    shape = tuple(int(s) for s in shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) < 3 or shape[2] == 1:
        raise ScanError(path, f"not a 3D image: shape {shape} is 2D")
    if len(shape) > 3:
        raise ScanError(path, f"not a 3D image: shape {shape} holds {int(np.prod(shape[3:]))} volumes")
    return shape


def _to_hu(path: Path, raw: np.ndarray, slope: float, inter: float) -> np.ndarray:
    """Apply stored scaling; integers stay integers under identity scaling, anything else is float32."""
    if raw.dtype.kind not in "iuf":
        raise ScanError(path, f"unsupported voxel type {raw.dtype} (need integer or float grey values)")
    if slope == 1.0 and inter == 0.0:
        return raw if raw.dtype.kind in "iu" else raw.astype(np.float32, copy=False)
    return raw.astype(np.float32) * np.float32(slope) + np.float32(inter)


def _spacing(affine: np.ndarray) -> tuple[float, float, float]:
    x, y, z = (float(v) for v in np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0)))
    return x, y, z


def _canonical(path: Path, data: np.ndarray, affine: np.ndarray, spacing: tuple[float, ...]) -> Scan:
    """Flip / permute (no interpolation) an ``(x, y, z)`` array into RAS+ order."""
    codes = "".join(nib.aff2axcodes(affine))
    img = nib.as_closest_canonical(nib.Nifti1Image(data, affine))
    return Scan(
        path=path,
        data=np.asarray(img.dataobj),
        affine=np.asarray(img.affine, dtype=np.float64),
        original_shape=tuple(int(s) for s in data.shape),
        original_spacing_mm=tuple(float(s) for s in spacing),
        original_orientation=codes,
    )


def _check_affine(path: Path, affine: np.ndarray, header_spacing: tuple[float, ...] | None = None) -> tuple[float, ...]:
    """Spacing from the affine (and the header, when it has its own); refuse degenerate affines."""
    spacing = _spacing(affine)
    if header_spacing is not None:
        hs = tuple(float(s) for s in header_spacing[:3])
        if any(not np.isfinite(s) or s <= 0 for s in hs):
            raise ScanError(path, f"invalid voxel spacing {hs} mm in the header pixdim (must be positive)")
    if any(not np.isfinite(s) or s <= 0 for s in spacing):
        raise ScanError(path, f"invalid voxel spacing {spacing} mm (must be positive)")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-6 * float(np.prod(spacing)):
        raise ScanError(path, "degenerate affine: its axes are not independent")
    return spacing


def _raw_pixdim(path: Path, header_class: type[nib.Nifti1Header]) -> tuple[float, float, float]:
    """``pixdim[1:4]`` as stored: nibabel silently replaces zero or negative values on load."""
    from nibabel.openers import ImageOpener

    with ImageOpener(str(path)) as f:
        raw = header_class.from_fileobj(f, check=False)
    x, y, z = (float(v) for v in raw["pixdim"][1:4])
    return x, y, z


def read_nifti(path: str | os.PathLike, *, check: GeometryCheck | None = None) -> Scan:
    """Read a ``.nii`` / ``.nii.gz`` file into RAS+; ``check(path, shape, spacing)`` runs before the data load."""
    path = Path(path)
    try:
        img = nib.load(path)
        if not isinstance(img, nib.Nifti1Image):  # NIfTI-2 derives from it
            raise TypeError(f"nibabel read it as {type(img).__name__}")
        shape = _squeeze_trailing(path, img.shape)
        raw_pixdim = _raw_pixdim(path, type(img.header)) if "pixdim" in img.header else None
    except ScanError:
        raise
    except Exception as exc:
        raise ScanError(path, f"cannot read NIfTI header ({type(exc).__name__}: {exc})") from exc
    affine = np.asarray(img.affine, dtype=np.float64)
    spacing = _check_affine(path, affine, raw_pixdim)
    if check is not None:
        check(path, shape, spacing)
    try:
        proxy = array_proxy(img)
        raw = np.asarray(proxy.get_unscaled()).reshape(shape)
        slope, inter = float(proxy.slope), float(proxy.inter)
    except Exception as exc:  # truncated / corrupt gzip surfaces here
        raise ScanError(path, f"corrupt or truncated image data ({type(exc).__name__}: {exc})") from exc
    return _canonical(path, _to_hu(path, raw, slope, inter), affine, spacing)


def read_dicom_series(folder: str | os.PathLike, *, check: GeometryCheck | None = None) -> Scan:
    """Read the largest DICOM series in ``folder`` (HU, LPS world) into RAS+."""
    import SimpleITK as sitk

    folder = Path(folder)
    files = dicom_series_files(folder)
    if not files:
        raise ScanError(folder, "no DICOM series found in this folder")
    try:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(files)
        image = reader.Execute()
    except Exception as exc:
        raise ScanError(folder, f"cannot read DICOM series ({type(exc).__name__}: {str(exc).strip()[:300]})") from exc
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ScanError(folder, "not a grey-scale image")
    spacing_xyz = np.asarray(image.GetSpacing(), dtype=np.float64)
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(image.GetDimension(), -1)
    if image.GetDimension() != 3:
        raise ScanError(folder, f"not a 3D image: {image.GetDimension()}D series")
    lps = np.eye(4)
    lps[:3, :3] = direction * spacing_xyz[None, :]
    lps[:3, 3] = image.GetOrigin()
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # DICOM world is LPS, NIfTI world is RAS
    shape = tuple(int(s) for s in image.GetSize())
    spacing = _check_affine(folder, affine)
    if check is not None:
        check(folder, shape, spacing)
    data = _to_hu(folder, sitk.GetArrayFromImage(image).transpose(2, 1, 0), 1.0, 0.0)  # SimpleITK applied rescale
    return _canonical(folder, data, affine, spacing)


def read_scan(path: str | os.PathLike, *, check: GeometryCheck | None = None) -> Scan:
    """Read a NIfTI file or a DICOM series folder into RAS+ (see :class:`Scan`)."""
    path = Path(path)
    if path.is_dir():
        return read_dicom_series(path, check=check)
    if is_nifti(path):
        return read_nifti(path, check=check)
    raise ScanError(path, "not a NIfTI file (.nii, .nii.gz) or a DICOM series folder")
