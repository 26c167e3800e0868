"""Evaluate a generator: sample → features and weight-free metrics → result record (+ montage figures).

``evaluate(EvalOptions(...))`` is what ``ctbench evaluate`` runs; :class:`EvalOptions` holds every default,
for the CLI and the Python API alike. Under ``torchrun`` each rank samples its contiguous share of the sample
indices (sample i is still seeded by (seed, i)), the feature statistics and weight-free metric states are
gathered on rank 0, and rank 0 writes the record.

Samples are compared with the reference split (``test`` by default) of a prepared folder; the memorisation
audit compares both with the ``train`` split. Generated volumes carry no HU pair of their own: they are read
as HU with :func:`generated_hu_range` (the median training (lo, hi)), both when saved as NIfTI and in the
intensity metric.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ctbench import __version__
from ctbench.api import REGISTRY, LoadContext, UnknownNameError, check_info, check_samples, parse_spec, plugin_errors
from ctbench.data.prepared import Manifest, PreparedCase, cases, file_sha256, load_manifest, read_volume
from ctbench.env import environment
from ctbench.figures import pairs_figure, triplanar_montage
from ctbench.metrics.base import MetricUnavailable, MetricValue
from ctbench.metrics.diversity import diversity_value
from ctbench.metrics.intensity import HUHistogram, intensity_value
from ctbench.metrics.memorisation import MemorisationAudit, audit_values, load_or_build_index
from ctbench.progress import progress_bar
from ctbench.protocol import Protocol, get_protocol
from ctbench.record import RECORD_KIND, SCHEMA_VERSION, read_record, write_record
from ctbench.weights import cache_root

FEATURE_METRICS = ("fid", "fvd")
WEIGHT_FREE_METRICS = ("diversity", "intensity", "memorisation")
ALL_METRICS = FEATURE_METRICS + WEIGHT_FREE_METRICS
SAMPLING_SCHEME = "seed+i"
"""Sample i draws its randomness from ``ctbench.seeding.sample_generator(seed, i)``."""


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
    """None: every metric that can run here (FID/FVD skipped with the reason when weights are missing).
    A list: exactly these, and a metric that cannot run is an error before any sampling."""
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
    """Constructor options per feature metric, e.g. ``{"fid": {"slice_step": 8}}`` (Python API; tests). Part of
    the run id; a metric that says its result is not comparable (FID with slice_step > 1) says so in its note."""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("data", "samples", "checkpoint", "out"):
            if d[key] is not None:
                d[key] = str(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalOptions:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class EvaluationError(RuntimeError):
    """An evaluation that cannot start or finish; the message says why and what to do."""


# ----------------------------------------------------------------------------------------- helpers


def generated_hu_range(manifest: Manifest) -> tuple[float, float]:
    """The (lo, hi) HU pair used for generated volumes: the median of the training cases' pairs."""
    train = manifest.select("train") or manifest.select(None)
    if not train:
        raise EvaluationError(f"{manifest.root}: the prepared folder has no finished cases")
    los, his = zip(*(c.hu_range for c in train), strict=True)
    return float(np.median(los)), float(np.median(his))


def shard(n: int, rank: int, world: int) -> range:
    """Contiguous share of ``range(n)`` for ``rank`` of ``world`` (the first ``n % world`` ranks get one more)."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def _dist() -> tuple[int, int]:
    """(rank, world size), initialising the default process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _gather(obj: Any, world: int) -> list[Any]:
    if world == 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def _gather_audit(audit: MemorisationAudit | None, world: int) -> list[MemorisationAudit | None]:
    """Gather audits without sending the training index (every rank built the same one)."""
    if audit is None or world == 1:
        return [audit] * world
    index, audit.index = audit.index, None
    try:
        return _gather(audit, world)
    finally:
        audit.index = index


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+@-]+", "-", text).strip("-")[:60] or "run"


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def plan_metrics(opts: EvalOptions) -> tuple[list[str], dict[str, str]]:
    """(metrics to compute, skipped metric → reason). Raises before any work if a requested metric cannot run."""
    requested = list(opts.metrics) if opts.metrics else list(ALL_METRICS)
    for name in requested:
        if name not in ALL_METRICS:
            raise UnknownNameError(name, list(ALL_METRICS), kind="metric")
    run, skipped = [], {}
    for name in requested:
        if name in FEATURE_METRICS:
            from ctbench.metrics import get_metric

            try:
                get_metric(name, **opts.metric_options.get(name, {})).check_ready(unverified_ok=opts.unverified_weights)
            except MetricUnavailable as exc:
                if opts.metrics:
                    raise EvaluationError(f"metric {name!r} was requested but cannot run: {exc}") from exc
                skipped[name] = str(exc)
                continue
        run.append(name)
    return run, skipped


