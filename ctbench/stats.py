"""Mergeable feature statistics, and the content-keyed cache of reference statistics.

A :class:`FeatureStats` holds the sufficient statistics of a set of feature vectors in float64: count,
sum and sum of outer products. Two sets computed anywhere (other processes, GPUs, machines) combine by
adding them, so the mean and covariance of the union are exact whatever the sharding.
:class:`GroupedStats` keeps K such statistics, one per disjoint group of samples (sample i goes to
group ``i % K``), so a grouped jackknife interval can be computed from statistics alone.

Reference statistics of a real split are cached under ``$CTBENCH_CACHE/stats/<metric>/<key>.npz``, a
:class:`~ctbench.core.cache.KeyedCache` entry whose key is the sha256 of every input that can change them
(``provenance["cache_fields"]``); the fields are stored in the file and checked on load, so a cache never
serves stale statistics. An unfinished computation keeps its progress in ``<key>.partial.npz``.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctbench.core.cache import KeyedCache, cache_root, read_npz, write_npz
from ctbench.feature_sample import FeatureSample


class FeatureStats:
    """Count, sum and sum of outer products of ``dim``-dimensional features, float64."""

    def __init__(self, dim: int, count: int = 0, total: np.ndarray | None = None, outer: np.ndarray | None = None):
        self.dim = int(dim)
        self.count = int(count)
        self.total = np.zeros(dim, np.float64) if total is None else np.asarray(total, np.float64)
        self.outer = np.zeros((dim, dim), np.float64) if outer is None else np.asarray(outer, np.float64)

    def update(self, features: np.ndarray | torch.Tensor) -> None:
        """Add rows of ``features`` ``(M, dim)``; accumulated in float64."""
        if isinstance(features, torch.Tensor):
            features = features.detach().cpu().numpy()
        f = np.asarray(features, np.float64)
        if f.ndim != 2 or f.shape[1] != self.dim:
            raise ValueError(f"features must be (M, {self.dim}), got {f.shape}")
        self.count += f.shape[0]
        self.total += f.sum(0)
        self.outer += f.T @ f

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Statistics of the union of both sets (a new object)."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge statistics of dimension {self.dim} and {other.dim}")
        return FeatureStats(self.dim, self.count + other.count, self.total + other.total, self.outer + other.outer)

    def subtract(self, other: FeatureStats) -> FeatureStats:
        """Statistics of this set without the subset ``other`` (used for leave-one-group-out)."""
        return FeatureStats(self.dim, self.count - other.count, self.total - other.total, self.outer - other.outer)

    @property
    def mean(self) -> np.ndarray:
        """Mean feature ``(dim,)``."""
        if self.count == 0:
            raise ValueError("no features accumulated")
        return self.total / self.count

    @property
    def cov(self) -> np.ndarray:
        """Unbiased covariance ``(dim, dim)`` (divides by count - 1, as numpy.cov and the FID references do)."""
        if self.count < 2:
            raise ValueError(f"covariance needs at least 2 features, have {self.count}")
        mu = self.mean
        c = (self.outer - self.count * np.outer(mu, mu)) / (self.count - 1)
        return (c + c.T) / 2


class GroupedStats:
    """K disjoint groups of :class:`FeatureStats`; ``total()`` is their union."""

    def __init__(self, dim: int, groups: int):
        if groups < 1:
            raise ValueError("groups must be >= 1")
        self.dim = int(dim)
        self.groups = [FeatureStats(dim) for _ in range(groups)]

    @property
    def k(self) -> int:
        return len(self.groups)

    def update(self, features: np.ndarray | torch.Tensor, group_ids: np.ndarray) -> None:
        """Add rows of ``features`` ``(M, dim)``; row r goes to group ``group_ids[r] % K``."""
        if isinstance(features, torch.Tensor):
            features = features.detach().cpu().numpy()
        g = np.asarray(group_ids) % self.k
        for gid in np.unique(g):
            self.groups[gid].update(features[g == gid])

    def total(self) -> FeatureStats:
        out = FeatureStats(self.dim)
        for s in self.groups:
            out = out.merge(s)
        return out

    def merge(self, other: GroupedStats) -> GroupedStats:
        """Group-wise sum (both sides must use the same K)."""
        if other.k != self.k or other.dim != self.dim:
            raise ValueError(f"cannot merge grouped statistics (K={self.k}, dim={self.dim}) "
                             f"with (K={other.k}, dim={other.dim})")
        out = GroupedStats(self.dim, self.k)
        out.groups = [a.merge(b) for a, b in zip(self.groups, other.groups, strict=True)]
        return out

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {
            f"{prefix}/count": np.array([s.count for s in self.groups], np.int64),
            f"{prefix}/sum": np.stack([s.total for s in self.groups]),
            f"{prefix}/outer": np.stack([s.outer for s in self.groups]),
        }

    @classmethod
    def from_arrays(cls, arrays: Any, prefix: str) -> GroupedStats:
        counts, sums, outers = arrays[f"{prefix}/count"], arrays[f"{prefix}/sum"], arrays[f"{prefix}/outer"]
        out = cls(sums.shape[1], len(counts))
        out.groups = [FeatureStats(sums.shape[1], c, s, o) for c, s, o in zip(counts, sums, outers, strict=True)]
        return out


@dataclass
class FeatureSetStats:
    """Grouped statistics of one sample set for every feature stream of a metric, with provenance.

    ``streams`` maps a stream name (``xy``, ``xz``, ``yz`` for FID; ``video`` for FVD) to its statistics;
    ``n_volumes`` counts the volumes behind them; ``provenance`` records metric, extractor, weights and
    preprocessing, and must agree between the two sides of a comparison. ``samples`` holds, per stream, the
    seeded sample of feature vectors the kernel metrics need (:class:`~ctbench.feature_sample.FeatureSample`);
    ``padding`` counts per stream ``[blank, total]`` slices (or video frames) seen, blank ones being pure padding.
    """

    streams: dict[str, GroupedStats]
    n_volumes: int = 0
    provenance: dict[str, Any] = field(default_factory=dict)
    samples: dict[str, FeatureSample] = field(default_factory=dict)
    padding: dict[str, list[int]] = field(default_factory=dict)

    def merge(self, other: FeatureSetStats) -> FeatureSetStats:
        """Statistics of both sets together; refuses sets made with different provenance."""
        if other.provenance != self.provenance:
            raise ValueError(f"cannot merge statistics of different provenance: {self.provenance} "
                             f"vs {other.provenance}")
        if set(other.streams) != set(self.streams) or set(other.samples) != set(self.samples):
            raise ValueError(f"streams differ: {sorted(self.streams)} vs {sorted(other.streams)}")
        return FeatureSetStats(
            {k: v.merge(other.streams[k]) for k, v in self.streams.items()},
            self.n_volumes + other.n_volumes,
            dict(self.provenance),
            {k: v.merge(other.samples[k]) for k, v in self.samples.items()},
            _add_padding(self.padding, other.padding),
        )

    def all_reduce(self, group: Any = None) -> None:
        """Sum the statistics over all ranks of ``torch.distributed`` in place (every rank gets the union).

        Each rank must hold the same streams and K; tensors travel in float64 on the default device of
        the backend (CPU for gloo, the current CUDA device for nccl). Feature samples and padding counts travel
        as objects (every rank gets the merged sample).
        """
        import torch.distributed as dist

        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend(group) == "nccl" else "cpu"
        n = torch.tensor([self.n_volumes], dtype=torch.float64, device=device)
        dist.all_reduce(n, group=group)
        self.n_volumes = int(n.item())
        for stats in self.streams.values():
            for s in stats.groups:
                flat = torch.from_numpy(np.concatenate([[float(s.count)], s.total, s.outer.ravel()])).to(device)
                dist.all_reduce(flat, group=group)
                summed = flat.cpu().numpy()
                s.count = int(round(summed[0]))
                s.total = summed[1 : 1 + s.dim].copy()
                s.outer = summed[1 + s.dim :].reshape(s.dim, s.dim).copy()
        parts: list[Any] = [None] * dist.get_world_size(group)
        dist.all_gather_object(parts, (self.samples, self.padding), group=group)
        samples, padding = parts[0]
        for other_samples, other_padding in parts[1:]:
            samples = {k: v.merge(other_samples[k]) for k, v in samples.items()}
            padding = _add_padding(padding, other_padding)
        self.samples, self.padding = samples, padding

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Every stream's grouped statistics and feature sample as arrays, plus ``meta.json`` (volumes,
        provenance, streams, padding counts)."""
        arrays: dict[str, np.ndarray] = {}
        for name, stats in self.streams.items():
            arrays.update(stats.to_arrays(name))
        for name, sample in self.samples.items():
            arrays.update(sample.to_arrays(name))
        meta = {
            "n_volumes": self.n_volumes,
            "provenance": self.provenance,
            "streams": sorted(self.streams),
            "samples": sorted(self.samples),
            "padding": self.padding,
        }
        arrays["meta.json"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], source: str | Path) -> FeatureSetStats:
        """Inverse of :meth:`to_arrays`; ``ValueError`` naming ``source`` if the arrays are not statistics."""
        try:
            meta = json.loads(bytes(arrays["meta.json"]).decode())
            streams = {name: GroupedStats.from_arrays(arrays, name) for name in meta["streams"]}
            samples = {name: FeatureSample.from_arrays(arrays, name) for name in meta.get("samples", [])}
        except (KeyError, ValueError) as exc:
            why = f"no {exc.args[0]!r} entry" if isinstance(exc, KeyError) and exc.args else exc
            raise ValueError(f"{source}: not a ctbench statistics file ({why})") from exc
        return cls(streams, int(meta["n_volumes"]), meta["provenance"], samples, meta.get("padding", {}))

    def save(self, path: str | Path) -> Path:
        """Write as ``.npz`` (atomically); with ``provenance["cache_fields"]`` it is also a valid cache entry."""
        return write_npz(path, self.to_arrays(), self.provenance.get("cache_fields"))

    @classmethod
    def load(cls, path: str | Path) -> FeatureSetStats:
        """Read a file written by :meth:`save`; a clear error names the file if it is not one."""
        if Path(path).is_file() and not zipfile.is_zipfile(path):
            raise ValueError(f"{path}: not a ctbench statistics file (not an .npz archive: `ctbench stats --export` "
                             "writes them)")
        try:
            arrays = read_npz(path)
        except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: not a ctbench statistics file ({exc})") from exc
        return cls.from_arrays(arrays, path)


