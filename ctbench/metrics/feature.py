"""What FID and FVD share: weights check, feature accumulation, reference statistics, Fréchet scoring.

A :class:`FeatureMetric` turns volumes into one or more feature streams (FID: the ``xy``, ``xz``, ``yz``
slice planes; FVD: ``video``), accumulates grouped sufficient statistics per stream
(:class:`~ctbench.stats.FeatureSetStats`), and scores a generated set against the real one with the
Fréchet distance and a grouped-jackknife interval.

Sample-size honesty: a value whose generated or real side has fewer samples than the feature dimension
(FID: 2048 slices per plane; FVD: 400 volumes) has a singular covariance on that side and is strongly
biased upwards; it carries ``rank_deficient=True`` and a note naming the side and both numbers
(``fid_mean`` and any key built from several streams: when any of its streams is).

Intervals: the generated volumes are split into K disjoint groups (volume ``i`` → group ``i % K``, with
``i`` the global sample index the caller passes, so sharding does not change the groups); each replicate
leaves one group out; the 95% interval is ``value ± 1.96·se_jackknife``. The real side is held fixed.
The ``*_unbiased`` values are the jackknife bias-corrected distances ``K·θ − (K−1)·mean(θ_−k)`` from the same
replicates, with the interval ``± 1.96·se_jackknife`` around them (:meth:`FrechetEstimate.unbiased`).
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ctbench.core.distributed import rank_and_world
from ctbench.core.progress import progress_bar
from ctbench.extractors.slicing import check_volumes
from ctbench.metrics.base import MetricValue
from ctbench.metrics.contract import Accumulator, Metric, RunContext
from ctbench.metrics.frechet import FrechetEstimate, FrechetReference, frechet_with_jackknife
from ctbench.stats import FeatureSetStats, GroupedStats, load_cached, load_partial, partial_path, store_cached
from ctbench.weights import ResolvedWeights, resolve

if TYPE_CHECKING:
    from ctbench.data.prepared import Manifest

DEFAULT_GROUPS = 8
"""K of the grouped jackknife for generated sets (memory: K · dim² · 8 bytes per stream, 256 MiB per FID plane)."""

REFERENCE_BATCH = 4
"""Real volumes read and extracted together when computing reference statistics."""

SAVE_PROGRESS_EVERY_S = 60.0
"""An interrupted reference computation resumes from its last save (``<key>.partial.npz``), at most this old."""

INTERVAL_METHOD = "grouped jackknife over generated volumes (K groups, i % K), 95% normal; real side fixed"

UNBIASED_METHOD = (
    "grouped jackknife bias correction K*value - (K-1)*mean(leave-one-group-out values) +- 1.96 se_jackknife "
    "(K groups, i % K), 95% normal, not clipped at 0; real side fixed"
)

_COMPARED = ("metric", "metric_version", "extractor", "weights_sha256", "preprocessing", "options")
"""Provenance fields that must agree between the generated and the real statistics."""


class FeatureAccumulator(Accumulator):
    """Feeds batches of volumes through a metric's extractor into grouped statistics."""

    def __init__(
        self,
        metric: FeatureMetric,
        extractor: Any,
        groups: int,
        provenance: dict[str, Any],
        start: FeatureSetStats | None = None,
    ):
        """``start``: statistics to continue from (an interrupted reference computation); else empty ones."""
        self.metric = metric
        self.extractor = extractor
        empty = FeatureSetStats({s: GroupedStats(metric.dim, groups) for s in metric.streams}, 0, provenance)
        self.stats = empty if start is None else start
        self._next_index = self.stats.n_volumes

    def update(
        self,
        volumes: torch.Tensor,
        indices: Sequence[int] | None = None,
        hu_ranges: Sequence[tuple[float, float]] | None = None,
    ) -> None:
        """Add volumes ``(N, 1, D, H, W)`` float32 in [-1, 1]; any N, call repeatedly.

        ``indices`` are the global sample indices (they choose the jackknife group); by default the
        running count of volumes seen by this accumulator. ``hu_ranges`` are not used (features see [-1, 1]).
        """
        check_volumes(volumes)
        n = volumes.shape[0]
        if indices is None:
            idx = np.arange(self._next_index, self._next_index + n)
        else:
            idx = np.asarray(list(indices), np.int64)
            if idx.shape != (n,):
                raise ValueError(f"got {len(idx)} indices for {n} volumes")
        self._next_index = int(idx.max()) + 1 if n else self._next_index
        for stream, feats, vol in self.metric.features(self.extractor, volumes):
            self.stats.streams[stream].update(feats, idx[vol.numpy()])
        self.stats.n_volumes += n

    def result(self) -> FeatureSetStats:
        """The accumulated statistics (mergeable across shards: ``a.merge(b)`` or ``.all_reduce()``)."""
        return self.stats

    def state(self) -> FeatureSetStats:
        return self.stats

    def merge(self, state: FeatureSetStats) -> None:
        self.stats = self.stats.merge(state)


