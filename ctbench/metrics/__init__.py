"""Metrics: one contract (:mod:`ctbench.metrics.contract`), one registry (:mod:`ctbench.metrics.registry`).

>>> m = get_metric("fid")              # m.name, m.version, m.keys (Key: direction, units, description)
>>> m.check_ready()                    # raises MetricUnavailable before any work if weights are missing

Metric modules are imported when first asked for, so ``from ctbench.metrics.base import MetricValue``
(used everywhere) stays light and free of import cycles.
"""

from __future__ import annotations

from ctbench.core.errors import MetricUnavailable
from ctbench.metrics.base import MetricValue
from ctbench.metrics.contract import Accumulator, Key, Metric, RunContext
from ctbench.metrics.registry import METRICS, BrokenMetricError, get_metric, list_metrics

__all__ = [
    "METRICS",
    "Accumulator",
    "BrokenMetricError",
    "Key",
    "Metric",
    "MetricUnavailable",
    "MetricValue",
    "RunContext",
    "get_metric",
    "list_metrics",
]
