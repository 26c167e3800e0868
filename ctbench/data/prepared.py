"""The prepared-folder format: prepared volumes on disk and the manifest that lists them.

A prepared folder ``OUT`` holds ``OUT/manifest.json`` and ``OUT/volumes/<case id>.nii.gz``.

Volume files are NIfTI-1 in RAS+, array axes ``(x, y, z)`` = ``(W, H, D)``, with an affine that gives the
true voxel size (1.8 × 1.8 × 6.25 mm under ``flare22-v1``) and position. Values are stored as int16
``q = round(v · 32767)`` for ``v`` in [-1, 1]; the NIfTI ``scl_slope`` / ``scl_inter`` map ``q`` to
Hounsfield units, so 3D Slicer or ITK-SNAP show HU, while :func:`read_volume` returns ``v`` (error at
most 1/65534, i.e. < 0.1 HU for any clip range under 6000 HU).

The manifest (JSON) records the protocol and one row per case: id, source path and sha256 (of the file, or
of a DICOM folder by the folder rule of :mod:`ctbench.core.hashing`), original shape / spacing /
orientation, crop box, HU (lo, hi), output file and its content hash, split, status, error.
:func:`manifest_sha256` hashes only what determines the prepared data (protocol, and for each finished case
its id, split, source hash, volume content hash and HU range), so moving the folder, or
recompressing it, keeps the hash.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ctbench import __version__
from ctbench.core.atomic import atomic_path, write_text_atomic
from ctbench.core.hashing import json_sha256
from ctbench.data.scan_io import array_proxy
from ctbench.protocol import FLARE22_V1, Protocol
from ctbench.schemas import problems

MANIFEST_NAME = "manifest.json"
VOLUMES_DIR = "volumes"
SCHEMA_VERSION = 1
Q_MAX = 32767
"""Stored integer for v = 1; q = round(v * Q_MAX)."""


# ----------------------------------------------------------------------------------------------- HU


def to_hu(volume: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map values in [-1, 1] back to Hounsfield units: ``lo + (v + 1) / 2 · (hi - lo)``; any shape."""
    v = np.asarray(volume, dtype=np.float32)
    return (lo + (v + 1.0) * 0.5 * (hi - lo)).astype(np.float32)


