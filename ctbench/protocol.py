"""The versioned data protocol: every parameter that turns a raw scan into a benchmark volume.

A protocol is recorded in every manifest and every result record; results made under different
protocol versions are never compared. Changing any field below means a new version. Training augmentation is not
part of it: a generator chooses its own and records it (1.1.0 removed 1.0.0's left-right flip at p = 0.5, which
mirrored anatomy; nothing else changed, so folders prepared under 1.0.0 hold the same volumes and stay valid).

Array convention (stated once, tested in ``tests/data/test_protocol_convention.py``):

* A prepared volume on disk is a NIfTI file in RAS+ orientation, array axes ``(x, y, z)`` =
  ``(W, H, D)`` = ``(128, 128, 64)``; x runs patient left → right, y posterior → anterior,
  z inferior → superior.
* In memory a volume is ``(1, D, H, W)`` and a batch ``(N, 1, D, H, W)`` float32, values in [-1, 1],
  i.e. ``tensor = ras_array.transpose(2, 1, 0)[None]``; D = 64 axial slices, inferior → superior.

Display convention (:func:`radiological`, used by every figure and by the feature extractors' slices): a slice
is shown with its rows and columns reversed, so the patient's right is on the image's left, anterior is up in
axial slices and superior is up in coronal and sagittal ones.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from ctbench.core.hashing import json_sha256

if TYPE_CHECKING:
    import torch

Image = TypeVar("Image", np.ndarray, "torch.Tensor")


@dataclass(frozen=True)
class Protocol:
    """All parameters of a data protocol. Lengths in mm, intensities in Hounsfield units."""

    name: str
    version: str
    spacing_mm: tuple[float, float, float]
    """Target voxel size (x, y, z) after resampling, mm."""
    crop_shape: tuple[int, int, int]
    """Box (x, y, z) in voxels at ``spacing_mm`` cropped (or air-padded) around the body."""
    output_shape: tuple[int, int, int]
    """Final array shape (x, y, z) = (W, H, D)."""
    clip_percentiles: tuple[float, float]
    """Per-volume percentiles (lo, hi), in percent, at which HU are clipped before scaling."""
    body_threshold_hu: float
    """Voxels above this belong to the body mask used to centre the crop."""
    pad_value_hu: float
    """Value used outside the scanned field (air)."""
    min_slices: int
    """Scans with fewer voxels than this along any axis (e.g. 5 slices) are refused as too small."""
    max_spacing_mm: float
    """Scans with any voxel dimension above this are refused as absurd."""
    split_fractions: tuple[float, float, float] = field(default=(0.8, 0.1, 0.1))
    """Deterministic train/val/test fractions, assigned by hashing the case id."""

    @property
    def output_spacing_mm(self) -> tuple[float, float, float]:
        """True voxel size (x, y, z) of a prepared volume: crop extent / output shape, mm."""
        x, y, z = (s * c / o for s, c, o in zip(self.spacing_mm, self.crop_shape, self.output_shape, strict=True))
        return x, y, z

    @property
    def tensor_shape(self) -> tuple[int, int, int, int]:
        """Shape ``(1, D, H, W)`` of one volume in memory."""
        x, y, z = self.output_shape
        return (1, z, y, x)

    def to_dict(self) -> dict:
        """Plain-JSON form, as written into manifests and result records."""
        d = asdict(self)
        d["output_spacing_mm"] = list(self.output_spacing_mm)
        return json.loads(json.dumps(d))

    @property
    def sha256(self) -> str:
        """sha256 (hex) of every parameter as canonical JSON (:mod:`ctbench.core.hashing`); part of every cache key."""
        return json_sha256(self.to_dict())


FLARE22_V1 = Protocol(
    name="flare22-v1",
    version="1.1.0",
    spacing_mm=(0.72, 0.72, 2.5),
    crop_shape=(320, 320, 160),
    output_shape=(128, 128, 64),
    clip_percentiles=(0.2, 99.8),
    body_threshold_hu=-500.0,
    pad_value_hu=-1024.0,
    min_slices=8,
    max_spacing_mm=10.0,
)

PROTOCOLS: dict[str, Protocol] = {FLARE22_V1.name: FLARE22_V1}
DEFAULT_PROTOCOL = FLARE22_V1


def get_protocol(name: str) -> Protocol:
    """Look a protocol up by name; raises ``KeyError`` listing the known names."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise KeyError(f"unknown protocol {name!r}; known: {', '.join(sorted(PROTOCOLS))}") from None


def radiological(image: Image) -> Image:
    """Slices ``(..., rows, cols)`` of an in-memory volume turned for display: rows and columns reversed.

    A 180° in-plane rotation: an axial slice ``(H, W)`` then has anterior at the top and the patient's right on
    the left; a coronal ``(D, W)`` or sagittal ``(D, H)`` slice has superior at the top (sagittal: anterior on
    the left). numpy arrays come back as views, torch tensors as copies.
    """
    if isinstance(image, np.ndarray):
        return image[..., ::-1, ::-1]
    return image.flip(-2, -1)


def central_planes(volume: np.ndarray) -> dict[str, np.ndarray]:
    """The planes through the centre of a ``(D, H, W)`` or ``(1, D, H, W)`` volume, in display orientation.

    ``xy`` (axial) ``(H, W)`` at ``D // 2``, ``xz`` (coronal) ``(D, W)`` at ``H // 2``, ``yz`` (sagittal)
    ``(D, H)`` at ``W // 2``; each turned by :func:`radiological`, ready for ``imshow`` (row 0 at the top).
    """
    v = volume[0] if volume.ndim == 4 else volume
    d, h, w = v.shape
    return {"xy": radiological(v[d // 2]), "xz": radiological(v[:, h // 2, :]), "yz": radiological(v[:, :, w // 2])}