class FeatureMetric(Metric):
    """A Fréchet metric over features of a pinned network. Subclasses fill in the class attributes below."""

    streams: tuple[str, ...]
    dim: int
    extractor_name: str
    preprocessing: str

    def __init__(self, groups: int = DEFAULT_GROUPS):
        if groups < 1:
            raise ValueError(f"groups must be >= 1, got {groups}")
        self.groups = groups

    # -- what subclasses provide
    def options(self) -> dict[str, Any]:
        """Metric options that change values (recorded in provenance and in the cache key)."""
        return {}

    @abstractmethod
    def build_extractor(self, weights: ResolvedWeights, device: str | torch.device, batch_size: int | None) -> Any:
        """The feature network, loaded from ``weights``."""

    @abstractmethod
    def features(self, extractor: Any, volumes: torch.Tensor) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
        """Yield ``(stream, features (M, dim), volume index in the batch (M,))`` for a batch of volumes."""

    def key_streams(self, key: str) -> tuple[str, ...]:
        """The streams behind ``key``: those its name contains as a ``_`` part (``fid_xy`` → ``xy``), else all."""
        return tuple(s for s in self.streams if s in key.split("_")) or self.streams

    @abstractmethod
    def values(self, estimates: dict[str, FrechetEstimate], fake: FeatureSetStats, common: dict) -> dict:
        """Turn per-stream estimates into the reported :class:`MetricValue` per key."""

    # -- shared machinery
    def check_ready(self, unverified_ok: bool = False) -> None:
        self.resolve_weights(unverified_ok)

    def resolve_weights(self, unverified_ok: bool = False) -> ResolvedWeights:
        """Find and verify the weights; raises ``MetricUnavailable`` (what, where looked, how to get it)."""
        return resolve(self.weights[0], unverified_ok=unverified_ok)

    def provenance(self, weights: ResolvedWeights) -> dict[str, Any]:
        return {
            "metric": self.name,
            "metric_version": self.version,
            "extractor": self.extractor_name,
            "weights_sha256": weights.sha256,
            "verified": weights.verified,
            "preprocessing": self.preprocessing,
            "options": self.options(),
        }

    # -- the Metric contract
    def accumulator(self, ctx: RunContext) -> FeatureAccumulator:
        return self.statistics_accumulator(ctx.device, ctx.batch_size, ctx.unverified_ok)

    def reference(self, ctx: RunContext, real: Accumulator | None = None) -> FeatureSetStats:
        return self.reference_statistics(
            ctx.manifest, ctx.split, ctx.device, ctx.cache, ctx.unverified_ok, ctx.batch_size
        )

    def score(self, fake: Accumulator, reference: FeatureSetStats, ctx: RunContext) -> dict[str, MetricValue]:
        assert isinstance(fake, FeatureAccumulator)
        return self.frechet(fake.result(), reference)

    # -- statistics
    def statistics_accumulator(
        self,
        device: str | torch.device = "cpu",
        batch_size: int | None = None,
        unverified_ok: bool = False,
        groups: int | None = None,
    ) -> FeatureAccumulator:
        """A fresh accumulator with the extractor loaded on ``device``."""
        weights = self.resolve_weights(unverified_ok)
        extractor = self.build_extractor(weights, device, batch_size)
        return FeatureAccumulator(self, extractor, groups or self.groups, self.provenance(weights))

    def cache_fields(self, manifest: Any, split: str, weights: ResolvedWeights) -> dict[str, Any]:
        """Everything that determines reference statistics; its sha256 is the cache key."""
        return {
            "protocol": manifest.protocol,
            "manifest_sha256": manifest.sha256,
            "split": split,
            **self.provenance(weights),
        }

    def reference_statistics(
        self,
        manifest: Manifest,
        split: str = "test",
        device: str | torch.device = "cpu",
        cache: bool = True,
        unverified_ok: bool = False,
        batch_size: int | None = None,
    ) -> FeatureSetStats:
        """Statistics of the real volumes of ``split`` in a prepared folder, from the cache when the key matches.

        Resumable: with ``cache``, progress is saved every ``SAVE_PROGRESS_EVERY_S`` seconds and a later call with
        the same key continues from it. Under ``torch.distributed`` (torchrun) every rank must call this: each
        extracts every world-th batch, the statistics are all-reduced, rank 0 writes the cache (no progress
        file then).
        """
        from ctbench.data.prepared import read_volume

        weights = self.resolve_weights(unverified_ok)
        fields = self.cache_fields(manifest, split, weights)
        if cache and (hit := load_cached(self.name, fields)) is not None:
            return hit
        cases = manifest.select(split)
        if not cases:
            raise ValueError(f"{Path(manifest.root) / 'manifest.json'}: no finished cases in split {split!r}")
        rank, world = rank_and_world()
        resumable = cache and world == 1  # ranks would race on one progress file
        partial = load_partial(self.name, fields) if resumable else None  # the first n_volumes cases (by id)
        extractor = self.build_extractor(weights, device, batch_size)
        provenance = {**self.provenance(weights), "cache_fields": fields}
        acc = FeatureAccumulator(self, extractor, 1, provenance, start=partial)
        last_save = time.monotonic()
        starts = range(acc.result().n_volumes, len(cases), REFERENCE_BATCH)[rank::world]  # this rank's batches
        for start in progress_bar(starts, desc=f"{self.name} reference ({split})", unit="batch", enabled=rank == 0):
            chunk = cases[start : start + REFERENCE_BATCH]
            vols = torch.stack([torch.from_numpy(read_volume(c.path))[None] for c in chunk])
            acc.update(vols, indices=range(start, start + len(chunk)))
            if resumable and time.monotonic() - last_save >= SAVE_PROGRESS_EVERY_S and start + len(chunk) < len(cases):
                acc.result().save(partial_path(self.name, fields))
                last_save = time.monotonic()
        stats = acc.result()
        if world > 1:
            stats.all_reduce()
        if cache and rank == 0:
            store_cached(self.name, stats)
        return stats

    def frechet(self, fake: FeatureSetStats, real: FeatureSetStats) -> dict[str, MetricValue]:
        """Fréchet distance of every stream, with interval and N, as ``{key: MetricValue}`` for ``self.keys``."""
        for k in _COMPARED:
            if fake.provenance.get(k) != real.provenance.get(k):
                raise ValueError(
                    f"{self.name}: generated and real statistics differ in {k}: "
                    f"{fake.provenance.get(k)!r} vs {real.provenance.get(k)!r}"
                )
        estimates = {}
        for stream in self.streams:
            ref_total = real.streams[stream].total()
            ref = FrechetReference(ref_total.mean, ref_total.cov)
            estimates[stream] = frechet_with_jackknife(fake.streams[stream], ref)
        verified = bool(fake.provenance.get("verified")) and bool(real.provenance.get("verified"))
        common = {
            "extractor": self.extractor_name,
            "weights_sha256": fake.provenance["weights_sha256"],
            "verified": verified,
            "metric_version": self.version,
        }
        values = self.values(estimates, fake, common)
        for key, v in values.items():
            if v.value is not None and (note := self.rank_deficiency(self.key_streams(key), fake, real)):
                v.rank_deficient = True
                v.note = f"{v.note}; {note}" if v.note else note
        return values

    def rank_deficiency(self, streams: Sequence[str], fake: FeatureSetStats, real: FeatureSetStats) -> str | None:
        """A note naming each side with fewer samples than ``self.dim`` in any of ``streams``, or None."""
        sides = []
        for side, stats in (("generated", fake), ("real", real)):
            counts = {s: sum(g.count for g in stats.streams[s].groups) for s in streams}
            short = {s: c for s, c in counts.items() if c < self.dim}
            if short:
                sides.append(f"{side} " + ", ".join(f"{s} {c}" for s, c in short.items()))
        if not sides:
            return None
        return (
            f"rank-deficient: fewer samples than the {self.dim} feature dimensions ({'; '.join(sides)}); "
            "the value is biased upwards, compare only at equal N"
        )


def interval_note(estimate: FrechetEstimate) -> str:
    """The record note on how the estimate's interval was made (or why it has none)."""
    return f"jackknife replicates={len(estimate.replicates)}" if estimate.replicates else "interval needs >= 2 groups"


def make_value(value: float, n: int, interval: tuple[float, float] | None, common: dict, note: str) -> MetricValue:
    """One key's :class:`MetricValue`: ``value`` and its 95% ``interval`` (None: none), ``n`` for the record, and
    ``common``, the fields every key of the metric shares (extractor, weights hash, verified, metric version)."""
    return MetricValue(
        value=float(value),
        n=int(n),
        interval=interval,
        interval_method=INTERVAL_METHOD if interval is not None else None,
        note=note,
        **common,
    )


def unbiased_value(estimate: FrechetEstimate, common: dict, note: str) -> MetricValue:
    """The bias-corrected value of ``estimate`` with its interval; value None (missing) with fewer than 2 groups."""
    centre = estimate.unbiased()
    value = make_value(0.0 if centre is None else centre, estimate.n, estimate.unbiased_interval(), common, note)
    if centre is None:
        value.value = None
    else:
        value.interval_method = UNBIASED_METHOD
    return value
