"""A third-party metric as an outside author would write it: only ctbench's public Metric contract is used."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ctbench.metrics import Accumulator, Key, Metric, MetricValue, RunContext


class MeanHU(Accumulator):
    """Running sum and count of body-voxel HU (voxels above -500 HU)."""

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def update(self, volumes: torch.Tensor, indices: Sequence[int], hu_ranges: Sequence[tuple[float, float]]) -> None:
        for v, (lo, hi) in zip(volumes, hu_ranges, strict=True):
            hu = lo + (v.double() + 1) / 2 * (hi - lo)
            body = hu[hu > -500]
            self.total += float(body.sum())
            self.count += body.numel()

    def merge(self, state: Any) -> None:
        self.total += state.total
        self.count += state.count

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")


class MeanHUGap(Metric):
    """Absolute difference of the mean body HU of generated and reference volumes."""

    name = "toy-mean-hu"
    version = "1"
    summary = "toy: |mean body HU (generated) - mean body HU (real)|"
    keys = (Key("toy_mean_hu_gap", "lower", units="HU", description="gap of the mean body HU"),)

    def accumulator(self, ctx: RunContext) -> MeanHU:
        return MeanHU()

    def reference_accumulator(self, ctx: RunContext) -> MeanHU:
        return MeanHU()

    def reference(self, ctx: RunContext, real: Accumulator | None) -> float:
        assert isinstance(real, MeanHU)
        return real.mean

    def score(self, fake: Accumulator, reference: float, ctx: RunContext) -> dict[str, MetricValue]:
        assert isinstance(fake, MeanHU)
        return {"toy_mean_hu_gap": MetricValue(abs(fake.mean - reference), n=None, metric_version=self.version)}


class PlainClass:
    """Not a Metric subclass: the registry must list it as broken, not crash."""

    name = "toy-plain"
