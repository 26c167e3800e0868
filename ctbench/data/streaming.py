"""Prepared cases read in batches of tensors, the way metrics and evaluations consume them.

Reading overlaps use: the volumes of the next batch are decoded by a small thread pool (gzip inflation and numpy
release the GIL) while the caller extracts features from the current one, so decoding does not leave the device
idle. The order of cases and volumes never changes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from ctbench.core.progress import progress_bar
from ctbench.data.prepared import PreparedCase, read_volume

READ_BATCH = 8
"""Real volumes read together (8 × 4 MiB as float32 at 64×128×128)."""

READ_WORKERS = 2
"""Threads decoding volumes ahead of use (0: read in the caller's thread, one at a time)."""


def case_batches(
    cases: Sequence[PreparedCase],
    batch: int = READ_BATCH,
    desc: str | None = None,
    start: int = 0,
    workers: int = READ_WORKERS,
    pin_memory: bool = False,
) -> Iterator[tuple[range, list[PreparedCase], torch.Tensor]]:
    """Yield ``(indices, cases, volumes)`` with volumes ``(B, 1, D, H, W)`` float32 in [-1, 1].

    ``indices`` are the cases' positions in ``cases`` (from ``start``); a progress bar shows on a terminal when
    ``desc`` is given. With ``workers`` > 0 the next batch is decoded by that many threads while this one is used.
    ``pin_memory`` (with CUDA present) returns page-locked tensors, for asynchronous copies to the GPU.
    """
    starts = range(start, len(cases), batch)
    pin = pin_memory and torch.cuda.is_available()

    def assemble(s: int, arrays: list[np.ndarray]) -> tuple[range, list[PreparedCase], torch.Tensor]:
        volumes = torch.from_numpy(np.stack(arrays))[:, None]
        return range(s, s + len(arrays)), list(cases[s : s + batch]), volumes.pin_memory() if pin else volumes

    bar = progress_bar(starts, desc=desc, unit="batch", leave=False, enabled=desc is not None)
    if workers == 0:
        for s in bar:
            yield assemble(s, [read_volume(c.path) for c in cases[s : s + batch]])
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ctbench-read") as pool:

        def submit(s: int) -> list[Future]:
            return [pool.submit(read_volume, c.path) for c in cases[s : s + batch]]

        ahead = submit(starts[0]) if starts else []
        for k, s in enumerate(bar):
            current, ahead = ahead, (submit(starts[k + 1]) if k + 1 < len(starts) else [])
            yield assemble(s, [f.result() for f in current])
