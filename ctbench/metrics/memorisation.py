"""Memorisation audit: is a generated volume closer to a training scan than real held-out scans ever are?

Needs no downloaded weights. Similarity is the normalised (Pearson) correlation between two volumes,
computed at half resolution (2×2×2 average pooling, 32×64×64 = 131 072 voxels, float64: 1 MiB per volume)
so the whole training set fits in memory as unit vectors and one matrix-vector product compares a volume
with it. For every generated volume the nearest training volume and its correlation ``r_gen`` are found;
the same is done for every held-out real volume (``r_real``). A generated volume is flagged when
``r_gen > max(r_real)``: it is closer to some training scan than any held-out scan is to any training scan.
The flagged count is the headline number; the worst pairs (highest ``r_gen``) are kept at full resolution
for a side-by-side figure. A generator trained with left-right flips (``RunContext.mirrored_training``) may
have memorised a mirror image: the training set is then indexed with its mirror images too (both sides,
generated and held-out, are compared with the same doubled set).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ctbench.core.cache import KeyedCache
from ctbench.metrics.base import MetricValue
from ctbench.metrics.contract import Accumulator, Key, Metric, RunContext

VERSION = "1"
POOL = 2


def unit_features(volumes: torch.Tensor) -> torch.Tensor:
    """``(N, 1, D, H, W)`` → ``(N, D·H·W / 8)`` zero-mean, unit-norm vectors at half resolution (float64).

    float64 keeps correlations near 1 distinguishable and makes them insensitive to thread count and batching.
    """
    f = F.avg_pool3d(volumes.double(), POOL).flatten(1)
    f = f - f.mean(1, keepdim=True)
    return f / f.norm(dim=1, keepdim=True).clamp_min(1e-8)


class TrainIndex:
    """The training set as unit vectors; answers nearest-neighbour queries by correlation."""

    def __init__(self, features: torch.Tensor, ids: list[str]):
        if features.shape[0] != len(ids) or not ids:
            raise ValueError(f"need one id per training volume and at least one, got {features.shape[0]}/{len(ids)}")
        self.features = features
        self.ids = ids

    def nearest(self, volumes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For ``(N, 1, D, H, W)`` volumes: (correlation with the nearest training volume, its index), ``(N,)`` each."""
        # one matmul per volume: the result then does not depend on how volumes were batched (BLAS blocking)
        corr = torch.stack([self.features @ f for f in unit_features(volumes)])
        score, index = corr.max(1)
        return score, index


def load_or_build_index(
    ids: list[str],
    batches: Callable[[], Iterable[torch.Tensor]],
    key_fields: dict[str, Any],
    cache_dir: Path | None,
) -> TrainIndex:
    """The training index, from ``cache_dir`` when its key matches, else built from ``batches()`` and stored.

    ``key_fields`` must identify the training data (e.g. manifest sha256 and split); the metric version and
    pooling are added. Features are stored as float32 (0.5 MiB per volume) and always used after that
    rounding, so a cached index gives exactly the same correlations as a fresh one. ``cache_dir`` is a
    :class:`~ctbench.core.cache.KeyedCache` folder (None: no cache).
    """
    fields = {**key_fields, "metric": "memorisation", "version": VERSION, "pool": POOL, "ids": ids}
    cache = KeyedCache(cache_dir) if cache_dir is not None else None
    if cache is not None and (hit := cache.load(fields)) is not None:
        return TrainIndex(torch.from_numpy(hit["features"]).double(), ids)
    features = torch.cat([unit_features(x) for x in batches()]).float()
    if cache is not None:
        cache.store(fields, {"features": features.numpy()})
    return TrainIndex(features.double(), ids)


@dataclass
class Pair:
    """A generated sample and its nearest training volume."""

    corr: float
    sample_index: int
    train_index: int
    volume: torch.Tensor = field(repr=False)
    """The generated volume ``(1, D, H, W)`` in [-1, 1]."""


