"""Cross-layer errors: one base for user-facing errors; the metrics package re-exports MetricUnavailable."""

from ctbench.core.errors import CtbenchError, MetricUnavailable


def test_user_facing_errors_share_one_base_and_keep_their_builtin_kind():
    from ctbench.data import PrepareError, ScanError
    from ctbench.metrics import MetricUnavailable as reexported

    assert reexported is MetricUnavailable
    assert issubclass(MetricUnavailable, CtbenchError) and issubclass(MetricUnavailable, RuntimeError)
    assert issubclass(PrepareError, CtbenchError) and issubclass(PrepareError, RuntimeError)
    assert issubclass(ScanError, CtbenchError) and issubclass(ScanError, ValueError)
