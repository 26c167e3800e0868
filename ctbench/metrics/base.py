"""What every metric returns (a metric that cannot run raises :class:`ctbench.core.errors.MetricUnavailable`).

Shared by the Fréchet metrics (FID, FVD) and the weight-free ones (diversity, intensity,
memorisation); :mod:`ctbench.record` writes :class:`MetricValue` into result records as it is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class MetricValue:
    """One reported number with its provenance. ``value`` None means missing, never zero."""

    value: float | None
    n: int | None = None
    """Samples behind the value (for tri-planar FID: slices per plane)."""
    interval: tuple[float, float] | None = None
    """Uncertainty interval (lo, hi), e.g. a 95% bootstrap interval."""
    interval_method: str | None = None
    extractor: str | None = None
    weights_sha256: str | None = None
    verified: bool = True
    """False when computed with weights whose sha256 does not match the pinned one."""
    rank_deficient: bool = False
    """True when a side (generated or real) has fewer samples than the feature dimension: the covariance is
    singular and the value strongly biased upwards (the note names the side and both numbers)."""
    metric_version: str = "1"
    note: str | None = None
    padding: dict[str, float | None] | None = None
    """FID/FVD/KID/KVD: fraction of the slices (video frames) behind the value that were pure padding, per side
    (``{"generated": 0.31, "real": 0.28}``); None for metrics without slices."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.interval is not None:
            d["interval"] = [float(self.interval[0]), float(self.interval[1])]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MetricValue:
        d = dict(d)
        if d.get("interval") is not None:
            d["interval"] = tuple(d["interval"])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})