class MemorisationAudit(Accumulator):
    """Streams generated batches against a :class:`TrainIndex`; mergeable across ranks."""

    def __init__(self, index: TrainIndex | None, keep_worst: int = 4):
        self.index = index
        self.keep_worst = keep_worst
        self.corr: dict[int, float] = {}
        self.nearest: dict[int, int] = {}
        self.worst: list[Pair] = []

    def update(
        self,
        volumes: torch.Tensor,
        sample_indices: Sequence[int],
        hu_ranges: Sequence[tuple[float, float]] | None = None,
    ) -> None:
        """Add ``(N, 1, D, H, W)`` generated volumes with their sample indices (HU pairs unused)."""
        assert self.index is not None, "an audit sent between ranks has no index"
        score, index = self.index.nearest(volumes)
        for k, i in enumerate(sample_indices):
            self.corr[i], self.nearest[i] = float(score[k]), int(index[k])
            self.worst.append(Pair(float(score[k]), i, int(index[k]), volumes[k].detach().clone()))
        self._trim()

    def _trim(self) -> None:
        self.worst = sorted(self.worst, key=lambda p: (-p.corr, p.sample_index))[: self.keep_worst]

    def state(self) -> MemorisationAudit:
        """A copy without the training index (every rank holds the same one), to send between ranks."""
        out = copy.copy(self)
        out.index = None
        return out

    def merge(self, other: MemorisationAudit) -> MemorisationAudit:  # type: ignore[override]
        """Fold in another shard's results; returns self."""
        self.corr.update(other.corr)
        self.nearest.update(other.nearest)
        self.worst += other.worst
        self._trim()
        return self


def audit_values(gen_corr: np.ndarray, real_corr: np.ndarray) -> dict[str, MetricValue]:
    """Metric values from nearest-train correlations of generated (N,) and held-out real (M,) volumes.

    ``memorised``: count of generated volumes with correlation above ``max(real_corr)``;
    ``nn_corr`` / ``nn_corr_real``: median nearest-train correlation with the 2.5–97.5 percentile range.
    """
    extractor = f"normalised correlation at 1/{POOL} resolution"
    out: dict[str, MetricValue] = {}
    if len(real_corr) == 0 or len(gen_corr) == 0:
        note = "no held-out real volumes" if len(real_corr) == 0 else "no generated volumes"
        return {k: MetricValue(None, metric_version=VERSION, note=note) for k in Memorisation.key_names()}
    threshold = float(np.max(real_corr))
    flagged = int(np.sum(gen_corr > threshold))
    out["memorised"] = MetricValue(
        value=float(flagged),
        n=len(gen_corr),
        extractor=extractor,
        metric_version=VERSION,
        note=f"{flagged}/{len(gen_corr)} samples closer to a training scan than any of {len(real_corr)} "
        f"held-out scans (threshold r = {threshold:.4f})",
    )
    for key, corr in (("nn_corr", gen_corr), ("nn_corr_real", real_corr)):
        lo, hi = np.percentile(corr, [2.5, 97.5])
        out[key] = MetricValue(
            value=float(np.median(corr)),
            n=len(corr),
            interval=(float(lo), float(hi)),
            interval_method="2.5-97.5 percentiles of the per-volume values (spread, not a CI of the median)",
            extractor=extractor,
            metric_version=VERSION,
        )
    return out


class NearestCorrelation(Accumulator):
    """Nearest-training-scan correlation of each reference (held-out) volume, keyed by its index."""

    def __init__(self, index: TrainIndex):
        self.index = index
        self.corr: dict[int, float] = {}

    def update(self, volumes: torch.Tensor, indices: Sequence[int], hu_ranges: Sequence[tuple[float, float]]) -> None:
        score, _ = self.index.nearest(volumes)
        self.corr.update({int(i): float(c) for i, c in zip(indices, score, strict=True)})

    def merge(self, state: NearestCorrelation) -> None:
        self.corr.update(state.corr)


