"""Result records → leaderboard: ``leaderboard.csv``, ``README.md`` (Markdown), ``index.html`` with plots.

Rules:

* Rows are grouped by protocol (name, version), prepared data (manifest sha256), reference split and the
  feature extractors' weights (sha256 of every weights file behind FID/FVD). Groups are never mixed; each
  group has its own table and plots. Records with no feature metric form their own "weight-free" group.
* A record with any metric computed from unverified weights is listed apart, below its group, unranked.
* A missing metric is ``—`` in Markdown and HTML and an empty cell in the CSV, never 0.
* Ranking within a group: by the first of :data:`RANK_BY` every ranked row has; lower is better. Rows
  missing it are listed after the ranked ones without a rank.
* ``against``: each row gains ``Δ metric = row − reference`` for the reference generator of the same group
  (not for the ``*_real`` columns, which describe the real volumes; a group without that generator is warned about).
* A ``*_real`` column shared by every row of a group is drawn as a reference line on its partner's plot.

The CSV goes through :mod:`csv`; Markdown and HTML are written directly (pandas' ``to_markdown`` needs the
``tabulate`` package, and the "—"/unverified styling is simpler by hand); plots are matplotlib.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import math
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctbench.core.atomic import atomic_path, write_text_atomic
from ctbench.figures import interval_plot
from ctbench.record import read_records

RANK_BY = ("fid_mean", "fvd", "intensity_w1")
COLUMN_ORDER = (
    "fid_mean",
    "fid_xy",
    "fid_xz",
    "fid_yz",
    "fvd",
    "intensity_w1",
    "ms_ssim",
    "ms_ssim_real",
    "memorised",
    "nn_corr",
    "nn_corr_real",
)
# nn_corr has no direction: lower means less copying but also less realism; it is read against nn_corr_real
LOWER_IS_BETTER = {"fid_mean", "fid_xy", "fid_xz", "fid_yz", "fvd", "intensity_w1", "memorised"}
# columns that describe the real reference volumes, not the generator: no Δ column; drawn on their partner's plot
REAL_PARTNER = {"ms_ssim_real": "ms_ssim", "nn_corr_real": "nn_corr"}
MISSING = "—"
AUDIT_CAPTION = "Memorisation audit: each run's samples closest to a training scan, beside that scan"
UNITS = {"intensity_w1": "HU", "memorised": "samples flagged"}
COUNTS = {"memorised"}


def axis_label(metric: str) -> str:
    """Plot axis label: the metric, its unit, and which direction is better."""
    unit = f" ({UNITS[metric]})" if metric in UNITS else ""
    return f"{metric}{unit}" + (" — lower is better" if metric in LOWER_IS_BETTER else "")


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
    columns: list[str] = field(default_factory=list)
    rank_by: str | None = None
    plots: dict[str, str] = field(default_factory=dict)
    montages: dict[str, str] = field(default_factory=dict)
    audits: dict[str, str] = field(default_factory=dict)
    """Run label → the memorisation audit's worst-pairs figure (relative path)."""

    @property
    def slug(self) -> str:
        return "g" + hashlib.sha256(repr(self.key).encode()).hexdigest()[:10]


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


def _fmt(v: float | None) -> str:
    return MISSING if v is None else f"{v:.4g}"


def _fmt_iv(iv: tuple[float, float] | None) -> str:
    return "" if iv is None else f" [{iv[0]:.4g}, {iv[1]:.4g}]"


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
        present = {k for r in group.rows + group.unverified for k in r.metrics}
        group.columns = [k for k in COLUMN_ORDER if k in present] + sorted(present - set(COLUMN_ORDER))
        _rank(group)
        if against:
            _deltas(group, against)
    return sorted(groups.values(), key=lambda g: g.title)


def _rank(group: Group) -> None:
    for key in RANK_BY:
        if group.rows and all(r.value(key) is not None for r in group.rows):
            group.rank_by = key
            break
    else:
        group.rank_by = next((k for k in RANK_BY if any(r.value(k) is not None for r in group.rows)), None)
    if group.rank_by is None:
        group.rows.sort(key=lambda r: r.label)
        return
    ranked = sorted((r for r in group.rows if r.value(group.rank_by) is not None), key=lambda r: r.value(group.rank_by))
    for i, r in enumerate(ranked, 1):
        r.rank = i
    group.rows = ranked + sorted((r for r in group.rows if r.rank is None), key=lambda r: r.label)


def delta_columns(columns: list[str]) -> list[str]:
    """The columns that get a Δ column: all but the real-side references."""
    return [c for c in columns if c not in REAL_PARTNER]


def _deltas(group: Group, against: str) -> None:
    ref = next((r for r in group.rows + group.unverified if against in (r.label, r.record["generator"]["name"])), None)
    if ref is None:
        warnings.warn(f"--against {against}: no such generator in group '{group.title}'; Δ cells are —", stacklevel=3)
    for r in group.rows + group.unverified:
        r.delta = {
            k: (None if ref is None or r.value(k) is None or ref.value(k) is None else r.value(k) - ref.value(k))
            for k in delta_columns(group.columns)
        }