def _add_padding(a: dict[str, list[int]], b: dict[str, list[int]]) -> dict[str, list[int]]:
    """Stream-wise sum of ``[blank, total]`` counts."""
    return {k: [a.get(k, [0, 0])[i] + b.get(k, [0, 0])[i] for i in (0, 1)] for k in sorted({*a, *b})}


def stats_cache_dir(metric: str) -> Path:
    """``<cache_root>/stats/<metric>``."""
    return cache_root() / "stats" / metric


def _cache(metric: str) -> KeyedCache:
    return KeyedCache(stats_cache_dir(metric))


def cache_path(metric: str, fields: dict[str, Any]) -> Path:
    """Where the statistics keyed by ``fields`` live; the key's fields are written beside it as JSON."""
    return _cache(metric).path(fields)


def partial_path(metric: str, fields: dict[str, Any]) -> Path:
    """Where an unfinished reference computation keeps its progress (``<key>.partial.npz``)."""
    return _cache(metric).path(fields, "partial")


def _load(metric: str, fields: dict[str, Any], tag: str) -> FeatureSetStats | None:
    cache = _cache(metric)
    arrays = cache.load(fields, tag)
    return None if arrays is None else FeatureSetStats.from_arrays(arrays, cache.path(fields, tag))


def load_cached(metric: str, fields: dict[str, Any]) -> FeatureSetStats | None:
    """Cached statistics for exactly ``fields``, or None (also None when the stored fields differ)."""
    return _load(metric, fields, "")


def load_partial(metric: str, fields: dict[str, Any]) -> FeatureSetStats | None:
    """Progress of an interrupted computation for exactly ``fields`` (its ``n_volumes`` are done), or None."""
    return _load(metric, fields, "partial")


def store_cached(metric: str, stats: FeatureSetStats) -> Path:
    """Store reference statistics under the key of ``stats.provenance['cache_fields']``, plus a JSON sidecar."""
    fields = stats.provenance["cache_fields"]
    cache = _cache(metric)
    path = cache.store(fields, stats.to_arrays())
    cache.discard(fields, "partial")
    return path


def import_stats(src: str | Path) -> tuple[str, Path]:
    """Put an exported reference-statistics ``.npz`` into the cache under its own key; returns (metric, path)."""
    stats = FeatureSetStats.load(src)
    fields = stats.provenance.get("cache_fields")
    metric = stats.provenance.get("metric")
    if not fields or not metric:
        raise ValueError(f"{src}: statistics carry no cache fields; "
                         "only `ctbench stats --export` files can be imported")
    return metric, store_cached(metric, stats)
