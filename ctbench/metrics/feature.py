"""What FID and FVD share: weights check, feature accumulation, reference statistics, Fréchet and kernel scoring.

A :class:`FeatureMetric` turns volumes into one or more feature streams (FID: the ``xy``, ``xz``, ``yz``
slice planes; FVD: ``video``), accumulates per stream grouped sufficient statistics, a seeded sample of the
feature vectors (at most ``kid_max_samples`` rows, :class:`~ctbench.feature_sample.FeatureSample`) and the count
of pure-padding slices (:class:`~ctbench.stats.FeatureSetStats`), and scores a generated set against the real
one with the Fréchet distance and the kernel distance (KID/KVD, :mod:`ctbench.metrics.kernel`), each with a
grouped-jackknife interval.

Padding: a slice (an FVD frame) is *blank* when its 8-bit image, the one the feature network sees, is 0
everywhere — every voxel below ``-1 + 1/255`` in [-1, 1], which is what the protocol's air padding becomes (and
slices lying wholly in air outside the body). Every value records the blank fraction on each side
(``MetricValue.padding``); FID's ``slices="body"`` leaves blank slices out on both sides.

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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ctbench.core.distributed import rank_and_world
from ctbench.core.progress import progress_bar
from ctbench.extractors.slicing import check_volumes
from ctbench.feature_sample import FeatureSample
from ctbench.metrics.base import MetricValue
from ctbench.metrics.contract import Accumulator, Metric, RunContext
from ctbench.metrics.frechet import FrechetEstimate, FrechetReference, frechet_with_jackknife
from ctbench.metrics.kernel import DEFAULT_SEED, DEFAULT_SUBSETS, KernelEstimate, KernelSizeError, kid
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

KID_MAX_SAMPLES = 10_000
"""Default cap on the feature rows kept per stream and side for KID/KVD (float16: 41 MB per 2048-d stream)."""

_COMPARED = ("metric", "metric_version", "extractor", "weights_sha256", "preprocessing", "options")
"""Provenance fields that must agree between the generated and the real statistics."""


@dataclass
class StreamRows:
    """One batch's feature rows of one stream, as :meth:`FeatureMetric.features` yields them.

    ``features`` ``(M, dim)``; ``volume`` ``(M,)`` the index in the batch of each row's volume; ``position``
    ``(M,)`` the row's slice index within its volume (0 for one row per volume); ``blank`` and ``total``: how many
    of the batch's slices (FVD: frames) were pure padding, and how many there were, kept as rows or not.
    """

    stream: str
    features: torch.Tensor
    volume: torch.Tensor
    position: torch.Tensor
    blank: int
    total: int


class FeatureAccumulator(Accumulator):
    """Feeds batches of volumes through a metric's extractor into grouped statistics and feature samples."""

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
        empty = FeatureSetStats(
            {s: GroupedStats(metric.dim, groups) for s in metric.streams},
            0,
            provenance,
            {s: FeatureSample(metric.dim, metric.kid_max_samples, metric.kid_seed) for s in metric.streams},
            {s: [0, 0] for s in metric.streams},
        )
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
        for rows in self.metric.features(self.extractor, volumes):
            volume = idx[rows.volume.numpy()]
            self.stats.streams[rows.stream].update(rows.features, volume)
            self.stats.samples[rows.stream].update(rows.stream, rows.features, volume, rows.position.numpy())
            counts = self.stats.padding[rows.stream]
            counts[0], counts[1] = counts[0] + rows.blank, counts[1] + rows.total
        self.stats.n_volumes += n

    def result(self) -> FeatureSetStats:
        """The accumulated statistics (mergeable across shards: ``a.merge(b)`` or ``.all_reduce()``)."""
        return self.stats

    def state(self) -> FeatureSetStats:
        return self.stats

    def merge(self, state: FeatureSetStats) -> None:
        self.stats = self.stats.merge(state)


