"""The Metric contract: what a metric declares once, and the three steps every metric runs.

A metric is a class that declares

* ``name``, ``version`` and its reported ``keys`` (:class:`Key`: direction, units, a one-line description,
  the real-side partner of a ``*_real`` key, the ranking priority),
* ``weights``: the ``ctbench weights`` entries it needs (empty for weight-free metrics),
* :meth:`Metric.options`: every option that changes its values (they enter the comparability key),

and implements three steps that :mod:`ctbench.evaluate` runs for every metric alike:

1. :meth:`Metric.accumulator` → an :class:`Accumulator` fed with the generated volumes batch by batch
   (each batch with its global sample indices and HU pairs), mergeable across ranks;
2. :meth:`Metric.reference`: the real side, built once per run, cached by content where it costs. A metric
   that wants the reference split's volumes returns an accumulator from :meth:`Metric.reference_accumulator`:
   the evaluation reads the split once for all such metrics and hands each its accumulator;
3. :meth:`Metric.score` → ``{key: MetricValue}`` with N, interval and flags.

``evaluate``, ``stats``, ``ls``, records and the leaderboard read metrics only through this contract and the
registry (:mod:`ctbench.metrics.registry`); third parties add metrics through the ``ctbench.metrics``
entry-point group.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch

from ctbench.metrics.base import MetricValue

if TYPE_CHECKING:
    from ctbench.data.prepared import Manifest
    from ctbench.protocol import Protocol

Direction = Literal["lower", "higher", "none"]


@dataclass(frozen=True)
class Key:
    """One reported number of a metric, as the leaderboard and ``ls`` show it."""

    name: str
    direction: Direction = "none"
    """Which way is better; ``none`` for values read against a partner (e.g. ``nn_corr`` vs ``nn_corr_real``)."""
    units: str = ""
    description: str = ""
    """One line for the leaderboard's glossary."""
    real_of: str | None = None
    """For a key describing the real reference volumes (``ms_ssim_real``): the generated-side key it goes with."""
    rank: int | None = None
    """Ranking priority (1 first) when a leaderboard group has this key for every row; None: never ranks."""
    integer: bool = False
    """A count (plots use integer ticks)."""
    n_independent: bool = False
    """The estimate's expectation does not depend on N (an unbiased estimator, such as KID, as the bias study in
    docs/benchmarks.md shows): the leaderboard ranks records at different N together on this key."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "direction": self.direction,
            "units": self.units,
            "description": self.description,
            "real_of": self.real_of,
            "rank": self.rank,
            "integer": self.integer,
            "n_independent": self.n_independent,
        }


@dataclass
class RunContext:
    """What a metric may use during one evaluation or reference computation.

    ``manifest`` and ``protocol`` are the prepared folder's; ``split`` the reference split; generated volumes
    are read as HU with ``generated_hu_range``; ``cache``: reuse and store cached reference data under
    ``$CTBENCH_CACHE``.
    """

    manifest: Manifest
    protocol: Protocol
    split: str = "test"
    device: str | torch.device = "cpu"
    cache: bool = True
    unverified_ok: bool = False
    batch_size: int | None = None
    generated_hu_range: tuple[float, float] = (-1000.0, 1000.0)
    out_dir: Path | None = None
    """Where a metric may write figures beside the record (None: no figures)."""
    mirrored_training: bool = False
    """The generator trained on left-right flipped volumes too (its record's ``augmentation`` has ``flip-lr``)."""


class Accumulator(ABC):
    """State of one side of a metric, fed batch by batch and mergeable across ranks."""

    @abstractmethod
    def update(self, volumes: torch.Tensor, indices: Sequence[int], hu_ranges: Sequence[tuple[float, float]]) -> None:
        """Add volumes ``(N, 1, D, H, W)`` float32 in [-1, 1] with their global sample indices and (lo, hi) HU pairs."""

    def state(self) -> Any:
        """What travels between ranks (picklable, no networks); by default the accumulator itself."""
        return self

    @abstractmethod
    def merge(self, state: Any) -> None:
        """Fold in another rank's :meth:`state`."""


class KeepFirst(Accumulator):
    """Keeps the volumes whose sample index is below ``limit`` (the first ``limit`` of a set), keyed by index."""

    def __init__(self, limit: int):
        self.limit = limit
        self.kept: dict[int, torch.Tensor] = {}

    def update(self, volumes: torch.Tensor, indices: Sequence[int], hu_ranges: Sequence[tuple[float, float]]) -> None:
        for k, i in enumerate(indices):
            if i < self.limit:
                self.kept[int(i)] = volumes[k].detach().clone()

    def merge(self, state: KeepFirst) -> None:
        self.kept.update(state.kept)

    def volumes(self) -> torch.Tensor:
        """The kept volumes ``(M, 1, D, H, W)`` in sample-index order."""
        return torch.stack([self.kept[i] for i in sorted(self.kept)])


class Metric(ABC):
    """Base class of every metric; subclasses set the class attributes and implement the three steps."""

    name: ClassVar[str]
    version: ClassVar[str]
    keys: ClassVar[tuple[Key, ...]]
    weights: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str] = ""
    """One line for ``ctbench ls`` and the docs."""

    def options(self) -> dict[str, Any]:
        """Options that change values: recorded with every value and part of the comparability key."""
        return {}

    def check_ready(self, unverified_ok: bool = False) -> None:  # noqa: B027 - most metrics are always ready
        """Raise :class:`~ctbench.core.errors.MetricUnavailable` (what is missing and how to fix it) before any work."""

    def comparability(self) -> dict[str, Any]:
        """What must agree between two records for their values of this metric to be compared."""
        return {"metric": self.name, "version": self.version, "options": self.options()}

    @classmethod
    def key_names(cls) -> tuple[str, ...]:
        return tuple(k.name for k in cls.keys)

    # -- the three steps
    @abstractmethod
    def accumulator(self, ctx: RunContext) -> Accumulator:
        """A fresh accumulator for the generated side (networks loaded on ``ctx.device``)."""

    def reference_accumulator(self, ctx: RunContext) -> Accumulator | None:
        """An accumulator to be fed the reference split's volumes, or None if :meth:`reference` needs none."""
        return None

    @abstractmethod
    def reference(self, ctx: RunContext, real: Accumulator | None) -> Any:
        """The real side; ``real`` is the fed :meth:`reference_accumulator` (None if it returned None)."""

    @abstractmethod
    def score(self, fake: Accumulator, reference: Any, ctx: RunContext) -> dict[str, MetricValue]:
        """``{key: MetricValue}`` for every key in :attr:`keys` (a value that cannot be computed is None + note)."""

    def artifacts(self, fake: Accumulator, ctx: RunContext, stem: str, label: str) -> dict[str, Any]:
        """Figures or tables written to ``ctx.out_dir`` beside the record (file names start with ``stem``)."""
        return {}