# ----------------------------------------------------------------------------------------- sources


class _Source:
    """Where samples come from: a generator plugin or a folder of NIfTI files."""

    def __init__(self, opts: EvalOptions, manifest: Manifest, protocol: Protocol, hu_range: tuple[float, float]):
        self.opts = opts
        self.protocol = protocol
        self.hu_range = hu_range
        self.files: list[Path] = []
        self.generator = None
        if bool(opts.generator) == bool(opts.samples):
            raise EvaluationError("give exactly one of a generator (--generator NAME[@VARIANT]) or --samples DIR")
        if opts.samples:
            folder = Path(opts.samples)
            self.files = sorted(p for p in folder.glob("*.nii*") if p.name.endswith((".nii", ".nii.gz")))
            if not self.files:
                raise EvaluationError(f"{folder}: no .nii or .nii.gz files to score")
            if opts.n > len(self.files):
                raise EvaluationError(f"{folder}: --n {opts.n} but only {len(self.files)} NIfTI files")
            self.block = {
                "source": "samples",
                "name": "samples:" + folder.name,
                "variant": "default",
                "samples_dir": str(folder.resolve()),
                "config": {},
                "config_hash": _hash(sorted(file_sha256(p) for p in self.files[: opts.n])),
            }
        else:
            name, _ = parse_spec(opts.generator)
            context = LoadContext(device=torch.device(opts.device), data_dir=manifest.root, protocol=protocol)
            ckpt = Path(opts.checkpoint) if opts.checkpoint else None
            if ckpt is not None and not ckpt.exists():
                raise EvaluationError(f"{ckpt}: checkpoint not found")
            self.generator = REGISTRY.load(opts.generator, ckpt, overrides=opts.overrides, context=context)
            with plugin_errors(name, "info"):
                info = check_info(self.generator.info(), name)
            st = REGISTRY.status(name)
            self.block = {
                "source": "generator",
                "spec": opts.generator,
                "name": info.name,
                "variant": info.variant,
                "version": info.version,
                "overrides": info.overrides or opts.overrides,
                "config": info.config,
                "config_hash": info.config_hash,
                "parameters": info.parameters,
                "checkpoint": str(ckpt.resolve()) if ckpt else None,
                "checkpoint_sha256": info.checkpoint_sha256 or (file_sha256(ckpt) if ckpt and ckpt.is_file() else None),
                "plugin_package": info.plugin_package or st.package,
                "plugin_version": info.plugin_version or st.package_version,
            }

    @property
    def label(self) -> str:
        b = self.block
        return b["name"] if b["source"] == "samples" else f"{b['name']}@{b['variant']}"

    def batch(self, indices: range) -> torch.Tensor:
        """Samples ``indices`` as ``(len, 1, 64, 128, 128)`` float32 in [-1, 1], validated."""
        if self.generator is None:
            return torch.from_numpy(np.stack([self._read(self.files[i]) for i in indices]))[:, None]
        opts = self.opts
        with plugin_errors(self.label, "sample"):
            x = self.generator.sample(len(indices), opts.seed, offset=indices.start, batch_size=opts.batch_size)
        return check_samples(x, len(indices), self.label, self.protocol)

    def _read(self, path: Path) -> np.ndarray:
        import nibabel as nib

        from ctbench.data.prepared import from_hu

        try:
            img = nib.load(path)
            hu = np.asarray(img.dataobj, dtype=np.float32)
        except Exception as exc:
            raise EvaluationError(f"{path}: cannot read NIfTI ({exc})") from exc
        if hu.shape != (128, 128, 64):
            raise EvaluationError(f"{path}: shape {hu.shape}, expected RAS (x, y, z) = (128, 128, 64)")
        if not np.isfinite(hu).all():
            raise EvaluationError(f"{path}: NaN or infinite values")
        return from_hu(hu, *self.hu_range).transpose(2, 1, 0)


# ----------------------------------------------------------------------------------------- evaluate


