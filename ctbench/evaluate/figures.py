"""The run's montage: generated volumes beside real ones, mid slices of each plane, written beside the record."""

from __future__ import annotations

from pathlib import Path

import torch

from ctbench.figures import triplanar_montage


def montage(
    generated: dict[int, torch.Tensor],
    real: list[tuple[str, torch.Tensor]],
    path: Path,
    *,
    label: str,
    split: str,
    seed: int,
) -> str:
    """Write ``path`` (PNG): generated volumes (sample index → ``(1, D, H, W)``) above real ones (id, volume).

    Returns the file name, for the record's ``artifacts``.
    """
    order = sorted(generated)
    fig = triplanar_montage(
        [
            (label, [generated[i] for i in order], [f"#{i}" for i in order]),
            (f"real ({split})", [v for _, v in real], [cid for cid, _ in real]),
        ],
        path,
        title=f"{label} vs real, seed {seed}",
    )
    return fig.name
