"""The leaderboard's three outputs: CSV (one line per record, then the quoted figures), Markdown and a static
HTML page. Per group: the ranked rows, rows listed apart (another N or metric setting, with the reason),
unverified rows, and published figures marked as quoted, never ranked.

Readable at a glance: numbers carry the digits their interval supports (:func:`fmt_value`), a real-side
value that is the same on every row (``ms_ssim_real``) is stated once per group, each board opens with a
glossary of its columns (the Metric contract's descriptions and directions), and the headline columns (each
metric's first key) come first, the full table (every key, intervals, Δ, seeds) after them: behind a details
toggle in HTML and Markdown. The CSV keeps every value at full precision.

The CSV goes through :mod:`csv`; Markdown and HTML are written directly (pandas' ``to_markdown`` needs the
``tabulate`` package, and the "—"/unverified styling is simpler by hand).
"""

from __future__ import annotations

import csv
import html
import io
import math

from ctbench.leaderboard.columns import arrow, column_order, glossary, headline_keys, key_info, real_partner
from ctbench.leaderboard.quoted import MARK, Quoted
from ctbench.leaderboard.ranking import Group, Row, delta_columns

MISSING = "—"
AUDIT_CAPTION = "Memorisation audit: each run's samples closest to a training scan, beside that scan"
AUDIT_NOTE = (
    "A sample is flagged (red frame) when its correlation r with its nearest training scan exceeds the highest r "
    "of any held-out real scan; each figure states that threshold. real-holdout's samples are themselves held-out "
    "real scans: each exceeds the maximum over the M reference scans with probability about 1/(M + 1) by chance, "
    "so a flag or two there (and in the memorised plot, where real-holdout may look worst) is the audit's noise "
    "floor on a small reference split, not copying."
)
MONTAGE_CAPTION = "Samples beside real volumes (central axial / coronal / sagittal slices)"
APART_CAPTION = "Not comparable with the ranked runs (not ranked)"
QUOTED_CAPTION = f"Published figures ({MARK})"
DEFICIENT = "†"
LEGEND = (
    "Lower is better for ↓ metrics; intervals in brackets; — = not computed (never 0); † = fewer samples than "
    "feature dimensions on a side (rank-deficient: biased upwards, compare only at equal N)."
)
DETAILS = "All columns: every key with its interval, seeds"
TITLE = "ctbench leaderboard"


def status(group: Group, row: Row) -> str:
    """``ranked`` or why the row has no rank (the CSV's ``status`` column)."""
    if row.rank:
        return "ranked"
    if not row.verified:
        return "not ranked: unverified weights"
    if row.apart:
        return f"not ranked: {row.apart}"
    return f"not ranked: no {group.rank_by}" if group.rank_by else "not ranked: no ranking metric"


def _decimals(value: float, width: float) -> int:
    """Decimal places for ``value`` with an interval of ``width`` > 0: two significant digits of the width, at
    most four significant digits of the value."""
    top = math.floor(math.log10(abs(value))) if value else math.floor(math.log10(width))
    return max(0, min(1 - math.floor(math.log10(width)), 3 - top))


def fmt_value(value: float | None, interval: tuple[float, float] | None = None, integer: bool = False) -> str:
    """``value [lo, hi]`` with the digits the interval supports (``0.0012 [-0.0007, 0.0046]``); ``—`` if missing.

    Without an interval (or with an empty one): three significant digits, trailing zeros dropped (``40``,
    ``0.00122``), whole numbers from 1000. Counts (``integer``) print as integers; values under 1e-4 in
    scientific notation.
    """
    if value is None:
        return MISSING
    numbers = [value, *(interval or ())]
    width = interval[1] - interval[0] if interval else 0.0
    if integer:
        texts = [f"{round(x):d}" for x in numbers]
    elif value and abs(value) < 1e-4:
        texts = [f"{x:.2e}" for x in numbers]
    elif width > 0:
        d = _decimals(value, width)
        texts = [f"{x:.{d}f}" for x in numbers]
    else:
        texts = [f"{x:.0f}" if abs(x) >= 1000 else f"{x:.3g}" for x in numbers]
    return texts[0] + (f" [{texts[1]}, {texts[2]}]" if interval else "")


