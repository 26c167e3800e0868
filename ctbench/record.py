"""The result record: one JSON file per evaluation run, its JSON Schema, builder, writer, reader and validator.

A record holds everything needed to interpret and to rerun a run::

    schema_version, ctbench_version, run_id, created_at
    generator:  name, variant, spec, overrides, config, config_hash, checkpoint, checkpoint_sha256,
                plugin_package, plugin_version, version, parameters   (or source "samples" + samples_dir)
    protocol:   name, version, sha256, manifest_sha256, split, reference_n, train_n, generated_hu_range
    sampling:   n, seed, scheme ("seed+i"), batch_size, world_size
    metric_specs: {metric: version, options, weights, keys, plugin_package, plugin_version}
    metrics:    {key: MetricValue.to_dict()}   value None = missing, never 0
    skipped:    {metric: reason}
    artifacts:  {montage, memorisation_pairs, samples_dir}  (paths relative to the record's folder)
    env:        python, torch, cuda, device, git_commit, git_dirty, ...
    timing:     sample_s, metric_s, total_s, per metric
    command:    argv and the resolved evaluation options (``ctbench evaluate --rerun RECORD`` uses them)
"""

from __future__ import annotations

import json
import uuid
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctbench import __version__
from ctbench.core.atomic import write_text_atomic
from ctbench.core.errors import CtbenchError
from ctbench.metrics.base import MetricValue
from ctbench.schemas import problems, schema

if TYPE_CHECKING:
    from ctbench.data.prepared import Manifest
    from ctbench.metrics.contract import Metric
    from ctbench.protocol import Protocol

SCHEMA_VERSION = 2
"""2 added ``metric_specs``; records of version 1 are still read."""
RECORD_KIND = "ctbench.result"


class RecordError(CtbenchError, ValueError):
    """A file that is not a valid ctbench result record; the message names the file and the problem."""


def record_schema() -> dict[str, Any]:
    """The published JSON Schema of result records (``ctbench/schemas/record.schema.json``)."""
    return schema("record")


def validate_record(record: Any, source: str | Path = "<record>") -> dict[str, Any]:
    """Check a parsed record against the JSON Schema; returns it unchanged or raises :class:`RecordError`."""
    if not isinstance(record, dict) or record.get("kind") != RECORD_KIND:
        raise RecordError(f'{source}: not a ctbench result record (no "kind": "{RECORD_KIND}")')
    version = record.get("schema_version")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise RecordError(f"{source}: schema_version {version} is newer than this ctbench ({SCHEMA_VERSION}); upgrade")
    found = problems(record, "record")
    if found:
        raise RecordError(f"{source}: invalid result record: " + "; ".join(found))
    return record


def build_record(
    *,
    run_id: str,
    generator: dict[str, Any],
    protocol: Protocol,
    manifest: Manifest,
    split: str,
    reference_n: int,
    train_n: int,
    generated_hu_range: tuple[float, float],
    sampling: dict[str, Any],
    metrics: dict[str, Metric],
    values: dict[str, MetricValue],
    skipped: dict[str, str],
    artifacts: dict[str, Any],
    env: dict[str, Any],
    timing: dict[str, float],
    command: dict[str, Any],
) -> dict[str, Any]:
    """The record of one run, in the shape the schema publishes (``metrics`` are the metric objects that ran)."""
    from ctbench.metrics.registry import METRICS

    specs = {}
    for name, m in metrics.items():
        st = METRICS.status(name)
        specs[name] = {
            "version": m.version,
            "options": m.options(),
            "weights": list(m.weights),
            "keys": list(m.key_names()),
            "plugin_package": st.package,
            "plugin_version": st.package_version,
        }
    return {
        "kind": RECORD_KIND,
        "schema_version": SCHEMA_VERSION,
        "ctbench_version": __version__,
        "run_id": run_id,
        "uuid": uuid.uuid4().hex,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "generator": generator,
        "protocol": {
            "name": protocol.name,
            "version": protocol.version,
            "sha256": protocol.sha256,
            "manifest_sha256": manifest.sha256,
            "data_dir": str(Path(manifest.root).resolve()),
            "split": split,
            "reference_n": reference_n,
            "train_n": train_n,
            "generated_hu_range": list(generated_hu_range),
        },
        "sampling": sampling,
        "metric_specs": specs,
        "metrics": {k: v.to_dict() for k, v in values.items()},
        "skipped": skipped,
        "artifacts": artifacts,
        "env": env,
        "timing": timing,
        "command": command,
    }


def write_record(record: dict[str, Any], out_dir: str | Path) -> Path:
    """Validate and write ``record`` atomically to ``out_dir/<run_id>.json``; returns the path."""
    validate_record(record)
    path = Path(out_dir) / f"{record['run_id']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(record, indent=2, sort_keys=False, allow_nan=False) + "\n")
    return path


def read_record(path: str | Path) -> dict[str, Any]:
    """Read and validate one record; raises :class:`RecordError` naming the file for bad JSON or schema."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path}: cannot read as JSON: {exc}") from None
    return validate_record(record, path)


def read_records(folder: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every valid record under ``folder`` (recursively, sorted by path); others are skipped with a warning."""
    out = []
    for path in sorted(Path(folder).rglob("*.json")):
        try:
            out.append((path, read_record(path)))
        except RecordError as exc:
            warnings.warn(f"skipped: {exc}", stacklevel=2)
    return out


def metric_values(record: dict[str, Any]) -> dict[str, MetricValue]:
    """The record's metrics as :class:`MetricValue` objects."""
    return {k: MetricValue.from_dict(v) for k, v in record["metrics"].items()}
