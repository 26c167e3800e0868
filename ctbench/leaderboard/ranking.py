"""Result records → comparable groups of ranked rows (the writers in :mod:`ctbench.leaderboard.writers`).

Rules:

* Rows are grouped by protocol (name, version), prepared data (manifest sha256), reference split and the
  feature extractors' weights (sha256 of every weights file behind FID/FVD). Groups are never mixed; each
  group has its own table and plots. Records with no feature metric form their own "weight-free" group.
* A record with any metric computed from unverified weights is listed apart, below its group, unranked.
* A missing metric is ``—`` in Markdown and HTML and an empty cell in the CSV, never 0.
* Ranking within a group: by the first ranking key (``Key.rank``) every row has; lower is better. Rows
  missing it are listed after the ranked ones without a rank.
* Like with like: a value is comparable with another when the records agree on :func:`comparability` of its
  key: N (``sampling.n``; not for a key declared ``n_independent``, an unbiased estimate such as KID, which the
  bias study shows to be N-independent within its interval), the metric's version and its options
  (``metric_specs``). Rows whose comparability
  for the ranking key differs from the most common one in the group (ties: the larger N) are listed apart,
  unranked, each with the reason (``n = 64, the group ranks n = 256``); the group then carries a statement.
* ``against``: each row gains ``Δ metric = row − reference`` for the reference generator of the same group
  (not for the ``*_real`` columns, which describe the real volumes; a group without that generator is warned
  about), only where the two are comparable for that metric (else ``—``).
* Published figures (:mod:`ctbench.leaderboard.quoted`) sharing a key with a group are shown with it, never ranked.
* A ``*_real`` column shared by every row of a group is drawn as a reference line on its partner's plot.
"""

from __future__ import annotations

import difflib
import json
import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctbench.core.hashing import json_sha256
from ctbench.leaderboard.columns import column_order, lower_is_better, n_independent, rank_keys, real_partner
from ctbench.leaderboard.quoted import Quoted, quoted_for
from ctbench.record import read_records


@dataclass
class Row:
    """One record on the board."""

    label: str
    record: dict[str, Any]
    path: Path
    metrics: dict[str, dict[str, Any]]
    verified: bool
    rank: int | None = None
    delta: dict[str, float | None] = field(default_factory=dict)
    apart: str | None = None
    """Why the row is listed apart from the ranked ones (another N, metric version or options), else None."""

    def value(self, key: str) -> float | None:
        v = self.metrics.get(key, {}).get("value")
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    def interval(self, key: str) -> tuple[float, float] | None:
        iv = self.metrics.get(key, {}).get("interval")
        return (float(iv[0]), float(iv[1])) if iv else None


@dataclass
class Group:
    """Rows that may be compared: same protocol, data, split and extractor weights."""

    key: tuple
    title: str
    rows: list[Row] = field(default_factory=list)
    unverified: list[Row] = field(default_factory=list)
    apart: list[Row] = field(default_factory=list)
    """Verified rows not comparable with the ranked ones (each row's ``apart`` says why)."""
    mixed: str | None = None
    """A statement when the group's records differ in N (or the ranking metric's version or options)."""
    quoted: list[Quoted] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    rank_by: str | None = None
    plots: dict[str, str] = field(default_factory=dict)
    montages: dict[str, str] = field(default_factory=dict)
    audits: dict[str, str] = field(default_factory=dict)
    """Run label → the memorisation audit's worst-pairs figure (relative path)."""

    @property
    def slug(self) -> str:
        return "g" + json_sha256(list(self.key))[:10]


def row_label(record: dict[str, Any]) -> str:
    """``name@variant`` of a record's generator (``name`` for the default variant)."""
    g = record["generator"]
    return g["name"] if g.get("variant") in (None, "default") else f"{g['name']}@{g['variant']}"


def group_key(record: dict[str, Any]) -> tuple:
    """The comparability key of a record (see the module docstring)."""
    p = record["protocol"]
    weights = sorted(
        {
            (m.get("extractor") or "?", m["weights_sha256"])
            for m in record["metrics"].values()
            if m.get("weights_sha256")
        }
    )
    return (p["name"], p["version"], p["manifest_sha256"], p["split"], tuple(weights))


def _title(key: tuple) -> str:
    name, version, manifest, split, weights = key
    w = ", ".join(f"{e} {h[:8]}" for e, h in weights) if weights else "weight-free metrics only"
    return f"{name} {version} · data {manifest[:12]} · split {split} · weights: {w}"


def collect(results: str | Path, against: str | None = None) -> list[Group]:
    """Read every record under ``results`` (bad files skipped with a warning) into ranked groups."""
    groups: dict[tuple, Group] = {}
    for path, record in read_records(results):
        metrics = record["metrics"]
        verified = all(m.get("verified", True) for m in metrics.values())
        row = Row(row_label(record), record, path, metrics, verified)
        key = group_key(record)
        group = groups.setdefault(key, Group(key, _title(key)))
        (group.rows if verified else group.unverified).append(row)
    for group in groups.values():
        _name_samplers(group.rows + group.unverified)
        present = {k for r in group.rows + group.unverified for k in r.metrics}
        group.columns = column_order(present)
        _rank(group)
        group.quoted = quoted_for(group.columns)
        if against:
            _deltas(group, against)
    return sorted(groups.values(), key=lambda g: g.title)


def _name_samplers(rows: list[Row]) -> None:
    """Append ``(sampler)`` to the labels of rows that share a label but not a sampler (see the module docstring)."""
    def sampler(row: Row) -> str | None:
        return (row.record["generator"].get("config") or {}).get("sampler")

    by_label: dict[str, list[Row]] = {}
    for row in rows:
        by_label.setdefault(row.label, []).append(row)
    for same in by_label.values():
        if len({sampler(r) for r in same}) > 1:
            for r in same:
                r.label = f"{r.label} ({sampler(r) or 'sampler unknown'})"