def _fmt_delta(value: float | None, integer: bool = False) -> str:
    return MISSING if value is None else ("+" if value >= 0 else "") + fmt_value(value, integer=integer)


def _cell(row: Row, key: str, interval: bool = True) -> str:
    info = key_info(key)
    return fmt_value(row.value(key), row.interval(key) if interval else None, info.integer) + _deficient(row, key)


def _deficient(row: Row, key: str) -> str:
    """``†`` after a value computed with fewer samples than feature dimensions on a side (``rank_deficient``)."""
    return DEFICIENT if row.value(key) is not None and row.metrics.get(key, {}).get("rank_deficient") else ""


def shared_value(rows: list[Row], key: str) -> tuple[float, tuple[float, float] | None] | None:
    """(value, interval) of ``key`` when every row that has it has the same value (a real-side key), else None."""
    having = [r for r in rows if r.value(key) is not None]
    if not having or any(r.value(key) != having[0].value(key) for r in having):
        return None
    value = having[0].value(key)
    assert value is not None
    return value, having[0].interval(key)


def _shared_real(group: Group) -> dict[str, tuple[float, tuple[float, float] | None]]:
    """The group's real-side keys whose value is the same on every row: stated once, not as columns."""
    rows = group.rows + group.apart + group.unverified
    out = {}
    for key in group.columns:
        if real_partner(key) is not None and (shared := shared_value(rows, key)) is not None:
            out[key] = shared
    return out


def _real_line(group: Group) -> str | None:
    """``Real reference volumes (split val, same for every row): ms_ssim_real 0.52 [0.48, 0.55]; ...``."""
    shared = _shared_real(group)
    if not shared:
        return None
    split = (group.rows + group.apart + group.unverified)[0].record["protocol"]["split"]
    values = "; ".join(f"{k} {fmt_value(v, iv, key_info(k).integer)}" for k, (v, iv) in shared.items())
    return f"Real reference volumes (split {split}, the same for every row): {values}"


def _columns(group: Group, headline: bool) -> list[str]:
    """The group's value columns: the headline ones, or all; never a real-side key stated once above the table."""
    shared = _shared_real(group)
    return [c for c in group.columns if c not in shared and (not headline or c in headline_keys())]


def _glossary(groups: list[Group], against: str | None) -> list[str]:
    """One line per column on the board (from the Metric contract), and the Δ columns' meaning."""
    keys = column_order({c for g in groups for c in g.columns})
    lines = [glossary(k) for k in keys]
    if against:
        lines.append(f"`Δkey`: the row's value minus `{against}`'s in the same group (same N and metric settings)")
    return lines


def _title(data_source: str | None) -> str:
    return f"{TITLE} — data: {data_source}" if data_source else TITLE


def to_csv(groups: list[Group], against: str | None = None) -> str:
    """One line per record; missing values are empty cells."""
    buf = io.StringIO()
    columns = column_order({c for g in groups for c in g.columns})
    header = ["group", "rank", "status", "generator", "verified", "n", "seed", "run_id", "record"]
    for c in columns:
        header += [c, f"{c}_lo", f"{c}_hi"] + ([f"delta_{c}"] if against and real_partner(c) is None else [])
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for g in groups:
        for r in g.rows + g.apart + g.unverified:
            s = r.record["sampling"]
            line = [g.title, r.rank or "", status(g, r), r.label, r.verified, s["n"], s["seed"], r.record["run_id"]]
            line.append(str(r.path))
            for c in columns:
                iv = r.interval(c)
                line += ["" if r.value(c) is None else r.value(c), iv[0] if iv else "", iv[1] if iv else ""]
                if against and real_partner(c) is None:
                    d = r.delta.get(c)
                    line.append("" if d is None else d)
            w.writerow(line)
        for q in g.quoted:  # no interval, no Δ, no N: quoted as printed
            line = [g.title, "", f"paper: {MARK}", q.label, "", "", "", "", ""]
            for c in columns:
                line += ["" if q.value(c) is None or c not in g.columns else q.value(c), "", ""]
                if against and real_partner(c) is None:
                    line.append("")
            w.writerow(line)
    return buf.getvalue()


