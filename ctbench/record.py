"""The result record: one JSON file per evaluation run, its schema, writer, reader and validator.

A record holds everything needed to interpret and to rerun a run::

    schema_version, ctbench_version, run_id, created_at
    generator:  name, variant, spec, overrides, config, config_hash, checkpoint, checkpoint_sha256,
                plugin_package, plugin_version, version, parameters   (or source "samples" + samples_dir)
    protocol:   name, version, sha256, manifest_sha256, split
    sampling:   n, seed, scheme ("seed+i"), batch_size, world_size
    metrics:    {key: MetricValue.to_dict()}   value None = missing, never 0
    skipped:    {metric: reason}
    artifacts:  {montage, memorisation_pairs, samples_dir}  (paths relative to the record's folder)
    env:        python, torch, cuda, device, git_commit, git_dirty, ...
    timing:     sample_s, metric_s, total_s, per metric
    command:    argv and the resolved evaluation options (``ctbench evaluate --rerun RECORD`` uses them)
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from ctbench.core.atomic import write_text_atomic
from ctbench.metrics.base import MetricValue

SCHEMA_VERSION = 1
RECORD_KIND = "ctbench.result"

_REQUIRED: dict[str, type] = {
    "kind": str,
    "schema_version": int,
    "ctbench_version": str,
    "run_id": str,
    "created_at": str,
    "generator": dict,
    "protocol": dict,
    "sampling": dict,
    "metrics": dict,
    "skipped": dict,
    "artifacts": dict,
    "env": dict,
    "timing": dict,
    "command": dict,
}
_REQUIRED_NESTED: dict[str, tuple[str, ...]] = {
    "generator": ("name", "variant", "config_hash"),
    "protocol": ("name", "version", "manifest_sha256", "split"),
    "sampling": ("n", "seed", "scheme"),
    "command": ("argv", "options"),
}


class RecordError(ValueError):
    """A file that is not a valid ctbench result record; the message names the file and the problem."""


def validate_record(record: Any, source: str | Path = "<record>") -> dict[str, Any]:
    """Check the schema of a parsed record; returns it unchanged or raises :class:`RecordError`."""
    if not isinstance(record, dict) or record.get("kind") != RECORD_KIND:
        raise RecordError(f'{source}: not a ctbench result record (no "kind": "{RECORD_KIND}")')
    problems = []
    for key, typ in _REQUIRED.items():
        if not isinstance(record.get(key), typ):
            problems.append(f"{key!r} missing or not {typ.__name__}")
    if record.get("schema_version", SCHEMA_VERSION) > SCHEMA_VERSION:
        problems.append(f"schema_version {record['schema_version']} is newer than this ctbench ({SCHEMA_VERSION})")
    for block, keys in _REQUIRED_NESTED.items():
        if isinstance(record.get(block), dict):
            problems += [f"{block}.{k} missing" for k in keys if k not in record[block]]
    for key, value in (record.get("metrics") or {}).items():
        if not isinstance(value, dict) or "value" not in value:
            problems.append(f"metrics.{key} has no 'value'")
        elif value["value"] is not None and not isinstance(value["value"], (int, float)):
            problems.append(f"metrics.{key}.value is not a number")
    if problems:
        raise RecordError(f"{source}: invalid result record: " + "; ".join(problems))
    return record


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
