"""The generated side of a run: every metric's accumulator fed batch by batch, then merged across ranks.

Under ``torchrun`` each rank samples its contiguous share of the sample indices (sample i is still seeded by
(seed, i)); :meth:`Streams.gather` collects every accumulator's :meth:`~ctbench.metrics.contract.Accumulator.state`
on rank 0 and merges it there.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ctbench.core.distributed import gather_object
from ctbench.core.progress import progress_bar
from ctbench.data.prepared import read_volume, write_volume
from ctbench.evaluate.options import EvalOptions, EvaluationError
from ctbench.evaluate.sources import SampleSource
from ctbench.metrics.contract import Accumulator, KeepFirst
from ctbench.protocol import Protocol


class Streams:
    """Accumulators of the generated volumes, one per metric, plus the first volumes kept for the montage."""

    def __init__(self, accumulators: dict[str, Accumulator], montage_volumes: int):
        self.accumulators = accumulators
        self.montage = KeepFirst(montage_volumes)

    def update(self, volumes: torch.Tensor, indices: Sequence[int], hu_ranges: Sequence[tuple[float, float]]) -> None:
        """Add samples ``indices`` = ``volumes`` ``(len(indices), 1, D, H, W)`` in [-1, 1]."""
        for acc in self.accumulators.values():
            acc.update(volumes, indices, hu_ranges)
        self.montage.update(volumes, indices, hu_ranges)

    def gather(self, rank: int, world: int) -> bool:
        """Merge every rank's accumulators into rank 0's (returns True there); Fréchet statistics merge exactly."""
        if world == 1:
            return True
        parts = {name: gather_object(acc.state()) for name, acc in self.accumulators.items()}
        montages = gather_object(self.montage)
        if rank != 0:
            return False
        for name, states in parts.items():
            for state in states[1:]:
                self.accumulators[name].merge(state)
        for other in montages[1:]:
            self.montage.merge(other)
        return True


def sample_into(
    opts: EvalOptions,
    source: SampleSource,
    streams: Streams,
    mine: range,
    samples_dir: Path,
    *,
    protocol: Protocol,
    show: bool,
) -> float:
    """Sample this rank's indices batch by batch into ``streams``; returns seconds spent sampling (or reading).

    With ``save_samples`` each sample is written as NIfTI (HU) under ``samples_dir``; samples already there from an
    interrupted run of the same id are read back instead of sampled again.
    """
    seconds = 0.0
    hu = source.hu_range
    with progress_bar(total=len(mine), desc=f"sampling {source.label}", unit="vol", enabled=show) as bar:
        for s in range(mine.start, mine.stop, opts.batch_size):
            idx = range(s, min(s + opts.batch_size, mine.stop))
            paths = [samples_dir / f"sample_{i:05d}.nii.gz" for i in idx]
            t = time.perf_counter()
            if opts.save_samples and all(p.exists() for p in paths):
                try:
                    x = torch.from_numpy(np.stack([read_volume(p) for p in paths]))[:, None]
                except ValueError as exc:  # a damaged file of an earlier run: the same (seed, i) draws it again
                    raise EvaluationError(f"{exc}; a saved sample of an earlier run: delete it to draw it again") \
                        from exc
            else:
                x = source.batch(idx)
                if opts.save_samples:
                    for p, v in zip(paths, x, strict=True):
                        write_volume(p, v[0], hu_range=hu, protocol=protocol)
            seconds += time.perf_counter() - t
            streams.update(x, idx, [hu] * len(idx))
            bar.update(len(idx))
    return seconds