def _value_header(columns: list[str], seed: bool = True) -> list[str]:
    return ["rank", "generator", "n"] + (["seed"] if seed else []) + [f"{c} {arrow(c)}".strip() for c in columns]


def _quoted_rows(group: Group) -> tuple[list[str], list[list[str]]]:
    """The group's quoted figures as printed: rank ``paper``, N unknown (``?``), no interval, no Δ."""
    columns = _columns(group, headline=False)
    body = [
        ["paper", q.label, "?", MISSING] + [MISSING if q.value(c) is None else f"{q.value(c):g}" for c in columns]
        for q in group.quoted
    ]
    return _value_header(columns), body


def _quoted_notes(quoted: list[Quoted]) -> list[str]:
    return [f"{q.label}: {q.source}; {q.setting}. Not stated: {'; '.join(q.unknown)}." for q in quoted]


def _table_rows(
    group: Group, rows: list[Row], against: str | None, why: bool = False, headline: bool = False
) -> tuple[list[str], list[list[str]]]:
    """Header and cells of ``rows``: the headline columns (values only), or every column with intervals and Δ;
    ``why``: a last column saying why each row is not ranked."""
    columns = _columns(group, headline)
    header = _value_header(columns, seed=not headline)
    deltas = [c for c in delta_columns(group.columns) if c in columns] if against and not headline else []
    header += [f"Δ{c}" for c in deltas]
    if why:
        header.append("not ranked because")
    body = []
    for r in rows:
        line = [str(r.rank) if r.rank else MISSING, r.label, str(r.record["sampling"]["n"])]
        line += [] if headline else [str(r.record["sampling"]["seed"])]
        line += [_cell(r, c, interval=not headline) for c in columns]
        line += [_fmt_delta(r.delta.get(c), key_info(c).integer) for c in deltas]
        if why:
            line.append(r.apart or "")
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
    for r in group.rows + group.apart + group.unverified:
        for name, reason in r.record.get("skipped", {}).items():
            runs.setdefault((name, reason.splitlines()[0]), []).append(r.label)
    return [f"{name} skipped for {', '.join(labels)}: {reason}" for (name, reason), labels in runs.items()]


def to_markdown(groups: list[Group], against: str | None = None, data_source: str | None = None) -> str:
    """The leaderboard as Markdown: a glossary, then per group the headline table, the full one behind a toggle,
    rows listed apart, unverified rows and quoted figures."""
    parts = [f"# {_title(data_source)}", "", LEGEND, "", "Columns:", ""]
    parts += [f"- {line}" for line in _glossary(groups, against)]
    for g in groups:
        parts += ["", f"## {g.title}", ""]
        if g.mixed:
            parts.append(f"**{g.mixed}**\n")
        if g.rank_by:
            parts.append(f"Ranked by `{g.rank_by}`.\n")
        if (real := _real_line(g)) is not None:
            parts.append(real + "\n")
        if g.rows:
            parts.append(_md_table(*_table_rows(g, g.rows, against, headline=True)))
            parts += ["", f"<details><summary>{DETAILS}{', Δ' if against else ''}</summary>", ""]
            parts += [_md_table(*_table_rows(g, g.rows, against)), "", "</details>"]
        else:
            parts.append("_No verified rows._")
        if g.apart:
            parts += ["", f"### {APART_CAPTION}", "", _md_table(*_table_rows(g, g.apart, against, why=True))]
        if g.unverified:
            parts += ["", "### Unverified weights (not ranked)", "", _md_table(*_table_rows(g, g.unverified, against))]
        if g.quoted:
            parts += ["", f"### {QUOTED_CAPTION}", "", _md_table(*_quoted_rows(g)), ""]
            parts += [f"- {note}" for note in _quoted_notes(g.quoted)]
        skipped = _skipped(g)
        if skipped:
            parts += ["", "Skipped metrics:", ""] + [f"- {s}" for s in skipped]
        if g.montages:
            parts += ["", f"{MONTAGE_CAPTION}:", ""]
            parts += [f"![{label}]({path})" for label, path in g.montages.items()]
        if g.audits:
            parts += ["", f"{AUDIT_CAPTION}. {AUDIT_NOTE}", ""]
            parts += [f"![{label}]({path})" for label, path in g.audits.items()]
    return "\n".join(parts) + "\n"