def _real_batches(
    items: list[PreparedCase], batch: int, desc: str
) -> Iterator[tuple[list[PreparedCase], torch.Tensor]]:
    for s in progress_bar(range(0, len(items), batch), desc=desc, unit="batch", leave=False):
        chunk = items[s : s + batch]
        yield chunk, torch.from_numpy(np.stack([read_volume(c.path) for c in chunk]))[:, None]


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
    return f"{_slug(label)}-n{opts.n}-s{opts.seed}-{_hash(key)[:10]}"


class _Streams:
    """What the metrics need from the generated samples, filled batch by batch and merged across ranks.

    Feature accumulators (FID/FVD statistics), the HU histogram, the memorisation audit, and the first
    ``keep`` volumes (for MS-SSIM and the montage), keyed by sample index.
    """

    def __init__(self, accs: dict[str, Any], hist: HUHistogram | None, audit: MemorisationAudit | None, keep: int):
        self.accs, self.hist, self.audit, self.keep = accs, hist, audit, keep
        self.kept: dict[int, torch.Tensor] = {}
        self.fake_stats: dict[str, Any] = {}

    def update(self, x: torch.Tensor, idx: range, hu_range: tuple[float, float]) -> None:
        """Add samples ``idx`` = ``x`` ``(len(idx), 1, D, H, W)`` in [-1, 1]."""
        for acc in self.accs.values():
            acc.update(x)
        if self.hist is not None:
            self.hist.update(x, [hu_range] * len(idx))
        if self.audit is not None:
            self.audit.update(x, list(idx))
        for k, i in enumerate(idx):
            if i < self.keep:
                self.kept[i] = x[k].clone()

    def gather(self, rank: int, world: int) -> bool:
        """Collect every rank's state on rank 0 (returns True there); feature statistics merge exactly."""
        stats = {m: _gather(acc.result(), world) for m, acc in self.accs.items()}
        hists = _gather(self.hist, world)
        audits = _gather_audit(self.audit, world)
        kepts = _gather(self.kept, world)
        if rank != 0:
            return False
        for m, parts in stats.items():
            merged = parts[0]
            for other in parts[1:]:
                merged = merged.merge(other)
            self.fake_stats[m] = merged
        for other in hists[1:]:
            self.hist.merge(other)
        for other in audits[1:]:
            self.audit.merge(other)
        for other in kepts[1:]:
            self.kept.update(other)
        return True

    @property
    def kept_volumes(self) -> list[torch.Tensor]:
        return [self.kept[i] for i in sorted(self.kept)]


def _sample(
    opts: EvalOptions,
    source: _Source,
    streams: _Streams,
    mine: range,
    samples_dir: Path,
    *,
    hu_range: tuple[float, float],
    protocol: Protocol,
    show: bool,
) -> float:
    """Sample this rank's indices batch by batch into ``streams``; returns seconds spent sampling (or reading)."""
    from ctbench.data.prepared import write_volume

    seconds = 0.0
    with progress_bar(total=len(mine), desc=f"sampling {source.label}", unit="vol", enabled=show) as bar:
        for s in range(mine.start, mine.stop, opts.batch_size):
            idx = range(s, min(s + opts.batch_size, mine.stop))
            paths = [samples_dir / f"sample_{i:05d}.nii.gz" for i in idx]
            t = time.perf_counter()
            if opts.save_samples and all(p.exists() for p in paths):  # resuming an interrupted run
                x = torch.from_numpy(np.stack([read_volume(p) for p in paths]))[:, None]
            else:
                x = source.batch(idx)
                if opts.save_samples:
                    for p, v in zip(paths, x, strict=True):
                        write_volume(p, v[0], hu_range=hu_range, protocol=protocol)
            seconds += time.perf_counter() - t
            streams.update(x, idx, hu_range)
            bar.update(len(idx))
    return seconds


def _reference_side(
    reference: list[PreparedCase], streams: _Streams, body_threshold_hu: float, split: str
) -> tuple[HUHistogram, list[float], list[tuple[str, torch.Tensor]]]:
    """Read the reference split once: its HU histogram, nearest-train correlations, first volumes kept."""
    hist = HUHistogram(body_threshold_hu)
    corr: list[float] = []
    kept: list[tuple[str, torch.Tensor]] = []
    for chunk, x in _real_batches(reference, 8, f"reference split {split}"):
        if streams.hist is not None:
            hist.update(x, [c.hu_range for c in chunk])
        if streams.audit is not None:
            corr += streams.audit.index.nearest(x)[0].tolist()
        kept += [(c.id, v.clone()) for c, v in zip(chunk, x, strict=True)][: max(0, streams.keep - len(kept))]
    return hist, corr, kept


