"""Figures made at evaluate time: tri-planar montages of samples beside real volumes, memorisation pairs.

Volumes are ``(1, D, H, W)`` in [-1, 1], shown in grey over [-1, 1]. Planes: the middle axial (xy),
coronal (xz) and sagittal (yz) slices, named so on the figures, in radiological display
(:func:`ctbench.protocol.radiological`: patient's right on the left of the screen), with the patient's sides
marked at the edges (R/L, A/P, S/I); in the coronal and sagittal planes the superior end is up and the pixel
aspect follows the protocol's voxel size (1.8 × 1.8 × 6.25 mm), so anatomy is not squashed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ctbench.core.atomic import atomic_path
from ctbench.protocol import FLARE22_V1, Protocol, central_planes

PLANES = ("xy", "xz", "yz")
PLANE_NAMES = {"xy": "axial", "xz": "coronal", "yz": "sagittal"}
SIDES = {"xy": ("R", "L", "A", "P"), "xz": ("R", "L", "S", "I"), "yz": ("A", "P", "S", "I")}
"""The patient's side at the (left, right, top, bottom) edge of each plane in radiological display."""


def mark_sides(ax: Any, plane: str, fontsize: float = 7) -> None:
    """Write the patient's side (R/L/A/P/S/I) at the four edges of an axis showing ``plane``."""
    left, right, top, bottom = SIDES[plane]
    style = {"color": "yellow", "fontsize": fontsize, "transform": ax.transAxes, "fontweight": "bold"}
    ax.text(0.03, 0.5, left, va="center", ha="left", **style)
    ax.text(0.97, 0.5, right, va="center", ha="right", **style)
    ax.text(0.5, 0.97, top, va="top", ha="center", **style)
    ax.text(0.5, 0.03, bottom, va="bottom", ha="center", **style)


def _planes(volume: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
    """:func:`~ctbench.protocol.central_planes` of a ``(1, D, H, W)`` or ``(D, H, W)`` tensor or array, float32."""
    v = volume.detach().cpu() if isinstance(volume, torch.Tensor) else volume
    return central_planes(np.asarray(v, dtype=np.float32))


def _aspect(plane: str, protocol: Protocol) -> float:
    sx, sy, sz = protocol.output_spacing_mm
    return {"xy": sy / sx, "xz": sz / sx, "yz": sz / sy}[plane]


def _save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as PNG atomically. Figures are built with ``matplotlib.figure.Figure`` (no pyplot), so
    making them changes no global matplotlib state and needs no display."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    return path


def triplanar_montage(
    groups: Sequence[tuple[str, Sequence[torch.Tensor], Sequence[str]]],
    path: str | Path,
    title: str = "",
    protocol: Protocol = FLARE22_V1,
) -> Path:
    """One PNG: a column per volume, a row per plane; ``groups`` = (group label, volumes, column labels).

    E.g. ``[("noise", samples, ["#0", "#1"]), ("real", reals, ["case_01", "case_02"])]``.
    """
    columns = [(g, v, lab) for g, vols, labs in groups for v, lab in zip(vols, labs, strict=True)]
    if not columns:
        raise ValueError("montage needs at least one volume")
    fig = Figure(figsize=(1.9 * len(columns), 1.9 * 3 * 1.3))
    axes = fig.subplots(3, len(columns), squeeze=False)
    for c, (group, vol, label) in enumerate(columns):
        slices = _planes(vol)
        for r, plane in enumerate(PLANES):
            ax = axes[r, c]
            ax.imshow(slices[plane], cmap="gray", vmin=-1, vmax=1, aspect=_aspect(plane, protocol))
            ax.set_xticks([])
            ax.set_yticks([])
            mark_sides(ax, plane)
            if r == 0:
                ax.set_title(f"{group}\n{label}", fontsize=8)
            if c == 0:
                ax.set_ylabel(PLANE_NAMES[plane], fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, Path(path))


def pairs_figure(
    pairs: Sequence[tuple[str, torch.Tensor, str, torch.Tensor]],
    path: str | Path,
    title: str = "",
    protocol: Protocol = FLARE22_V1,
    flagged: Sequence[bool] | None = None,
    note: str = "",
) -> Path:
    """Side-by-side rows ``(label A, volume A, label B, volume B)``: axial and coronal of A, then of B.

    ``flagged[i]``: row ``i`` is marked (red frame and "FLAGGED"); ``note``: a line of explanation under the title.
    """
    if not pairs:
        raise ValueError("pairs figure needs at least one pair")
    fig = Figure(figsize=(8, 2.4 * len(pairs) + (0.4 if note else 0)), layout="constrained")
    axes = fig.subplots(len(pairs), 4, squeeze=False)
    for r, (label_a, vol_a, label_b, vol_b) in enumerate(pairs):
        hit = bool(flagged[r]) if flagged is not None else False
        for c, (label, vol, plane) in enumerate(
            [(label_a, vol_a, "xy"), (label_a, vol_a, "xz"), (label_b, vol_b, "xy"), (label_b, vol_b, "xz")]
        ):
            ax = axes[r, c]
            ax.imshow(_planes(vol)[plane], cmap="gray", vmin=-1, vmax=1, aspect=_aspect(plane, protocol))
            ax.set_xticks([])
            ax.set_yticks([])
            mark_sides(ax, plane, fontsize=6)
            flag = "FLAGGED " if hit and c < 2 else ""
            ax.set_title(f"{flag}{label} ({PLANE_NAMES[plane]})", fontsize=8, color="tab:red" if flag else "black")
            if hit and c < 2:
                for spine in ax.spines.values():
                    spine.set(color="tab:red", linewidth=2.5)
    if title or note:
        fig.suptitle("\n".join(t for t in (title, note) if t), fontsize=9)
    return _save(fig, Path(path))


def interval_plot(
    rows: Sequence[tuple[str, float | None, tuple[float, float] | None]],
    path: str | Path,
    metric: str,
    reference: tuple[str, float, tuple[float, float] | None] | None = None,
    integer: bool = False,
) -> Path:
    """Horizontal dot-and-whisker plot of one metric: ``rows`` = (generator label, value, interval or None).

    Missing values are drawn as a grey "—" label, never as 0. ``reference`` = (label, value, interval or None)
    is drawn as a dashed vertical line with a shaded interval (e.g. the real volumes' own MS-SSIM) and named in
    the title. ``integer``: whole-number ticks (counts).
    """
    fig = Figure(figsize=(6, 0.45 * len(rows) + 1.0))
    ax = fig.subplots()
    if reference is not None:
        ref_label, ref_value, ref_interval = reference
        if ref_interval is not None:
            ax.axvspan(*ref_interval, color="tab:green", alpha=0.15, lw=0)
        ax.axvline(ref_value, color="tab:green", ls="--", lw=1.5)
        ax.set_title(f"dashed line: {ref_label} = {ref_value:.4g}", fontsize=8, color="tab:green")
    for y, (_label, value, interval) in enumerate(rows):
        if value is None:
            ax.text(0.5, y, "—  (missing)", transform=ax.get_yaxis_transform(), color="grey", va="center", fontsize=8)
            continue
        if interval is not None:
            ax.plot(interval, [y, y], color="tab:blue", lw=2)
        ax.plot([value], [y], "o", color="tab:blue")
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(metric)
    if integer:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, Path(path))