def comparability(record: dict[str, Any], key: str) -> dict[str, Any]:
    """What two records must share for their values of ``key`` to be compared: N (None for an ``n_independent``
    key), metric and its version, options.

    From ``metric_specs`` (the metric whose keys include ``key``); a record without it (schema version 1)
    gives the value's ``metric_version`` and unknown (None) options.
    """
    n = None if n_independent(key) else record["sampling"]["n"]
    specs = record.get("metric_specs") or {}
    metric = next((name for name, spec in specs.items() if key in spec.get("keys", ())), None)
    if metric is None:
        version = record["metrics"].get(key, {}).get("metric_version")
        return {"n": n, "metric": None, "version": version, "options": None}
    spec = specs[metric]
    return {"n": n, "metric": metric, "version": spec["version"], "options": spec["options"]}


def _difference(row: dict[str, Any], ranked: dict[str, Any]) -> str:
    """Why ``row``'s comparability differs from the ranked one, in words (``n = 64, the group ranks n = 256``)."""
    reasons = []
    if row["n"] != ranked["n"]:
        reasons.append(f"n = {row['n']}, the group ranks n = {ranked['n']}")
    name = row["metric"] or ranked["metric"] or "metric"
    if row["version"] != ranked["version"]:
        reasons.append(f"{name} version {row['version']}, the group ranks version {ranked['version']}")
    if row["options"] != ranked["options"]:
        mine, theirs = row["options"] or {}, ranked["options"] or {}
        keys = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if row["options"] is None or ranked["options"] is None:
            reasons.append(f"{name} options not recorded on one side")
        else:
            ours = ", ".join(f"{k}={mine.get(k)}" for k in keys)
            other = ", ".join(f"{k}={theirs.get(k)}" for k in keys)
            reasons.append(f"{name} options {ours}, the group ranks {other}")
    return "; ".join(reasons) or "another metric setting"


def _split_apart(group: Group) -> None:
    """Move rows not comparable with the group's most common setting of the ranking key to ``group.apart``."""
    key = group.rank_by
    assert key is not None
    having = [r for r in group.rows if r.value(key) is not None]
    comps = {id(r): comparability(r.record, key) for r in having}
    counts = Counter(json.dumps(c, sort_keys=True) for c in comps.values())
    if len(counts) < 2:
        return
    best = max(counts, key=lambda c: (counts[c], json.loads(c)["n"] or 0, c))
    ranked = json.loads(best)
    for r in having:
        if json.dumps(comps[id(r)], sort_keys=True) != best:
            r.apart = _difference(comps[id(r)], ranked)
    group.apart = sorted((r for r in group.rows if r.apart), key=lambda r: (r.record["sampling"]["n"], r.label))
    group.rows = [r for r in group.rows if not r.apart]
    ns = Counter(comps[id(r)]["n"] for r in having)
    sizes = f" (sample sizes: {', '.join(f'n = {n} ×{c}' for n, c in sorted(ns.items()))})" if len(ns) > 1 else ""
    setting = ", ".join(
        ([f"n = {ranked['n']}"] if ranked["n"] is not None else [])
        + ([f"{ranked['metric']} version {ranked['version']}"] if ranked["metric"] else [])
    ) or "one setting"
    group.mixed = (
        f"Runs in this group are not all comparable on {key}{sizes}. Ranked: the {counts[best]} run(s) at "
        f"{setting}; {len(group.apart)} run(s) listed apart, unranked, with the reason."
    )


def _rank(group: Group) -> None:
    candidates = rank_keys()
    for key in candidates:
        if group.rows and all(r.value(key) is not None for r in group.rows):
            group.rank_by = key
            break
    else:
        group.rank_by = next((k for k in candidates if any(r.value(k) is not None for r in group.rows)), None)
    if group.rank_by is None:
        group.rows.sort(key=lambda r: r.label)
        return
    _split_apart(group)
    key, sign = group.rank_by, (1.0 if lower_is_better(group.rank_by) else -1.0)
    ranked = sorted((r for r in group.rows if r.value(key) is not None), key=lambda r: sign * (r.value(key) or 0.0))
    for i, r in enumerate(ranked, 1):
        r.rank = i
    group.rows = ranked + sorted((r for r in group.rows if r.rank is None), key=lambda r: r.label)


def delta_columns(columns: list[str]) -> list[str]:
    """The columns that get a Δ column: all but the real-side references."""
    return [c for c in columns if real_partner(c) is None]


def _deltas(group: Group, against: str) -> None:
    rows = group.rows + group.apart + group.unverified
    ref = next((r for r in rows if against in (r.label, r.record["generator"]["name"])), None)
    if ref is None:
        names = sorted({n for r in rows for n in (r.label, r.record["generator"]["name"])})
        close = difflib.get_close_matches(against, names, n=3)
        hint = f"; did you mean: {', '.join(close)}?" if close else f"; it has: {', '.join(names)}"
        warnings.warn(
            f"--against {against}: no such generator in group '{group.title}'; Δ cells are —{hint}", stacklevel=3
        )
    for r in rows:
        r.delta = {
            k: None
            if ref is None or comparability(r.record, k) != comparability(ref.record, k)
            else _minus(r.value(k), ref.value(k))
            for k in delta_columns(group.columns)
        }


def _minus(a: float | None, b: float | None) -> float | None:
    """``a - b``, or None when either is missing."""
    return None if a is None or b is None else a - b