def _html_table(cls: str, header: list[str], body: list[list[str]]) -> list[str]:
    e = html.escape
    out = [f"<div class='scroll'><table class='{cls}'><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"]
    for line in body:
        cells = "".join(f"<td class='missing'>{e(c)}</td>" if c == MISSING else f"<td>{e(c)}</td>" for c in line)
        out.append(f"<tr>{cells}</tr>")
    out.append("</table></div>")
    return out


def to_html(groups: list[Group], against: str | None = None, data_source: str | None = None) -> str:
    """A static page: glossary, headline tables (full tables behind a toggle), interval plots and montages
    (relative links, no scripts)."""
    e = html.escape
    title = _title(data_source)
    out = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right;white-space:nowrap}"
        "td:nth-child(2){text-align:left}.unverified{color:#955}.missing{color:#999}img{max-width:100%;margin:4px 0}"
        ".plots{display:flex;flex-wrap:wrap;gap:4px 16px}.scroll{overflow-x:auto}.apart,.mixed{color:#a60}"
        ".quoted{color:#557;font-style:italic}.glossary{font-size:13px}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p>{e(LEGEND)}</p>",
        "<details class='glossary'><summary>Columns</summary><ul>",
        *(f"<li>{e(line)}</li>" for line in _glossary(groups, against)),
        "</ul></details>",
    ]
    for g in groups:
        out.append(f"<h2>{e(g.title)}</h2>")
        if g.mixed:
            out.append(f"<p class='mixed'><strong>{e(g.mixed)}</strong></p>")
        if g.rank_by:
            out.append(f"<p>Ranked by <code>{e(g.rank_by)}</code>.</p>")
        if (real := _real_line(g)) is not None:
            out.append(f"<p>{e(real)}</p>")
        if g.rows:
            out += _html_table("", *_table_rows(g, g.rows, against, headline=True))
            out.append(f"<details><summary>{e(DETAILS)}{', Δ' if against else ''}</summary>")
            out += _html_table("", *_table_rows(g, g.rows, against))
            out.append("</details>")
        for rows, cls, caption in (
            (g.apart, "apart", APART_CAPTION),
            (g.unverified, "unverified", "Unverified weights (not ranked)"),
        ):
            if rows:
                out.append(f"<h3 class='{cls}'>{e(caption)}</h3>")
                out += _html_table(cls, *_table_rows(g, rows, against, why=cls == "apart"))
        if g.quoted:
            out.append(f"<h3 class='quoted'>{e(QUOTED_CAPTION)}</h3>")
            out += _html_table("quoted", *_quoted_rows(g))
            notes = "".join(f"<li>{e(n)}</li>" for n in _quoted_notes(g.quoted))
            out.append(f"<ul class='quoted'>{notes}</ul>")
        skipped = _skipped(g)
        if skipped:
            out.append("<details><summary>Skipped metrics</summary><ul>")
            out += [f"<li>{e(s)}</li>" for s in skipped]
            out.append("</ul></details>")
        if g.plots:
            out.append("<div class='plots'>")
            out += [f"<img src='{e(src)}' alt='{e(metric)}'>" for metric, src in g.plots.items()]
            out.append("</div>")
        for caption, figures in ((MONTAGE_CAPTION, g.montages), (AUDIT_CAPTION, g.audits)):
            if figures:
                out.append(f"<h3>{e(caption)}</h3>")
                if caption == AUDIT_CAPTION:
                    out.append(f"<p>{e(AUDIT_NOTE)}</p>")
                for label, src in figures.items():
                    out.append(f"<div><p>{e(label)}</p><img src='{e(src)}' alt='{e(label)}'></div>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