# ----------------------------------------------------------------------------------------- writers


def to_csv(groups: list[Group], against: str | None = None) -> str:
    """One line per record; missing values are empty cells."""
    buf = io.StringIO()
    columns = sorted({c for g in groups for c in g.columns}, key=lambda c: (c not in COLUMN_ORDER, c))
    header = ["group", "rank", "generator", "verified", "n", "seed", "run_id", "record"]
    for c in columns:
        header += [c, f"{c}_lo", f"{c}_hi"] + ([f"delta_{c}"] if against and c not in REAL_PARTNER else [])
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for g in groups:
        for r in g.rows + g.unverified:
            s = r.record["sampling"]
            line = [g.title, r.rank or "", r.label, r.verified, s["n"], s["seed"], r.record["run_id"], str(r.path)]
            for c in columns:
                iv = r.interval(c)
                line += ["" if r.value(c) is None else r.value(c), iv[0] if iv else "", iv[1] if iv else ""]
                if against and c not in REAL_PARTNER:
                    d = r.delta.get(c)
                    line.append("" if d is None else d)
            w.writerow(line)
    return buf.getvalue()


def _table_rows(group: Group, rows: list[Row], against: str | None) -> tuple[list[str], list[list[str]]]:
    header = ["rank", "generator", "n", "seed"] + [
        f"{c} {'↓' if c in LOWER_IS_BETTER else ''}".strip() for c in group.columns
    ]
    if against:
        header += [f"Δ{c}" for c in delta_columns(group.columns)]
    body = []
    for r in rows:
        line = [
            str(r.rank) if r.rank else MISSING,
            r.label,
            str(r.record["sampling"]["n"]),
            str(r.record["sampling"]["seed"]),
        ]
        line += [_fmt(r.value(c)) + _fmt_iv(r.interval(c)) for c in group.columns]
        if against:
            line += [MISSING if r.delta.get(c) is None else f"{r.delta[c]:+.4g}" for c in delta_columns(group.columns)]
        body.append(line)
    return header, body


def _md_table(header: list[str], body: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in row] for row in [header, *body]]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in esc[1:]]
    return "\n".join(lines)


def _skipped(group: Group) -> list[str]:
    """One line per (metric, reason), naming the runs it applies to."""
    runs: dict[tuple[str, str], list[str]] = {}
    for r in group.rows + group.unverified:
        for name, reason in r.record.get("skipped", {}).items():
            runs.setdefault((name, reason.splitlines()[0]), []).append(r.label)
    return [f"{name} skipped for {', '.join(labels)}: {reason}" for (name, reason), labels in runs.items()]


def to_markdown(groups: list[Group], against: str | None = None) -> str:
    """The leaderboard as Markdown: one section per group, unverified rows apart."""
    parts = ["# ctbench leaderboard", ""]
    parts.append("Lower is better for ↓ metrics; intervals in brackets; — = not computed. ")
    if against:
        parts.append(f"Δ columns: row minus `{against}` in the same group.")
    if not groups:
        parts.append("\n_No result records found._")
    for g in groups:
        parts += ["", f"## {g.title}", ""]
        if g.rank_by:
            parts.append(f"Ranked by `{g.rank_by}`.\n")
        parts.append(_md_table(*_table_rows(g, g.rows, against)) if g.rows else "_No verified rows._")
        if g.unverified:
            parts += ["", "### Unverified weights (not ranked)", "", _md_table(*_table_rows(g, g.unverified, against))]
        skipped = _skipped(g)
        if skipped:
            parts += ["", "Skipped metrics:", ""] + [f"- {s}" for s in skipped]
        if g.montages:
            parts += ["", "Samples beside real volumes (mid xy / xz / yz slices):", ""]
            parts += [f"![{label}]({path})" for label, path in g.montages.items()]
        if g.audits:
            parts += ["", f"{AUDIT_CAPTION}:", ""]
            parts += [f"![{label}]({path})" for label, path in g.audits.items()]
    return "\n".join(parts) + "\n"


