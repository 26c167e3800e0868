"""The :class:`~ctbench.metrics.base.MetricValue` of a feature metric's key: value, N, interval and how it was
made, and the record notes (Fréchet, bias-corrected Fréchet, kernel)."""

from __future__ import annotations

from ctbench.metrics.base import MetricValue
from ctbench.metrics.frechet import FrechetEstimate
from ctbench.metrics.kernel import KernelEstimate

INTERVAL_METHOD = "grouped jackknife over generated volumes (K groups, i % K), 95% normal; real side fixed"

UNBIASED_METHOD = (
    "grouped jackknife bias correction K*value - (K-1)*mean(leave-one-group-out values) +- 1.96 se_jackknife "
    "(K groups, i % K), 95% normal, not clipped at 0; real side fixed"
)

KERNEL_METHOD = (
    "grouped jackknife over generated volumes (K groups, i % K) of the subset-mean unbiased MMD^2, 95% normal, "
    "not clipped; real side fixed"
)


def kernel_note(estimate: KernelEstimate, what: str) -> str:
    """The record note of a kernel value: the rows used (``what``: slices, volumes), the draws, the replicates."""
    m, n = estimate.sizes
    drawn = (f"mean of {estimate.subsets} seeded subsets of {m} generated / {n} real {what}"
             if estimate.subsets > 1 else f"every row: {m} generated / {n} real {what}")
    return f"{drawn}; " + (f"jackknife replicates={len(estimate.replicates)}" if estimate.replicates
                           else "interval needs >= 2 groups")


def kernel_value(estimate: KernelEstimate, common: dict, note: str) -> MetricValue:
    """One kernel key's :class:`MetricValue`: value, N, 95% interval (not clipped) and ``note``."""
    interval = estimate.interval()
    return MetricValue(
        value=float(estimate.value),
        n=int(estimate.n),
        interval=interval,
        interval_method=KERNEL_METHOD if interval is not None else None,
        note=note,
        **common,
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
