"""A picture of a prepared folder: axial, coronal and sagittal planes through each volume's centre.

Each case's row shows the three planes twice: over the full prepared range (HU ``[lo, hi]`` → [-1, 1]) and in
a soft-tissue window (W 400 / L 40: HU -160 .. 240), where organs stand apart from fat and each other. Planes
are shown in radiological convention (:func:`ctbench.protocol.radiological`): the patient's right on the
image's left, anterior up in the axial plane, superior up in the others, sides marked at the edges, with the
true voxel aspect (1.8 × 1.8 × 6.25 mm).
"""

from __future__ import annotations

import os
from pathlib import Path

from ctbench.core.atomic import atomic_path
from ctbench.data.prepared import load_manifest, read_volume
from ctbench.figures import PLANE_NAMES, mark_sides
from ctbench.protocol import central_planes

SOFT_TISSUE = (400.0, 40.0)
"""(width, level) in HU of the soft-tissue window."""


def window_limits(hu_range: tuple[float, float], width: float, level: float) -> tuple[float, float]:
    """The window ``level ± width / 2`` (HU) as limits on the prepared volume's [-1, 1] scale.

    A prepared case maps HU ``[lo, hi]`` linearly to [-1, 1]; e.g. ``[-1000, 1000]`` puts W 400 / L 40 at
    ``(-0.16, 0.24)``.
    """
    lo, hi = hu_range
    return tuple(2 * (hu - lo) / (hi - lo) - 1 for hu in (level - width / 2, level + width / 2))  # type: ignore[return-value]


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
    aspects = {"xy": sy / sx, "xz": sz / sx, "yz": sz / sy}
    width, level = SOFT_TISSUE
    fig = Figure(figsize=(19, 3.4 * len(chosen)))
    axes = fig.subplots(len(chosen), 6, squeeze=False)
    for row, case in zip(axes, chosen, strict=True):
        planes = central_planes(read_volume(case.path))
        lo, hi = case.hu_range
        windows = [((-1.0, 1.0), f"full range HU [{lo:.0f}, {hi:.0f}]"),
                   (window_limits((lo, hi), width, level), f"soft tissue W {width:.0f} / L {level:.0f}")]
        for k, ((vmin, vmax), window) in enumerate(windows):
            for j, (plane, img) in enumerate(planes.items()):
                ax = row[3 * k + j]
                ax.imshow(img, cmap="gray", vmin=vmin, vmax=vmax, aspect=aspects[plane], interpolation="nearest")
                ax.set_title(f"{case.id} ({case.split}) {PLANE_NAMES[plane]}" if j == 0 else PLANE_NAMES[plane],
                             fontsize=9)
                mark_sides(ax, plane)
                ax.set_xticks([])
                ax.set_yticks([])
            row[3 * k].set_ylabel(window, fontsize=8)
    fig.suptitle(f"{manifest.protocol['name']} prepared volumes, {Path(root).name}: full range (left three), "
                 f"soft-tissue window W {width:.0f} / L {level:.0f} (right three)", fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=80)
    return out
