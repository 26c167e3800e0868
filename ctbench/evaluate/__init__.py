"""Evaluate a generator: sample → every metric's accumulator → real side → scores → result record (+ figures).

``evaluate(EvalOptions(...))`` is what ``ctbench evaluate`` runs. The package is split by job:

* :mod:`~ctbench.evaluate.options`: :class:`EvalOptions` (every default, CLI and API alike), ``--rerun``;
* :mod:`~ctbench.evaluate.sources`: where samples come from (a generator plugin or a NIfTI folder);
* :mod:`~ctbench.evaluate.streams`: the generated side fed to the metrics' accumulators, merged across ranks;
* :mod:`~ctbench.evaluate.figures`: the montage beside the record;
* :mod:`~ctbench.evaluate.run`: the run itself; :func:`ctbench.record.build_record` owns the record's shape.
"""

from ctbench.evaluate.options import EvalOptions, EvaluationError, default_argv, rerun_options
from ctbench.evaluate.run import SAMPLING_SCHEME, evaluate, plan_metrics, run_id_for
from ctbench.evaluate.sources import SampleSource, generated_hu_range

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