def _figures(
    opts: EvalOptions,
    run_id: str,
    label: str,
    streams: _Streams,
    real_kept: list[tuple[str, torch.Tensor]],
    train: list[PreparedCase],
) -> dict[str, Any]:
    """The montage and memorisation PNGs beside the record; returns the record's ``artifacts`` entries."""
    out_dir, artifacts = Path(opts.out), {}
    audit = streams.audit
    if audit is not None and audit.worst:
        pairs = [
            (
                f"sample {p.sample_index} (r={p.corr:.3f})",
                p.volume,
                f"train {train[p.train_index].id}",
                torch.from_numpy(read_volume(train[p.train_index].path))[None],
            )
            for p in audit.worst
        ]
        fig = pairs_figure(pairs, out_dir / f"{run_id}.memorisation.png", title=f"{label}: nearest training scans")
        artifacts["memorisation_pairs"] = fig.name
        artifacts["memorisation_worst"] = [
            {"sample": p.sample_index, "train_case": train[p.train_index].id, "corr": p.corr} for p in audit.worst
        ]
    k = opts.montage_volumes
    if k > 0:
        fig = triplanar_montage(
            [
                (label, streams.kept_volumes[:k], [f"#{i}" for i in sorted(streams.kept)[:k]]),
                (f"real ({opts.split})", [v for _, v in real_kept[:k]], [cid for cid, _ in real_kept[:k]]),
            ],
            out_dir / f"{run_id}.montage.png",
            title=f"{label} vs real, seed {opts.seed}",
        )
        artifacts["montage"] = fig.name
    return artifacts