class Memorisation(Metric):
    """Memorisation audit against the ``train`` split (see the module docstring); a worst-pairs figure."""

    name = "memorisation"
    version = VERSION
    summary = "memorisation audit: samples closer to a training scan than any held-out scan is"
    keys = (
        Key("memorised", "lower", units="samples flagged", integer=True,
            description="samples closer to a training scan than any held-out scan is"),
        Key("nn_corr", description="median correlation of a sample with its nearest training scan"),
        Key("nn_corr_real", description="the same for held-out real scans", real_of="nn_corr"),
    )

    def __init__(self, keep_worst: int = 4):
        self.keep_worst = keep_worst
        self._index: tuple[str, TrainIndex] | None = None
        self._held_out: np.ndarray = np.zeros(0)
        """The last :meth:`score`'s held-out correlations, for the figure's threshold."""

    def options(self) -> dict[str, Any]:
        return {"pool": POOL, "split": "train"}

    def train_index(self, ctx: RunContext) -> TrainIndex:
        """The ``train`` split as unit vectors (cached under ``$CTBENCH_CACHE/memorisation``), built once.

        With ``ctx.mirrored_training`` the split's left-right mirror images follow it (index ``n + i`` is case
        i mirrored, id ``"<id> (mirrored)"``).
        """
        from ctbench.core.cache import cache_root
        from ctbench.data.streaming import case_batches

        key = f"{ctx.manifest.sha256}:{ctx.mirrored_training}"
        if self._index is not None and self._index[0] == key:
            return self._index[1]
        train = ctx.manifest.select("train")
        if not train:
            raise ValueError(f"{ctx.manifest.root}: memorisation needs a non-empty train split")
        ids = [c.id for c in train]
        views = [lambda x: x]
        fields: dict[str, Any] = {"manifest_sha256": ctx.manifest.sha256, "split": "train"}
        if ctx.mirrored_training:
            ids += [f"{i} (mirrored)" for i in ids]
            views.append(lambda x: x.flip(-1))  # W: the patient's left-right axis
            fields["mirrored"] = True
        index = load_or_build_index(
            ids,
            lambda: (view(x) for view in views for _, _, x in case_batches(train, desc="memorisation: train index")),
            fields,
            cache_root() / "memorisation" if ctx.cache else None,
        )
        self._index = (key, index)
        return index

    def accumulator(self, ctx: RunContext) -> MemorisationAudit:
        return MemorisationAudit(self.train_index(ctx), self.keep_worst)

    def reference_accumulator(self, ctx: RunContext) -> NearestCorrelation:
        return NearestCorrelation(self.train_index(ctx))

    def reference(self, ctx: RunContext, real: Accumulator | None) -> np.ndarray:
        assert isinstance(real, NearestCorrelation)
        return np.array([real.corr[i] for i in sorted(real.corr)])

    def score(self, fake: Accumulator, reference: np.ndarray, ctx: RunContext) -> dict[str, MetricValue]:
        assert isinstance(fake, MemorisationAudit)
        self._held_out = reference
        return audit_values(np.array([fake.corr[i] for i in sorted(fake.corr)]), reference)

    def artifacts(self, fake: Accumulator, ctx: RunContext, stem: str, label: str) -> dict[str, Any]:
        """``<stem>.memorisation.png``: the samples nearest a training scan beside that scan, the flagged ones
        marked, with the threshold (the highest held-out scan's correlation) in the title."""
        from ctbench.data.prepared import read_volume
        from ctbench.figures import pairs_figure

        assert isinstance(fake, MemorisationAudit)
        if ctx.out_dir is None or not fake.worst:
            return {}
        train = ctx.manifest.select("train")
        threshold = float(np.max(self._held_out)) if len(self._held_out) else None
        flagged = [threshold is not None and p.corr > threshold for p in fake.worst]

        def train_volume(i: int) -> torch.Tensor:
            v = torch.from_numpy(read_volume(train[i % len(train)].path))[None]
            return v.flip(-1) if i >= len(train) else v  # the mirrored half of the index

        def train_label(i: int) -> str:
            return f"train {train[i % len(train)].id}" + (" (mirrored)" if i >= len(train) else "")

        pairs = [
            (f"sample {p.sample_index} (r={p.corr:.3f})", p.volume, train_label(p.train_index),
             train_volume(p.train_index))
            for p in fake.worst
        ]
        if threshold is None:
            rule = "no held-out scans: nothing can be flagged"
        else:
            total = sum(r > threshold for r in fake.corr.values())
            rule = (f"flagged: r > {threshold:.3f}, the highest r of {len(self._held_out)} held-out real scans "
                    f"({sum(flagged)} of the {len(pairs)} shown; {total} in all)")
        fig = pairs_figure(pairs, ctx.out_dir / f"{stem}.memorisation.png", flagged=flagged, note=rule,
                           title=f"{label}: the samples nearest a training scan (r: correlation with it)")
        return {
            "memorisation_pairs": fig.name,
            "memorisation_worst": [
                {"sample": p.sample_index, "train_case": train[p.train_index % len(train)].id,
                 "mirrored": p.train_index >= len(train), "corr": p.corr}
                for p in fake.worst
            ],
        }

