"""A picture of a prepared folder: axial, coronal and sagittal planes through each volume's centre.

Planes are shown in radiological convention (:func:`ctbench.protocol.radiological`): the patient's right on
the image's left, anterior up in the axial plane, superior up in the others, with the true voxel aspect
(1.8 × 1.8 × 6.25 mm).
"""

from __future__ import annotations

import os
from pathlib import Path

from ctbench.core.atomic import atomic_path
from ctbench.data.prepared import load_manifest, read_volume
from ctbench.protocol import central_planes

PLANE_NAMES = {"xy": "axial", "xz": "coronal", "yz": "sagittal"}


def save_preview(
    root: str | os.PathLike, out: str | os.PathLike, *, split: str | None = None, max_cases: int = 4
) -> Path:
    """Write a PNG montage of up to ``max_cases`` prepared cases (one row each); returns its path."""
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

    manifest = load_manifest(root)
    chosen = manifest.select(split)[:max_cases]
    if not chosen:
        raise ValueError(f"{Path(root) / 'manifest.json'}: no prepared cases to show (split {split!r})")
    sx, sy, sz = manifest.protocol["output_spacing_mm"]
    fig = Figure(figsize=(10, 3.4 * len(chosen)))
    axes = fig.subplots(len(chosen), 3, squeeze=False)
    for row, case in zip(axes, chosen, strict=True):
        planes = {PLANE_NAMES[k]: img for k, img in central_planes(read_volume(case.path)).items()}
        lo, hi = case.hu_range
        for ax, (name, img), aspect, sides in zip(
            row, planes.items(), (sy / sx, sz / sx, sz / sy), (("R", "L"), ("R", "L"), ("A", "P")), strict=True
        ):
            ax.imshow(img, cmap="gray", vmin=-1, vmax=1, aspect=aspect, interpolation="nearest")
            ax.set_title(f"{case.id} ({case.split}) {name}" if name == "axial" else name, fontsize=9)
            ax.text(0.02, 0.5, sides[0], color="yellow", transform=ax.transAxes, va="center")
            ax.text(0.98, 0.5, sides[1], color="yellow", transform=ax.transAxes, va="center", ha="right")
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(f"HU [{lo:.0f}, {hi:.0f}] -> [-1, 1]", fontsize=8)
    fig.suptitle(f"{manifest.protocol['name']} prepared volumes, {Path(root).name}", fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=80)
    return out
