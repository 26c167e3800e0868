"""Feature metrics with one feature row per whole volume (FVD, 3D FID): one stream, its Fréchet distance, the
bias-corrected twin and the kernel distance, under three key names a subclass sets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from ctbench.extractors.slicing import quantise_uint8
from ctbench.metrics.feature import FeatureMetric, StreamRows
from ctbench.metrics.feature_values import interval_note, kernel_note, kernel_value, make_value, unbiased_value
from ctbench.metrics.frechet import FrechetEstimate
from ctbench.metrics.kernel import KernelEstimate
from ctbench.stats import FeatureSetStats


class WholeVolumeMetric(FeatureMetric):
    """A :class:`FeatureMetric` whose extractor maps volumes ``(N, 1, D, H, W)`` to one row each.

    Subclasses set ``streams = (STREAM,)`` and the key names :attr:`frechet_key` (its ``_unbiased`` twin follows)
    and :attr:`kernel_key`. Axial slices that are entirely blank (pure padding) stay in what the network sees; their
    share is recorded as the value's padding fraction.
    """

    frechet_key: str
    kernel_key: str

    def features(self, extractor: Any, volumes: torch.Tensor) -> Iterator[StreamRows]:
        n, depth = volumes.shape[0], volumes.shape[2]
        blank = int((quantise_uint8(volumes).flatten(3).amax(3) == 0).sum())  # (N, 1, D) axial slices entirely 0
        yield StreamRows(self.streams[0], extractor(volumes), torch.arange(n), torch.zeros(n, dtype=torch.long),
                         blank, n * depth)

    def frechet_values(self, estimates: dict[str, FrechetEstimate], fake: FeatureSetStats, common: dict) -> dict:
        e = estimates[self.streams[0]]
        return {
            self.frechet_key: make_value(e.value, e.n, e.interval(), common, interval_note(e)),
            f"{self.frechet_key}_unbiased": unbiased_value(e, common, interval_note(e)),
        }

    def kernel_values(self, estimates: dict[str, KernelEstimate], fake: FeatureSetStats, common: dict) -> dict:
        e = estimates[self.streams[0]]
        return {self.kernel_key: kernel_value(e, common, kernel_note(e, "volumes"))}
