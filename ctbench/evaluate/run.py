"""One evaluation: plan the metrics, sample into their accumulators, build the real side, score, write the record.

Samples are compared with the reference split (``test`` by default) of a prepared folder. Every metric runs
through the Metric contract (:mod:`ctbench.metrics.contract`); the reference split is read once for every
metric that wants its volumes.
"""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ctbench.core.distributed import init_distributed, shard
from ctbench.core.environment import environment
from ctbench.core.errors import MetricUnavailable
from ctbench.core.hashing import json_sha256
from ctbench.core.plugins import UnknownNameError
from ctbench.data.prepared import Manifest, load_manifest
from ctbench.data.streaming import case_batches
from ctbench.evaluate.figures import montage
from ctbench.evaluate.options import EvalOptions, EvaluationError, option_flags
from ctbench.evaluate.sources import SampleSource, generated_hu_range
from ctbench.evaluate.streams import Streams, sample_into
from ctbench.metrics.base import MetricValue
from ctbench.metrics.contract import Accumulator, KeepFirst, Metric, RunContext
from ctbench.metrics.registry import METRICS, BrokenMetricError
from ctbench.protocol import get_protocol
from ctbench.record import build_record, write_record

SAMPLING_SCHEME = "seed+i"
"""Sample i draws its randomness from ``ctbench.seeding.sample_generator(seed, i)``."""


def plan_metrics(opts: EvalOptions) -> tuple[dict[str, Metric], dict[str, str]]:
    """(metrics to compute by name, skipped metric → reason). Raises before any work if a named metric cannot run.

    Without ``opts.metrics`` every registered metric is tried, and those that cannot run here (weights missing,
    broken plugin) are skipped with the reason.
    """
    named = opts.metrics is not None and len(opts.metrics) > 0
    requested = list(opts.metrics) if opts.metrics else METRICS.names()
    for name, options in opts.metric_options.items():  # an option of a metric that is not run would only change
        if name not in requested:  # the run id
            given = option_flags(name, options)
            if name not in METRICS.names():
                raise EvaluationError(f"{given}: {UnknownNameError(name, METRICS.names(), 'metric')}")
            raise EvaluationError(
                f"{given}: metric {name!r} is not run (--metrics {','.join(requested)}); add it to --metrics or drop "
                "the option"
            )
    run: dict[str, Metric] = {}
    skipped: dict[str, str] = {}
    for name in requested:
        try:
            metric = METRICS.create(name, **opts.options_for(name))
            metric.check_ready(unverified_ok=opts.unverified_weights)
        except UnknownNameError as exc:
            raise EvaluationError(str(exc)) from None
        except (MetricUnavailable, BrokenMetricError) as exc:
            if named:
                raise EvaluationError(f"metric {name!r} was requested but cannot run: {exc}") from exc
            skipped[name] = str(exc)
            continue
        run[name] = metric
    return run, skipped


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+@-]+", "-", text).strip("-")[:60] or "run"


def run_id_for(opts: EvalOptions, generator_block: dict[str, Any], manifest_sha: str, metrics: list[str]) -> str:
    """Deterministic run id: the same generator, checkpoint, data, split, n, seed and metrics give the same id."""
    key = {
        "generator": [generator_block.get(k) for k in ("name", "variant", "config_hash", "checkpoint_sha256")],
        "manifest": manifest_sha,
        "split": opts.split,
        "n": opts.n,
        "seed": opts.seed,
        "metrics": sorted(metrics),
        "metric_options": opts.metric_options,
    }
    label = generator_block["name"] + (
        "" if generator_block["variant"] == "default" else "@" + generator_block["variant"]
    )
    return f"{_slug(label)}-n{opts.n}-s{opts.seed}-{json_sha256(key)[:10]}"


def _check_writable(folder: Path) -> None:
    """Fail before any sampling when the results folder cannot be created or written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise EvaluationError(f"{folder}: results folder cannot be written ({exc.strerror or exc})") from exc


def _read_reference(
    manifest: Manifest, split: str, real_accs: dict[str, Accumulator], keep: KeepFirst
) -> list[tuple[str, Any]]:
    """Read the reference split once into every metric's real-side accumulator; returns the kept (id, volume)s."""
    cases = manifest.select(split)
    ids: dict[int, str] = {}
    for idx, chunk, x in case_batches(cases, desc=f"reference split {split}"):
        ranges = [c.hu_range for c in chunk]
        for acc in real_accs.values():
            acc.update(x, idx, ranges)
        keep.update(x, idx, ranges)
        ids.update({i: c.id for i, c in zip(idx, chunk, strict=True)})
    return [(ids[i], keep.kept[i]) for i in sorted(keep.kept)]