def to_html(groups: list[Group], against: str | None = None) -> str:
    """A static page: tables, interval plots and montages (relative links, no scripts)."""
    e = html.escape
    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>ctbench leaderboard</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right;white-space:nowrap}"
        "td:nth-child(2){text-align:left}.unverified{color:#955}.missing{color:#999}img{max-width:100%;margin:4px 0}"
        ".plots{display:flex;flex-wrap:wrap;gap:4px 16px}.scroll{overflow-x:auto}</style></head><body>",
        "<h1>ctbench leaderboard</h1>",
        "<p>Lower is better for ↓ metrics; intervals in brackets; — = not computed (never 0).</p>",
    ]
    if against:
        out.append(f"<p>Δ columns: row minus <code>{e(against)}</code> in the same group.</p>")
    if not groups:
        out.append("<p><em>No result records found.</em></p>")
    for g in groups:
        out.append(f"<h2>{e(g.title)}</h2>")
        if g.rank_by:
            out.append(f"<p>Ranked by <code>{e(g.rank_by)}</code>.</p>")
        for rows, cls, caption in ((g.rows, "", None), (g.unverified, "unverified", "Unverified weights (not ranked)")):
            if not rows:
                continue
            if caption:
                out.append(f"<h3 class='unverified'>{e(caption)}</h3>")
            header, body = _table_rows(g, rows, against)
            out.append(f"<div class='scroll'><table class='{cls}'><tr>" + "".join(f"<th>{e(h)}</th>" for h in header))
            out[-1] += "</tr>"
            for line in body:
                cells = "".join(
                    f"<td class='missing'>{e(c)}</td>" if c == MISSING else f"<td>{e(c)}</td>" for c in line
                )
                out.append(f"<tr>{cells}</tr>")
            out.append("</table></div>")
        skipped = _skipped(g)
        if skipped:
            out.append("<details><summary>Skipped metrics</summary><ul>")
            out += [f"<li>{e(s)}</li>" for s in skipped]
            out.append("</ul></details>")
        if g.plots:
            out.append("<div class='plots'>")
            out += [f"<img src='{e(src)}' alt='{e(metric)}'>" for metric, src in g.plots.items()]
            out.append("</div>")
        for caption, figures in (
            ("Samples beside real volumes (mid xy / xz / yz slices)", g.montages),
            (AUDIT_CAPTION, g.audits),
        ):
            if figures:
                out.append(f"<h3>{e(caption)}</h3>")
                for label, src in figures.items():
                    out.append(f"<div><p>{e(label)}</p><img src='{e(src)}' alt='{e(label)}'></div>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _copy_artifact(row: Row, artifact: str, out: Path, subdir: str) -> str | None:
    """Copy a record's figure (``artifacts[artifact]``, beside the record) to ``out/subdir``; its relative path."""
    name = row.record.get("artifacts", {}).get(artifact)
    if not name:
        return None
    src = row.path.parent / name
    if not src.is_file():
        warnings.warn(f"{row.path}: {artifact} figure {src} not found", stacklevel=3)
        return None
    dest = out / subdir / src.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.resolve() != dest.resolve():
        with atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)
    return f"{subdir}/{src.name}"


def _shared_reference(rows: list[Row], key: str) -> tuple[str, float, tuple[float, float] | None] | None:
    """(label, value, interval) of a real-side column when every row that has it has the same value, else None."""
    having = [r for r in rows if r.value(key) is not None]
    if not having or any(r.value(key) != having[0].value(key) for r in having):
        return None
    split = having[0].record["protocol"]["split"]
    return f"real volumes ({split}): {key}", having[0].value(key), having[0].interval(key)


def build(results: str | Path, out: str | Path, against: str | None = None) -> dict[str, Path]:
    """Write ``leaderboard.csv``, ``README.md``, ``index.html``, plots and montages to ``out``; returns their paths."""
    results, out = Path(results), Path(out)
    if not results.is_dir():
        raise FileNotFoundError(f"{results}: no such results folder")
    groups = collect(results, against)
    if not groups:
        warnings.warn(f"{results}: no result records found; the leaderboard is empty", stacklevel=2)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"{out}: cannot create the leaderboard folder ({exc.strerror or exc})") from exc
    for g in groups:
        rows = g.rows + g.unverified
        references = {REAL_PARTNER[k]: ref for k in REAL_PARTNER if (ref := _shared_reference(rows, k)) is not None}
        for metric in g.columns:
            if not any(r.value(metric) is not None for r in rows) or (
                metric in REAL_PARTNER and REAL_PARTNER[metric] in references
            ):
                continue
            name = f"plots/{g.slug}-{metric}.png"
            points = [
                (r.label + ("" if r.verified else " (unverified)"), r.value(metric), r.interval(metric)) for r in rows
            ]
            interval_plot(
                points, out / name, axis_label(metric), reference=references.get(metric), integer=metric in COUNTS
            )
            g.plots[metric] = name
        for r in rows:
            label = f"{r.label} (run {r.record['run_id']})"
            for artifact, subdir, figures in (
                ("montage", "montages", g.montages),
                ("memorisation_pairs", "memorisation", g.audits),
            ):
                if (copied := _copy_artifact(r, artifact, out, subdir)) is not None:
                    figures[label] = copied
    paths = {"csv": out / "leaderboard.csv", "markdown": out / "README.md", "html": out / "index.html"}
    write_text_atomic(paths["csv"], to_csv(groups, against))
    write_text_atomic(paths["markdown"], to_markdown(groups, against))
    write_text_atomic(paths["html"], to_html(groups, against))
    return paths