class FeatureMetric(Metric):
    """Fréchet and kernel distances over features of a pinned network. Subclasses fill in the class attributes.

    Kernel options: ``kid_max_samples`` feature rows kept per stream and side (a seeded sample above it),
    ``kid_seed`` (the row sample and the subset draws), ``kid_subset_size`` (None: 1000, a smaller side entering
    whole; a number: every side must have that many rows) and ``kid_subsets`` (draws averaged above the subset size).
    """

    streams: tuple[str, ...]
    dim: int
    extractor_name: str
    preprocessing: str

    def __init__(
        self,
        groups: int = DEFAULT_GROUPS,
        kid_max_samples: int = KID_MAX_SAMPLES,
        kid_subset_size: int | None = None,
        kid_subsets: int = DEFAULT_SUBSETS,
        kid_seed: int = DEFAULT_SEED,
    ):
        if groups < 1:
            raise ValueError(f"groups must be >= 1, got {groups}")
        for name, value, least in (("kid_max_samples", kid_max_samples, 2), ("kid_subsets", kid_subsets, 1)):
            if value < least:
                raise ValueError(f"{name} must be >= {least}, got {value}")
        if kid_subset_size is not None and not 2 <= kid_subset_size <= kid_max_samples:
            raise ValueError(f"kid_subset_size must be between 2 and kid_max_samples ({kid_max_samples}), "
                             f"got {kid_subset_size}")
        if kid_seed < 0:
            raise ValueError(f"kid_seed must be >= 0, got {kid_seed}")
        self.groups = groups
        self.kid_max_samples = kid_max_samples
        self.kid_subset_size = kid_subset_size
        self.kid_subsets = kid_subsets
        self.kid_seed = kid_seed

    # -- what subclasses provide
    def extraction_options(self) -> dict[str, Any]:
        """Options that change the features or which rows are kept (recorded in provenance and the cache key)."""
        return {}

    def options(self) -> dict[str, Any]:
        """Every option that changes values (the comparability key): extraction, the row sample and KID's draws."""
        return {
            **self.sample_options(),
            "kid_subset_size": self.kid_subset_size,
            "kid_subsets": self.kid_subsets,
        }

    def sample_options(self) -> dict[str, Any]:
        """:meth:`extraction_options` and what chooses the kept feature rows: both sides must share them."""
        return {**self.extraction_options(), "kid_max_samples": self.kid_max_samples, "kid_seed": self.kid_seed}

    @abstractmethod
    def build_extractor(self, weights: ResolvedWeights, device: str | torch.device, batch_size: int | None) -> Any:
        """The feature network, loaded from ``weights``."""

    @abstractmethod
    def features(self, extractor: Any, volumes: torch.Tensor) -> Iterator[StreamRows]:
        """Yield every stream's :class:`StreamRows` for a batch of volumes ``(N, 1, D, H, W)`` in [-1, 1]."""

    def key_streams(self, key: str) -> tuple[str, ...]:
        """The streams behind ``key``: those its name contains as a ``_`` part (``fid_xy`` → ``xy``), else all."""
        return tuple(s for s in self.streams if s in key.split("_")) or self.streams

    @abstractmethod
    def frechet_values(self, estimates: dict[str, FrechetEstimate], fake: FeatureSetStats, common: dict) -> dict:
        """Turn per-stream Fréchet estimates into the reported :class:`MetricValue` per key."""

    @abstractmethod
    def kernel_values(self, estimates: dict[str, KernelEstimate], fake: FeatureSetStats, common: dict) -> dict:
        """Turn per-stream kernel (MMD²) estimates into the reported :class:`MetricValue` per key."""

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
            "options": self.sample_options(),
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
        return self.distances(fake.result(), reference, ctx.device)

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

    def distances(
        self, fake: FeatureSetStats, real: FeatureSetStats, device: str | torch.device = "cpu"
    ) -> dict[str, MetricValue]:
        """Fréchet and kernel distance of every stream, with interval, N and padding, as ``{key: MetricValue}``.

        Kernel values need the feature samples of both sides; without one (statistics saved without samples) they
        are missing with a note. ``device``: where the kernel matrices are computed (float64).
        """
        for k in _COMPARED:
            if fake.provenance.get(k) != real.provenance.get(k):
                raise ValueError(
                    f"{self.name}: generated and real statistics differ in {k}: "
                    f"{fake.provenance.get(k)!r} vs {real.provenance.get(k)!r}"
                )
        estimates = {}
        for stream in self.streams:
            ref_total = real.streams[stream].total()
            ref = FrechetReference(ref_total.mean, ref_total.cov, rank=ref_total.count - 1)
            estimates[stream] = frechet_with_jackknife(fake.streams[stream], ref)
        verified = bool(fake.provenance.get("verified")) and bool(real.provenance.get("verified"))
        common = {
            "extractor": self.extractor_name,
            "weights_sha256": fake.provenance["weights_sha256"],
            "verified": verified,
            "metric_version": self.version,
        }
        values = self.frechet_values(estimates, fake, common)
        for key, v in values.items():
            if v.value is not None and (note := self.rank_deficiency(self.key_streams(key), fake, real)):
                v.rank_deficient = True
                v.note = f"{v.note}; {note}" if v.note else note
        values.update(self.kernel_distances(fake, real, common, device))
        values.update(self.manifold_distances(fake, real, common, device))
        for key, v in values.items():
            v.padding = {side: padding_fraction(stats, self.key_streams(key)) for side, stats in
                         (("generated", fake), ("real", real))}
        return values

    def kernel_distances(
        self, fake: FeatureSetStats, real: FeatureSetStats, common: dict, device: str | torch.device
    ) -> dict[str, MetricValue]:
        """The kernel keys (KID/KVD) from both sides' feature samples; missing with the reason without them."""
        if missing := self.missing_samples(fake, real):
            return self._missing_kernel_values(fake, common, missing)
        estimates = {}
        try:
            for stream in self.streams:
                x, y = fake.samples[stream], real.samples[stream]
                estimates[stream] = kid(
                    x.features, x.volume, y.features, fake.streams[stream].k, self.kid_subset_size,
                    self.kid_subsets, self.kid_seed, device, label=f"{self.name} ({stream})",
                )
        except KernelSizeError as exc:  # the Fréchet values stand; the kernel keys say why they are missing
            return self._missing_kernel_values(fake, common, str(exc))
        out = self.kernel_values(estimates, fake, common)
        self.note_row_samples(out, fake, real)
        return out

    def note_row_samples(self, values: dict[str, MetricValue], fake: FeatureSetStats, real: FeatureSetStats) -> None:
        """Add to the note of each value built on feature samples which sides' rows are a seeded sample (kept of
        seen per stream, and ``kid_seed``)."""
        for key, v in values.items():
            sampled = [f"{side} {s} {len(st.samples[s])} of {st.samples[s].seen}" for side, st in
                       (("generated", fake), ("real", real)) for s in self.key_streams(key) if st.samples[s].subsampled]
            if sampled:
                v.note = f"{v.note}; seeded row sample (kid_seed {self.kid_seed}): {', '.join(sampled)}"

    def manifold_distances(
        self, fake: FeatureSetStats, real: FeatureSetStats, common: dict, device: str | torch.device
    ) -> dict[str, MetricValue]:
        """The k-nearest-neighbour keys from both sides' feature samples (FID: precision, recall, density,
        coverage, :mod:`ctbench.metrics.manifold`); none by default."""
        return {}

    def missing_samples(self, fake: FeatureSetStats, real: FeatureSetStats) -> str | None:
        """Why the values built on feature samples cannot be computed (a side without one), or None."""
        missing = [side for side, stats in (("generated", fake), ("real", real)) if set(stats.samples) != set(
            self.streams)]
        if not missing:
            return None
        return (f"no feature sample on the {' and '.join(missing)} side (statistics saved without one); "
                "recompute them with this version of ctbench")

    def _missing_kernel_values(self, fake: FeatureSetStats, common: dict, note: str) -> dict[str, MetricValue]:
        out = self.kernel_values({s: KernelEstimate(0.0, 0, [], 0, (0, 0)) for s in self.streams}, fake, common)
        for v in out.values():
            v.value, v.n, v.interval, v.interval_method, v.note = None, None, None, None, note
        return out

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


def padding_fraction(stats: FeatureSetStats, streams: Sequence[str]) -> float | None:
    """Fraction of the slices (frames) of ``streams`` that were pure padding, pooled; None if none were counted."""
    blank = sum(stats.padding.get(s, [0, 0])[0] for s in streams)
    total = sum(stats.padding.get(s, [0, 0])[1] for s in streams)
    return blank / total if total else None
