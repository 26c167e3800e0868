"""Evaluate a generator: sample → every metric's accumulator → real side → scores → result record (+ figures).

``evaluate(EvalOptions(...))`` is what ``ctbench evaluate`` runs. The package is split by job:

* :mod:`~ctbench.evaluate.options`: :class:`EvalOptions` (every default, CLI and API alike), ``--rerun``;
* :mod:`~ctbench.evaluate.sources`: where samples come from (a generator plugin or a NIfTI folder);
* :mod:`~ctbench.evaluate.streams`: the generated side fed to the metrics' accumulators, merged across ranks;
* :mod:`~ctbench.evaluate.figures`: the montage beside the record;
* :mod:`~ctbench.evaluate.run`: the run itself; :func:`ctbench.record.build_record` owns the record's shape.

Names are imported when first used (torch and the metrics load only then), so ``ctbench evaluate --help``
starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ctbench.evaluate.options import EvalOptions, EvaluationError, default_argv, rerun_options
    from ctbench.evaluate.run import SAMPLING_SCHEME, evaluate, plan_metrics, run_id_for
    from ctbench.evaluate.sources import SampleSource, generated_hu_range

_EXPORTS = {
    "SAMPLING_SCHEME": "ctbench.evaluate.run",
    "EvalOptions": "ctbench.evaluate.options",
    "EvaluationError": "ctbench.evaluate.options",
    "SampleSource": "ctbench.evaluate.sources",
    "default_argv": "ctbench.evaluate.options",
    "evaluate": "ctbench.evaluate.run",
    "generated_hu_range": "ctbench.evaluate.sources",
    "plan_metrics": "ctbench.evaluate.run",
    "rerun_options": "ctbench.evaluate.options",
    "run_id_for": "ctbench.evaluate.run",
}

__all__ = [
    "SAMPLING_SCHEME",
    "EvalOptions",
    "EvaluationError",
    "SampleSource",
    "default_argv",
    "evaluate",
    "generated_hu_range",
    "plan_metrics",
    "rerun_options",
    "run_id_for",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ctbench.evaluate' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
