"""Procedural abdominal CT phantoms in HU, written like raw FLARE22 files. NOT FLARE22 data.

Each phantom is built in patient coordinates (mm; x → patient right, y → anterior, z → superior,
origin at the body centre) from ellipsoids: an elliptic body (300–350 × 200–250 mm) with a
subcutaneous fat layer and an abdominal-wall muscle ring, visceral fat, the liver on the patient's
right, the spleen on the left, two kidneys with cortex and medulla, aorta (left) and IVC (right)
in front of the spine, a vertebral body with a dense cortical rim, paraspinal muscles, the stomach
and bowel loops holding gas, and a patient table below. Organs carry a smooth 3D texture; the
image carries spatially correlated noise. Grid: 0.6–1.0 mm in-plane, 0.625–5 mm between slices,
20–300 slices; each case is stored RAS or LPS, head-first or feet-first, as its seed decides.

Files: ``OUT/images/Case_00001_0000.nii.gz`` (int16 HU) and ``OUT/labels/Case_00001.nii.gz`` (uint8,
FLARE22 label ids: 1 liver, 2 right kidney, 3 spleen, 5 aorta, 6 IVC, 11 stomach, 13 left kidney).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ctbench.core.atomic import atomic_path, write_text_atomic
from ctbench.core.progress import progress_bar
from ctbench.data.defaults import DEFAULT_N, DEFAULT_SEED

LABELS = {"liver": 1, "right_kidney": 2, "spleen": 3, "aorta": 5, "ivc": 6, "stomach": 11, "left_kidney": 13}
"""FLARE22 label ids of the organs the phantom draws."""
ORIENTATIONS = ("RAS", "LPS", "RAI", "LPI")
"""Stored axis codes: RAS / LPS head-first, RAI / LPI feet-first (slice order inferior ← superior)."""
SLICE_SPACINGS_MM = (0.625, 1.0, 1.25, 2.0, 2.5, 3.0, 5.0)
PHANTOM_VERSION = 1
"""Bump when the phantom drawing changes, so a resumed ``synthesize`` never mixes old and new phantoms."""
SYNTH_RECORD = "synth.json"


@dataclass(frozen=True)
class Ellipsoid:
    """An axis-aligned ellipsoid in patient mm: centre (x, y, z), radii (x, y, z), HU, label id."""

    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    hu: float
    label: int = 0
    textured: bool = True

    def section(self, x: np.ndarray, y: np.ndarray, z: float) -> np.ndarray | None:
        """Boolean mask of the ellipsoid on the slice at height ``z`` (None when it misses)."""
        t = (z - self.centre[2]) / self.radii[2]
        if abs(t) >= 1.0:
            return None
        k = np.sqrt(1.0 - t * t)
        rx, ry = self.radii[0] * k, self.radii[1] * k
        return ((x - self.centre[0]) / rx) ** 2 + ((y - self.centre[1]) / ry) ** 2 <= 1


@dataclass
class Phantom:
    """A phantom in RAS+ voxel order: ``hu`` int16 ``(x, y, z)``, ``labels`` uint8, ``affine`` 4×4 mm."""

    hu: np.ndarray
    labels: np.ndarray
    affine: np.ndarray


def _anatomy(rng: np.random.Generator) -> tuple[float, float, list[Ellipsoid]]:
    """Random body half-axes (a, b) in mm and the organ list, painted in order (later wins)."""
    a, b = rng.uniform(150, 175), rng.uniform(100, 125)
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731 - a short local helper
    spine_y = -b + u(40, 55)
    organs = [
        Ellipsoid((0, 0, 0), (a - u(12, 30), b - u(12, 30), 900), 45, textured=False),  # abdominal wall muscle
        Ellipsoid((0, 0, 0), (a - u(32, 45), b - u(32, 45), 900), -90, textured=False),  # visceral fat
    ]
    for _ in range(int(rng.integers(6, 12))):  # bowel loops in the lower abdomen, some holding gas
        c = (u(-a + 60, a - 60), u(-10, b - 50), u(-160, 10))
        r = (u(12, 25), u(12, 25), u(15, 40))
        organs.append(Ellipsoid(c, r, u(10, 40)))
        if rng.random() < 0.6:
            gas_centre = (c[0], c[1] + r[1] / 3, c[2])  # gas rises to the anterior (non-dependent) side
            organs.append(Ellipsoid(gas_centre, (r[0] / 2, r[1] / 2, r[2] / 2), -1000, textured=False))
    organs += [
        Ellipsoid((u(-70, -50), u(20, 40), u(40, 70)), (u(35, 45), u(30, 40), u(40, 55)), 30, LABELS["stomach"]),
        Ellipsoid((u(-70, -50), u(45, 55), u(40, 70)), (u(20, 28), u(12, 16), u(25, 35)), -1000, LABELS["stomach"],
                  textured=False),  # gas in the stomach, anterior (non-dependent)
        Ellipsoid((u(55, 65), spine_y + 15, u(-30, -10)), (30, 24, u(45, 55)), 150, LABELS["right_kidney"]),
        Ellipsoid((u(55, 65), spine_y + 17, u(-30, -10)), (14, 10, 30), 35, LABELS["right_kidney"]),
        Ellipsoid((u(-65, -55), spine_y + 15, u(-20, 0)), (30, 24, u(45, 55)), 150, LABELS["left_kidney"]),
        Ellipsoid((u(-65, -55), spine_y + 17, u(-20, 0)), (14, 10, 30), 35, LABELS["left_kidney"]),
        Ellipsoid((u(-95, -80), u(-50, -30), u(50, 80)), (u(35, 45), u(25, 35), u(45, 60)), 50, LABELS["spleen"]),
        Ellipsoid((u(60, 80), u(-5, 10), u(60, 90)), (u(70, 90), u(75, 95), u(70, 95)), u(55, 70), LABELS["liver"]),
        Ellipsoid((u(-30, -22), spine_y - 5, 0), (u(20, 28), u(18, 25), 900), 50),  # paraspinal muscle, left
        Ellipsoid((u(22, 30), spine_y - 5, 0), (u(20, 28), u(18, 25), 900), 50),  # paraspinal muscle, right
        Ellipsoid((0, spine_y + 10, 0), (20, 18, 900), 1100, textured=False),  # vertebral cortex
        Ellipsoid((0, spine_y + 10, 0), (17.5, 15.5, 900), 230),  # cancellous bone
        Ellipsoid((0, spine_y - 16, 0), (8, 7, 900), 20, textured=False),  # spinal canal
        Ellipsoid((u(-20, -12), spine_y + u(32, 38), 0), (11, 11, 900), u(140, 220), LABELS["aorta"]),
        Ellipsoid((u(18, 26), spine_y + u(32, 40), u(-20, 20)), (13, 10, 220), u(90, 140), LABELS["ivc"]),
    ]
    return a, b, organs


def sample_grid(
    rng: np.random.Generator, a: float, b: float, *, small: bool = False
) -> tuple[tuple[float, float], tuple[int, int, int]]:
    """Random scan grid for a body with half-axes (a, b) mm: ``((in-plane, slice) spacing mm, (nx, ny, nz))``.

    Full size: 512 × 512 at 0.6–1.0 mm (never less than the body needs), slice spacing from
    ``SLICE_SPACINGS_MM``, 20–300 slices covering 150–400 mm. Small: 1.0 mm on a matrix just covering
    the body and the table, 20–32 slices of 5 mm.
    """
    if small:
        return (1.0, 5.0), (int(np.ceil(2 * a + 40)), int(np.ceil(2 * b + 80)), int(rng.integers(20, 33)))
    dxy = float(rng.uniform(max(0.6, (2 * a + 40) / 512), 1.0))
    dz = float(rng.choice(SLICE_SPACINGS_MM))
    return (dxy, dz), (512, 512, int(np.clip(round(rng.uniform(150, 400) / dz), 20, 300)))


def phantom(
    seed: int, *, small: bool = False, grid: tuple[tuple[float, float], tuple[int, int, int]] | None = None
) -> Phantom:
    """One phantom from ``seed`` (same seed, same phantom), in RAS+ order.

    ``small``: 1.0 mm in-plane on a matrix just covering the body and 20–32 slices of 5 mm (a few MB,
    well under a second), for tests; otherwise 512 × 512 at 0.6–1.0 mm with 20–300 slices of 0.625–5 mm.
    ``grid``: ``((in-plane, slice) spacing mm, (nx, ny, nz))`` to force, e.g. a FLARE22-size grid.
    """
    rng = np.random.default_rng([int(seed), 0x5EED])
    a, b, organs = _anatomy(rng)
    (dxy, dz), (nx, ny, nz) = sample_grid(rng, a, b, small=small)
    if grid is not None:
        (dxy, dz), (nx, ny, nz) = grid
    x = (np.arange(nx) - (nx - 1) / 2) * dxy
    y = (np.arange(ny) - (ny - 1) / 2) * dxy + 20.0  # leave room for the table below the body
    xx, yy = np.meshgrid(x, y, indexing="ij")
    z0 = float(rng.uniform(-60, 40)) - (nz - 1) * dz / 2
    zs = z0 + np.arange(nz) * dz
    # smooth 3D texture (about 12 mm correlation) and correlated noise level
    tex = rng.normal(0.0, 1.0, (int(nx * dxy / 12) + 3, int(ny * dxy / 12) + 3, int(nz * dz / 12) + 3))
    tex_amp, noise_sd = float(rng.uniform(6, 14)), float(rng.uniform(8, 20))
    table_y = -b - float(rng.uniform(10, 25))
    hu = np.empty((nx, ny, nz), dtype=np.int16)
    labels = np.zeros((nx, ny, nz), dtype=np.uint8)
    for k, z in enumerate(zs):
        sl = np.full((nx, ny), -1000.0, dtype=np.float32)
        lab = np.zeros((nx, ny), dtype=np.uint8)
        sl[(yy < table_y) & (yy > table_y - 12) & (np.abs(xx) < 220)] = 250.0  # patient table
        body = (xx / a) ** 2 + (yy / b) ** 2 <= 1
        sl[body] = -100.0  # subcutaneous fat
        coords = np.stack([(xx - x[0]) / 12, (yy - y[0]) / 12, np.full_like(xx, (z - z0) / 12)])
        texture = ndimage.map_coordinates(tex, coords.reshape(3, -1), order=1).reshape(nx, ny) * tex_amp
        for org in organs:
            m = org.section(xx, yy, z)
            if m is None:
                continue
            m &= body
            sl[m] = org.hu + (texture[m] if org.textured else 0.0)
            if org.label:
                lab[m] = org.label
        noise = ndimage.gaussian_filter(rng.normal(0.0, 1.0, (nx, ny)).astype(np.float32), 0.8)
        sl += noise * (noise_sd / max(float(noise.std()), 1e-6))
        hu[:, :, k] = np.clip(np.rint(sl), -1024, 3071)
        labels[:, :, k] = lab
    affine = np.diag([dxy, dxy, dz, 1.0])
    affine[:3, 3] = (x[0], y[0], z0)
    return Phantom(hu, labels, affine)


def reorient(array: np.ndarray, affine: np.ndarray, codes: str) -> tuple[np.ndarray, np.ndarray]:
    """Store a RAS+ array as ``codes`` (e.g. ``"LPS"``, ``"RAI"``) by flipping axes; same world positions."""
    flips = [c != want for c, want in zip(codes, "RAS", strict=True)]
    out = array[tuple(slice(None, None, -1) if f else slice(None) for f in flips)]
    flip = np.eye(4)
    for ax, f in enumerate(flips):
        if f:
            flip[ax, ax] = -1.0
            flip[ax, 3] = array.shape[ax] - 1
    return np.ascontiguousarray(out), affine @ flip


def synthesize(
    out_dir: str | os.PathLike,
    n: int = DEFAULT_N,
    seed: int = DEFAULT_SEED,
    *,
    small: bool = False,
    orientations: tuple[str, ...] | None = None,
    progress: bool = True,
) -> list[Path]:
    """Write ``n`` phantoms to ``out_dir/images`` (+ label maps in ``out_dir/labels``); returns image paths.

    File ``Case_{k:05d}`` (k = i + 1) is ``phantom(seed * 100003 + i, small=small)``, stored in
    ``orientations[i % len(orientations)]`` when given, else in an orientation drawn from its seed.
    Files are written atomically. ``out_dir/synth.json`` records the settings and the finished cases, so
    a rerun with the same settings skips those (resume); other settings redo every case.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    settings = {
        "seed": int(seed),
        "small": bool(small),
        "orientations": list(orientations) if orientations else None,
        "phantom_version": PHANTOM_VERSION,
    }
    record = out / SYNTH_RECORD
    done: list[str] = []
    if record.is_file():
        previous = json.loads(record.read_text(encoding="utf-8"))
        done = previous.get("done", []) if previous.get("settings") == settings else []
    paths = []
    for i in progress_bar(range(n), desc="synth", unit="scan", enabled=progress):
        name = f"Case_{i + 1:05d}"
        files = {"images": out / "images" / f"{name}_0000.nii.gz", "labels": out / "labels" / f"{name}.nii.gz"}
        paths.append(files["images"])
        if name in done and all(f.is_file() for f in files.values()):
            continue
        case_seed = int(seed) * 100003 + i
        ph = phantom(case_seed, small=small)
        if orientations:
            codes = orientations[i % len(orientations)]
        else:
            codes = ORIENTATIONS[int(np.random.default_rng([case_seed, 0x0A]).integers(len(ORIENTATIONS)))]
        for arr, sub in ((ph.hu, "images"), (ph.labels, "labels")):
            data, aff = reorient(arr, ph.affine, codes)
            img = nib.Nifti1Image(data, aff)
            img.header.set_xyzt_units("mm")
            img.set_qform(aff, code=1)
            img.set_sform(aff, code=1)
            with atomic_path(files[sub]) as tmp:
                nib.save(img, tmp)
        done = sorted({*done, name})
        write_text_atomic(record, json.dumps({"settings": settings, "done": done}, indent=1) + "\n")
    return paths