def evaluate(opts: EvalOptions, argv: list[str] | None = None) -> Path | None:
    """Run one evaluation; returns the record path on rank 0 (``None`` on other ranks).

    If a record with the same run id exists in ``opts.out`` and ``opts.force`` is false, nothing is recomputed
    and its path is returned (resuming a batch of runs). With ``save_samples``, sample files already on disk
    from an interrupted run of the same id are read back instead of sampled again.
    """
    t_start = time.perf_counter()
    if opts.n < 1:
        raise EvaluationError(f"--n must be at least 1, got {opts.n}")
    if opts.batch_size < 1:
        raise EvaluationError(f"--batch-size must be at least 1, got {opts.batch_size}")
    if opts.montage_volumes < 0:
        raise EvaluationError(f"--montage-volumes must be 0 or more, got {opts.montage_volumes}")
    manifest = load_manifest(opts.data)
    protocol = get_protocol(manifest.protocol["name"])
    manifest.check_protocol(protocol)
    metrics, skipped = plan_metrics(opts)
    if "diversity" in metrics and opts.diversity_volumes < 2:
        raise EvaluationError(f"--diversity-volumes must be at least 2, got {opts.diversity_volumes}")
    rank, world = _dist()
    hu_range = generated_hu_range(manifest)
    source = _Source(opts, manifest, protocol, hu_range)
    run_id = run_id_for(opts, source.block, manifest.sha256, metrics)
    out_dir = Path(opts.out)
    record_path = out_dir / f"{run_id}.json"
    if record_path.exists() and not opts.force:
        if rank == 0:
            tqdm.write(f"{record_path} exists: skipping (use --force to evaluate again)")
        return record_path if rank == 0 else None
    if rank == 0:
        _check_writable(out_dir)
    reference = cases(manifest.root, opts.split)
    if not reference:
        raise EvaluationError(f"{manifest.root}: reference split {opts.split!r} is empty")
    train = cases(manifest.root, "train")

    from ctbench.metrics import get_metric

    feature = {m: get_metric(m, **opts.metric_options.get(m, {})) for m in metrics if m in FEATURE_METRICS}
    audit = None
    if "memorisation" in metrics:
        if not train:
            raise EvaluationError(f"{manifest.root}: memorisation needs a non-empty train split")
        index = load_or_build_index(
            [c.id for c in train],
            lambda: (x for _, x in _real_batches(train, 8, "memorisation: train index")),
            {"manifest_sha256": manifest.sha256, "split": "train"},
            cache_root() / "memorisation" if opts.cache else None,
        )
        audit = MemorisationAudit(index)
    streams = _Streams(
        {m: fm.accumulator(device=opts.device, unverified_ok=opts.unverified_weights) for m, fm in feature.items()},
        HUHistogram(protocol.body_threshold_hu) if "intensity" in metrics else None,
        audit,
        keep=max(opts.diversity_volumes if "diversity" in metrics else 0, opts.montage_volumes),
    )
    samples_dir = out_dir / "samples" / run_id
    t = time.perf_counter()
    sample_s = _sample(
        opts, source, streams, shard(opts.n, rank, world), samples_dir,
        hu_range=hu_range, protocol=protocol, show=rank == 0,
    )  # fmt: skip
    timing: dict[str, float] = {"sample_s": round(sample_s, 3), "sampling_loop_s": round(time.perf_counter() - t, 3)}
    if not streams.gather(rank, world):
        return None

    values: dict[str, MetricValue] = {}
    for m, fm in feature.items():
        t = time.perf_counter()
        real = fm.reference(
            manifest.root, split=opts.split, device=opts.device, cache=opts.cache, unverified_ok=opts.unverified_weights
        )
        values.update(fm.score(streams.fake_stats[m], real))
        timing[f"{m}_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    real_hist, real_corr, real_kept = _reference_side(reference, streams, protocol.body_threshold_hu, opts.split)
    timing["reference_read_s"] = round(time.perf_counter() - t, 3)
    if "diversity" in metrics:
        t = time.perf_counter()
        k = opts.diversity_volumes
        values["ms_ssim"] = diversity_value(torch.stack(streams.kept_volumes[:k]))
        real_vols = torch.stack([v for _, v in real_kept[:k]])
        values["ms_ssim_real"] = diversity_value(real_vols, note=f"reference split {opts.split!r}")
        timing["diversity_s"] = round(time.perf_counter() - t, 3)
    if streams.hist is not None:
        values["intensity_w1"] = intensity_value(streams.hist, real_hist)
    if audit is not None:
        gen_corr = np.array([audit.corr[i] for i in sorted(audit.corr)])
        values.update(audit_values(gen_corr, np.asarray(real_corr)))
    artifacts: dict[str, Any] = {"samples_dir": str(samples_dir.relative_to(out_dir)) if opts.save_samples else None}
    artifacts.update(_figures(opts, run_id, source.label, streams, real_kept, train))
    timing["total_s"] = round(time.perf_counter() - t_start, 3)

    record = {
        "kind": RECORD_KIND,
        "schema_version": SCHEMA_VERSION,
        "ctbench_version": __version__,
        "run_id": run_id,
        "uuid": uuid.uuid4().hex,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "generator": source.block,
        "protocol": {
            "name": protocol.name,
            "version": protocol.version,
            "sha256": protocol.sha256,
            "manifest_sha256": manifest.sha256,
            "data_dir": str(Path(manifest.root).resolve()),
            "split": opts.split,
            "reference_n": len(reference),
            "train_n": len(train),
            "generated_hu_range": list(hu_range),
        },
        "sampling": {
            "n": opts.n,
            "seed": opts.seed,
            "scheme": SAMPLING_SCHEME,
            "batch_size": opts.batch_size,
            "world_size": world,
        },
        "metrics": {k: v.to_dict() for k, v in values.items()},
        "skipped": skipped,
        "artifacts": artifacts,
        "env": environment(opts.device),
        "timing": timing,
        "command": {"argv": list(argv) if argv is not None else None, "options": opts.to_dict()},
    }
    return write_record(record, out_dir)


def _check_writable(folder: Path) -> None:
    """Fail before any sampling when the results folder cannot be created or written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise EvaluationError(f"{folder}: results folder cannot be written ({exc.strerror or exc})") from exc


def rerun_options(record_path: str | Path, **changes: Any) -> EvalOptions:
    """The options that produced a record (``force`` set), with ``changes`` applied; for ``--rerun``."""
    record = read_record(record_path)
    try:
        opts = EvalOptions.from_dict(record["command"]["options"])
    except (KeyError, TypeError, ValueError) as exc:
        raise EvaluationError(f"{record_path}: the record's command.options cannot be rerun ({exc})") from exc
    return dataclasses.replace(opts, force=True, **changes)


def default_argv() -> list[str]:
    """The command line of this process, for the record (``ctbench evaluate ...``)."""
    return ["ctbench", *sys.argv[1:]] if sys.argv and sys.argv[0].endswith("ctbench") else list(sys.argv)