def evaluate(opts: EvalOptions, argv: list[str] | None = None) -> Path | None:
    """Run one evaluation; returns the record path on rank 0 (``None`` on other ranks).

    If a record with the same run id exists in ``opts.out`` and ``opts.force`` is false, nothing is recomputed
    and its path is returned (resuming a batch of runs). With ``save_samples``, sample files already on disk
    from an interrupted run of the same id are read back instead of sampled again.
    """
    t_start = time.perf_counter()
    opts.check()
    manifest = load_manifest(opts.data)
    protocol = get_protocol(manifest.protocol["name"])
    manifest.check_protocol(protocol)
    metrics, skipped = plan_metrics(opts)
    rank, world = init_distributed()
    hu_range = generated_hu_range(manifest)
    source = SampleSource(opts, manifest, protocol, hu_range)
    run_id = run_id_for(opts, source.block, manifest.sha256, list(metrics))
    out_dir = Path(opts.out)
    record_path = out_dir / f"{run_id}.json"
    if record_path.exists() and not opts.force:
        if rank == 0:
            tqdm.write(f"{record_path} exists: skipping (use --force to evaluate again)")
        return record_path if rank == 0 else None
    if rank == 0:
        _check_writable(out_dir)
    reference_n = len(manifest.select(opts.split))
    if not reference_n:
        raise EvaluationError(f"{manifest.root}: reference split {opts.split!r} is empty")

    ctx = RunContext(
        manifest=manifest,
        protocol=protocol,
        split=opts.split,
        device=opts.device,
        cache=opts.cache,
        unverified_ok=opts.unverified_weights,
        generated_hu_range=hu_range,
        out_dir=out_dir,
        mirrored_training="flip-lr" in ((source.block.get("config") or {}).get("augmentation") or []),
    )
    try:
        streams = Streams({name: m.accumulator(ctx) for name, m in metrics.items()}, opts.montage_volumes)
    except ValueError as exc:
        raise EvaluationError(str(exc)) from exc
    samples_dir = out_dir / "samples" / run_id
    t = time.perf_counter()
    sample_s = sample_into(
        opts, source, streams, shard(opts.n, rank, world), samples_dir, protocol=protocol, show=rank == 0
    )
    timing: dict[str, float] = {"sample_s": round(sample_s, 3), "sampling_loop_s": round(time.perf_counter() - t, 3)}

    # the real side: metrics that read their own reference (cached, possibly sharded) run on every rank
    references: dict[str, Any] = {}
    real_accs: dict[str, Accumulator] = {}
    for name, m in metrics.items():
        t = time.perf_counter()
        acc = m.reference_accumulator(ctx)
        if acc is None:
            references[name] = m.reference(ctx, None)
        else:
            real_accs[name] = acc
        timing[f"{name}_s"] = round(time.perf_counter() - t, 3)
    if not streams.gather(rank, world):
        return None
    t = time.perf_counter()
    real_kept = _read_reference(manifest, opts.split, real_accs, KeepFirst(opts.montage_volumes))
    timing["reference_read_s"] = round(time.perf_counter() - t, 3)

    values: dict[str, MetricValue] = {}
    artifacts: dict[str, Any] = {"samples_dir": str(samples_dir.relative_to(out_dir)) if opts.save_samples else None}
    for name, m in metrics.items():
        t = time.perf_counter()
        fake = streams.accumulators[name]
        reference = references[name] if name in references else m.reference(ctx, real_accs[name])
        values.update(m.score(fake, reference, ctx))
        artifacts.update(m.artifacts(fake, ctx, run_id, source.label))
        timing[f"{name}_s"] = round(timing[f"{name}_s"] + time.perf_counter() - t, 3)
    if opts.montage_volumes > 0:
        artifacts["montage"] = montage(
            streams.montage.kept, real_kept, out_dir / f"{run_id}.montage.png",
            label=source.label, split=opts.split, seed=opts.seed,
        )  # fmt: skip
    timing["total_s"] = round(time.perf_counter() - t_start, 3)

    record = build_record(
        run_id=run_id,
        generator=source.block,
        protocol=protocol,
        manifest=manifest,
        split=opts.split,
        reference_n=reference_n,
        train_n=len(manifest.select("train")),
        generated_hu_range=hu_range,
        sampling={
            "n": opts.n,
            "seed": opts.seed,
            "scheme": SAMPLING_SCHEME,
            "batch_size": opts.batch_size,
            "world_size": world,
        },
        metrics=metrics,
        values=values,
        skipped=skipped,
        artifacts=artifacts,
        env=environment(opts.device),
        timing=timing,
        command={"argv": list(argv) if argv is not None else None, "options": opts.to_dict()},
    )
    return write_record(record, out_dir)
