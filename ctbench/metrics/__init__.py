"""The feature metrics (FID, FVD) and their registry.

>>> m = get_metric("fid")              # m.name, m.version, m.keys
>>> acc = m.accumulator(device="cpu")  # raises MetricUnavailable before any work if weights are missing

Metric modules are imported when first asked for, so ``from ctbench.metrics.base import MetricValue``
(used everywhere) stays light and free of import cycles.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ctbench.core.errors import MetricUnavailable
from ctbench.metrics.base import MetricValue

if TYPE_CHECKING:
    from ctbench.metrics.feature import FeatureMetric

_METRICS: dict[str, tuple[str, str]] = {
    "fid": ("ctbench.metrics.fid", "TriPlanarFID"),
    "fvd": ("ctbench.metrics.fvd", "FVD"),
}


def list_metrics() -> list[str]:
    """Names of the registered feature metrics."""
    return sorted(_METRICS)


def get_metric(name: str, **options: Any) -> FeatureMetric:
    """A metric by name; ``options`` go to its constructor (``groups``; FID: ``slice_step``, ``compile``, ``bf16``)."""
    try:
        module, attr = _METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(list_metrics())}") from None
    return getattr(importlib.import_module(module), attr)(**options)


__all__ = ["MetricUnavailable", "MetricValue", "get_metric", "list_metrics"]