def from_hu(hu: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Clip HU to [lo, hi] and scale to [-1, 1] float32; any shape. Raises if ``hi <= lo``."""
    if not hi > lo:
        raise ValueError(f"HU range must have hi > lo, got ({lo}, {hi})")
    h = np.clip(np.asarray(hu, dtype=np.float32), lo, hi)
    return (2.0 * (h - lo) / (hi - lo) - 1.0).astype(np.float32)


# -------------------------------------------------------------------------------------- volume files


def default_affine(protocol: Protocol = FLARE22_V1) -> np.ndarray:
    """A RAS affine with the protocol's output voxel size, centred on the world origin (4×4, mm)."""
    spacing = np.asarray(protocol.output_spacing_mm, dtype=np.float64)
    shape = np.asarray(protocol.output_shape, dtype=np.float64)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(shape - 1) / 2 * spacing
    return affine


def write_volume(
    path: str | os.PathLike,
    volume: Any,
    hu_range: tuple[float, float] | None = None,
    affine: np.ndarray | None = None,
    protocol: Protocol = FLARE22_V1,
) -> Path:
    """Write one volume atomically as a RAS NIfTI (``.nii`` or ``.nii.gz``).

    ``volume``: numpy array or torch tensor ``(D, H, W)`` (or ``(1, D, H, W)``), values in [-1, 1]
    (values outside are clipped; NaN or inf raise). ``hu_range``: the (lo, hi) HU pair that maps
    -1 → lo and 1 → hi, stored as NIfTI scaling so viewers show HU; ``None`` (generated samples with no
    HU pair) stores scaling that shows the [-1, 1] values. ``affine``: 4×4 RAS voxel → world mm;
    ``None`` uses :func:`default_affine`. Returns the path written.
    """
    path = Path(path)
    v = volume.detach().cpu().numpy() if hasattr(volume, "detach") else np.asarray(volume)
    if v.ndim == 4 and v.shape[0] == 1:
        v = v[0]
    if v.ndim != 3:
        raise ValueError(f"{path}: volume must be (D, H, W) or (1, D, H, W), got shape {tuple(v.shape)}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{path}: volume has NaN or infinite values")
    q = np.rint(np.clip(v.astype(np.float32), -1.0, 1.0) * Q_MAX).astype(np.int16)
    ras = np.ascontiguousarray(q.transpose(2, 1, 0))
    img = nib.Nifti1Image(ras, default_affine(protocol) if affine is None else np.asarray(affine, dtype=np.float64))
    if "".join(nib.aff2axcodes(img.affine)) != "RAS":
        raise ValueError(f"{path}: affine must keep RAS+ axis order, got {''.join(nib.aff2axcodes(img.affine))}")
    lo, hi = (-1.0, 1.0) if hu_range is None else (float(hu_range[0]), float(hu_range[1]))
    if not hi > lo:
        raise ValueError(f"{path}: HU range must have hi > lo, got ({lo}, {hi})")
    img.header.set_data_dtype(np.int16)
    img.header.set_slope_inter((hi - lo) / 2.0 / Q_MAX, (hi + lo) / 2.0)
    img.header.set_xyzt_units("mm")
    img.header["descrip"] = f"ctbench {protocol.name} v=q/{Q_MAX}".encode()[:80]
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        nib.save(img, tmp)
    return path


def _load(path: Path) -> nib.Nifti1Image:
    try:
        img = nib.load(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such prepared volume") from None
    except Exception as exc:
        raise ValueError(f"{path}: cannot read NIfTI ({exc})") from exc
    if not isinstance(img, nib.Nifti1Image):
        raise ValueError(f"{path}: not a ctbench volume (want NIfTI, got {type(img).__name__})")
    if img.ndim != 3 or img.get_data_dtype() != np.int16:
        raise ValueError(f"{path}: not a ctbench volume (want 3D int16, got {img.ndim}D {img.get_data_dtype()})")
    codes = "".join(nib.aff2axcodes(img.affine))
    if codes != "RAS":
        raise ValueError(f"{path}: not a ctbench volume (array axes are {codes}, want RAS)")
    return img


def read_volume(path: str | os.PathLike) -> np.ndarray:
    """Read a volume written by :func:`write_volume`: float32 ``(D, H, W)`` in [-1, 1]."""
    path = Path(path)
    img = _load(path)
    try:
        q = np.asarray(array_proxy(img).get_unscaled())
    except Exception as exc:  # truncated gzip and similar surface only when the data are read
        raise ValueError(f"{path}: cannot read voxel data ({exc})") from exc
    return np.ascontiguousarray(q.transpose(2, 1, 0), dtype=np.float32) / np.float32(Q_MAX)


def read_hu_range(path: str | os.PathLike) -> tuple[float, float]:
    """The (lo, hi) HU pair stored in a volume's NIfTI scaling."""
    img = _load(Path(path))
    proxy = array_proxy(img)
    slope, inter = float(proxy.slope), float(proxy.inter)
    return inter - slope * Q_MAX, inter + slope * Q_MAX


def volume_sha256(path: str | os.PathLike) -> str:
    """Content hash (hex) of a volume file: its int16 voxels, shape, affine and HU scaling.

    Unlike the file's bytes it does not change with the gzip build or compression level, so the same
    prepared data hash the same on every machine.
    """
    path = Path(path)
    img = _load(path)
    proxy = array_proxy(img)
    try:
        q = np.ascontiguousarray(np.asarray(proxy.get_unscaled()), dtype="<i2")
    except Exception as exc:
        raise ValueError(f"{path}: cannot read voxel data ({exc})") from exc
    h = hashlib.sha256(f"ctbench-volume:{q.shape}".encode())
    h.update(q.tobytes())
    h.update((np.round(np.asarray(img.affine, dtype=np.float64), 6) + 0.0).astype("<f8").tobytes())
    h.update(np.array([proxy.slope, proxy.inter], dtype="<f8").tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------ manifest


@dataclass
class CaseRecord:
    """One row of the manifest. Lengths in mm; ``output`` is relative to the prepared folder."""

    id: str
    source: str
    status: str = "pending"
    """``"ok"`` once prepared, ``"failed"`` with ``error`` set otherwise."""
    error: str | None = None
    split: str | None = None
    source_sha256: str | None = None
    output: str | None = None
    volume_sha256: str | None = None
    """:func:`volume_sha256` of the output: voxels, affine and scaling, not the gzip bytes."""
    original_shape: list[int] | None = None
    original_spacing_mm: list[float] | None = None
    original_orientation: str | None = None
    """Axis codes of the stored source array, e.g. ``"LPS"`` or ``"RAI"`` (feet-first)."""
    crop_box: dict[str, Any] | None = None
    hu_lo: float | None = None
    hu_hi: float | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CaseRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class PreparedCase:
    """A finished case, resolved against its prepared folder."""

    id: str
    path: Path
    """Absolute path of the volume file."""
    split: str
    hu_range: tuple[float, float]


@dataclass
class Manifest:
    """``OUT/manifest.json`` in memory."""

    root: Path
    protocol: dict[str, Any]
    source: str
    cases: list[CaseRecord] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION
    ctbench_version: str = __version__
    updated_at: str = ""

    def to_json(self) -> str:
        d = {
            "schema_version": self.schema_version,
            "ctbench_version": self.ctbench_version,
            "updated_at": self.updated_at,
            "source": self.source,
            "protocol": self.protocol,
            "manifest_sha256": self.sha256,
            "cases": [asdict(c) for c in sorted(self.cases, key=lambda c: c.id)],
        }
        return json.dumps(d, indent=2) + "\n"

    def save(self) -> Path:
        """Write ``root/manifest.json`` atomically (stamping ``updated_at``); returns its path."""
        self.updated_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        path = self.root / MANIFEST_NAME
        text = self.to_json()
        found = problems(json.loads(text), "manifest")
        if found:  # a bug, never user input: refuse to write a manifest that later reads would refuse
            raise ValueError(f"{path}: refusing to write an invalid manifest: " + "; ".join(found))
        write_text_atomic(path, text)
        return path

    @property
    def sha256(self) -> str:
        """sha256 (hex) of the prepared data set as canonical JSON (:mod:`ctbench.core.hashing`); see above."""
        done = sorted((c for c in self.cases if c.status == "ok"), key=lambda c: c.id)
        content = {
            "protocol": self.protocol,
            "cases": [[c.id, c.split, c.source_sha256, c.volume_sha256, c.hu_lo, c.hu_hi] for c in done],
        }
        return json_sha256(content)

    def select(self, split: str | None = None) -> list[PreparedCase]:
        """Finished cases, sorted by id, of one split (``None``: all)."""
        out = []
        for c in sorted(self.cases, key=lambda c: c.id):
            if c.status == "ok" and (split is None or c.split == split):
                # manifests are validated on read: the schema requires these of every finished case
                assert c.output is not None and c.split is not None and c.hu_lo is not None and c.hu_hi is not None
                out.append(PreparedCase(c.id, (self.root / c.output).resolve(), c.split, (c.hu_lo, c.hu_hi)))
        return out

    def check_protocol(self, protocol: Protocol) -> None:
        """Raise ``ValueError`` unless the folder was prepared with ``protocol``'s parameters.

        Every parameter of ``protocol`` but its version must be equal; a parameter the manifest records that the
        protocol no longer has (1.0.0's training flip) played no part in preparation and is not compared.
        """
        want = {k: v for k, v in protocol.to_dict().items() if k != "version"}
        if {k: self.protocol.get(k) for k in want} != want:
            have = f"{self.protocol.get('name')} {self.protocol.get('version')}"
            raise ValueError(
                f"{self.root / MANIFEST_NAME}: prepared under protocol {have} with different parameters "
                f"than {protocol.name} {protocol.version}; prepare the data again"
            )


def load_manifest(root: str | os.PathLike) -> Manifest:
    """Read ``root/manifest.json``; raises ``FileNotFoundError`` / ``ValueError`` naming the file."""
    root = Path(root)
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no manifest; is {root} a folder made by `ctbench data prepare`?")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a valid ctbench manifest (cannot read as JSON: {exc})") from exc
    found = problems(d, "manifest")
    if found:
        raise ValueError(f"{path}: not a valid ctbench manifest: " + "; ".join(found))
    try:
        return Manifest(
            root=root,
            protocol=d["protocol"],
            source=d.get("source", ""),
            cases=[CaseRecord.from_dict(c) for c in d["cases"]],
            schema_version=d.get("schema_version", SCHEMA_VERSION),
            ctbench_version=d.get("ctbench_version", ""),
            updated_at=d.get("updated_at", ""),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a valid ctbench manifest ({type(exc).__name__}: {exc})") from exc


def manifest_sha256(root: str | os.PathLike) -> str:
    """Content hash (hex) of the prepared folder ``root``; the cache key for anything computed from it."""
    return load_manifest(root).sha256


def cases(root: str | os.PathLike, split: str | None = "train") -> list[PreparedCase]:
    """Finished cases of ``split`` (``"train"``, ``"val"``, ``"test"``, or ``None`` for all), sorted by id."""
    if split is not None and split not in ("train", "val", "test"):
        raise ValueError(f"unknown split {split!r}; use train, val, test or None")
    return load_manifest(root).select(split)
