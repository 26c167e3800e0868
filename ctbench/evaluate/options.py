"""The options of an evaluation run, with every default in one place for the CLI and the Python API."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctbench.core.errors import CtbenchError


class EvaluationError(CtbenchError, RuntimeError):
    """An evaluation that cannot start or finish; the message says why and what to do."""


def option_flags(metric: str, options: dict[str, Any]) -> str:
    """How a user gave ``options`` of ``metric`` on the command line: ``--metric-option fid.groups, --slices``
    (``--slices`` sets ``fid.slices``)."""
    return ", ".join("--slices" if (metric, key) == ("fid", "slices") else f"--metric-option {metric}.{key}"
                     for key in options)


@dataclass
class EvalOptions:
    """Every option of an evaluation run, with the defaults the CLI shows. Paths may be str or Path."""

    data: str = ""
    """Prepared folder (``ctbench data prepare`` output)."""
    generator: str | None = None
    """``NAME[@VARIANT]`` of a registered plugin; exclusive with ``samples``."""
    samples: str | None = None
    """A folder of NIfTI volumes (HU, RAS 128×128×64) to score instead of a generator."""
    checkpoint: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    n: int = 64
    seed: int = 0
    metrics: list[str] | None = None
    """None: every registered metric that can run here (those whose weights are missing are skipped with the
    reason). A list: exactly these, and a metric that cannot run is an error before any sampling."""
    split: str = "test"
    """Reference split the samples are compared with."""
    out: str = "results"
    batch_size: int = 4
    device: str = "cpu"
    save_samples: bool = False
    unverified_weights: bool = False
    diversity_volumes: int = 32
    """At most this many volumes (the first ones) enter pairwise MS-SSIM, on each side."""
    montage_volumes: int = 4
    force: bool = False
    """Evaluate again even when a record with the same run id exists."""
    cache: bool = True
    """Reuse (and store) reference statistics and the memorisation training index under ``$CTBENCH_CACHE``."""
    metric_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Constructor options per metric, e.g. ``{"fid": {"slice_step": 8}}`` (Python API; tests). Part of the run
    id; a metric that says its result is not comparable (FID with slice_step > 1) says so in its note."""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("data", "samples", "checkpoint", "out"):
            if d[key] is not None:
                d[key] = str(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalOptions:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def check(self) -> None:
        """Raise :class:`EvaluationError` for values no run can use."""
        if self.n < 1:
            raise EvaluationError(f"--n must be at least 1, got {self.n}")
        if self.batch_size < 1:
            raise EvaluationError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.montage_volumes < 0:
            raise EvaluationError(f"--montage-volumes must be 0 or more, got {self.montage_volumes}")
        if bool(self.generator) == bool(self.samples):
            raise EvaluationError("give exactly one of a generator (--generator NAME[@VARIANT]) or --samples DIR")
        if self.samples and (self.checkpoint or self.overrides):
            given = "--checkpoint" if self.checkpoint else "--set"
            raise EvaluationError(f"{given} configures a generator; --samples {self.samples} scores files as they are")
        if self.metrics is not None:
            twice = sorted({m for m in self.metrics if self.metrics.count(m) > 1})
            if twice:
                raise EvaluationError(f"--metrics names {', '.join(twice)} more than once")

    def options_for(self, metric: str) -> dict[str, Any]:
        """Constructor options of ``metric`` for this run (``diversity`` takes ``diversity_volumes``)."""
        options = dict(self.metric_options.get(metric, {}))
        if metric == "diversity":
            if self.diversity_volumes < 2:
                raise EvaluationError(f"--diversity-volumes must be at least 2, got {self.diversity_volumes}")
            options.setdefault("volumes", self.diversity_volumes)
        return options


def rerun_options(record_path: str | Path, **changes: Any) -> EvalOptions:
    """The options that produced a record (``force`` set), with ``changes`` applied; for ``--rerun``."""
    from ctbench.record import read_record  # imported here: `ctbench evaluate --help` reads only EvalOptions

    record = read_record(record_path)
    try:
        opts = EvalOptions.from_dict(record["command"]["options"])
    except (KeyError, TypeError, ValueError) as exc:
        raise EvaluationError(f"{record_path}: the record's command.options cannot be rerun ({exc})") from exc
    return dataclasses.replace(opts, force=True, **changes)


def default_argv() -> list[str]:
    """The command line of this process, for the record (``ctbench evaluate ...``)."""
    return ["ctbench", *sys.argv[1:]] if sys.argv and sys.argv[0].endswith("ctbench") else list(sys.argv)
