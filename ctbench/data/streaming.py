"""Prepared cases read in batches of tensors, the way metrics and evaluations consume them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from ctbench.core.progress import progress_bar
from ctbench.data.prepared import PreparedCase, read_volume

READ_BATCH = 8
"""Real volumes read together (8 × 4 MiB as float32 at 64×128×128)."""


def case_batches(
    cases: Sequence[PreparedCase], batch: int = READ_BATCH, desc: str | None = None, start: int = 0
) -> Iterator[tuple[range, list[PreparedCase], torch.Tensor]]:
    """Yield ``(indices, cases, volumes)`` with volumes ``(B, 1, D, H, W)`` float32 in [-1, 1].

    ``indices`` are the cases' positions in ``cases`` (from ``start``); a progress bar shows on a terminal when
    ``desc`` is given.
    """
    starts = range(start, len(cases), batch)
    for s in progress_bar(starts, desc=desc, unit="batch", leave=False, enabled=desc is not None):
        chunk = list(cases[s : s + batch])
        volumes = torch.from_numpy(np.stack([read_volume(c.path) for c in chunk]))[:, None]
        yield range(s, s + len(chunk)), chunk, volumes
