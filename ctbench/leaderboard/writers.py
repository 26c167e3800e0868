"""The leaderboard's three outputs: CSV (one line per record, then the quoted figures), Markdown and a static
HTML page. Per group: the ranked rows, rows listed apart (another N or metric setting, with the reason),
unverified rows, and published figures marked as quoted, never ranked.

The CSV goes through :mod:`csv`; Markdown and HTML are written directly (pandas' ``to_markdown`` needs the
``tabulate`` package, and the "—"/unverified styling is simpler by hand).
"""

from __future__ import annotations

import csv
import html
import io

from ctbench.leaderboard.columns import arrow, column_order, real_partner
from ctbench.leaderboard.quoted import MARK, Quoted
from ctbench.leaderboard.ranking import Group, Row, delta_columns

MISSING = "—"
AUDIT_CAPTION = "Memorisation audit: each run's samples closest to a training scan, beside that scan"
APART_CAPTION = "Not comparable with the ranked runs (not ranked)"
QUOTED_CAPTION = f"Published figures ({MARK})"
DEFICIENT = "†"
LEGEND = (
    "Lower is better for ↓ metrics; intervals in brackets; — = not computed (never 0); † = fewer samples than "
    "feature dimensions on a side (rank-deficient: biased upwards, compare only at equal N)."
)


def status(group: Group, row: Row) -> str:
    """``ranked`` or why the row has no rank (the CSV's ``status`` column)."""
    if row.rank:
        return "ranked"
    if not row.verified:
        return "not ranked: unverified weights"
    if row.apart:
        return f"not ranked: {row.apart}"
    return f"not ranked: no {group.rank_by}" if group.rank_by else "not ranked: no ranking metric"


def _fmt(v: float | None) -> str:
    return MISSING if v is None else f"{v:.4g}"


def _deficient(row: Row, key: str) -> str:
    """``†`` after a value computed with fewer samples than feature dimensions on a side (``rank_deficient``)."""
    return DEFICIENT if row.value(key) is not None and row.metrics.get(key, {}).get("rank_deficient") else ""


def _fmt_iv(iv: tuple[float, float] | None) -> str:
    return "" if iv is None else f" [{iv[0]:.4g}, {iv[1]:.4g}]"


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


def _value_header(group: Group) -> list[str]:
    return ["rank", "generator", "n", "seed"] + [f"{c} {arrow(c)}".strip() for c in group.columns]


def _quoted_rows(group: Group) -> tuple[list[str], list[list[str]]]:
    """The group's quoted figures: rank ``paper``, N unknown (``?``), no interval, no Δ."""
    body = [["paper", q.label, "?", MISSING] + [_fmt(q.value(c)) for c in group.columns] for q in group.quoted]
    return _value_header(group), body


def _quoted_notes(quoted: list[Quoted]) -> list[str]:
    return [f"{q.label}: {q.source}; {q.setting}. Not stated: {'; '.join(q.unknown)}." for q in quoted]


def _table_rows(
    group: Group, rows: list[Row], against: str | None, why: bool = False
) -> tuple[list[str], list[list[str]]]:
    """Header and cells of ``rows``; ``why``: a last column saying why each row is not ranked."""
    header = _value_header(group)
    if against:
        header += [f"Δ{c}" for c in delta_columns(group.columns)]
    if why:
        header.append("not ranked because")
    body = []
    for r in rows:
        line = [
            str(r.rank) if r.rank else MISSING,
            r.label,
            str(r.record["sampling"]["n"]),
            str(r.record["sampling"]["seed"]),
        ]
        line += [_fmt(r.value(c)) + _deficient(r, c) + _fmt_iv(r.interval(c)) for c in group.columns]
        if against:
            line += [MISSING if r.delta.get(c) is None else f"{r.delta[c]:+.4g}" for c in delta_columns(group.columns)]
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


def to_markdown(groups: list[Group], against: str | None = None) -> str:
    """The leaderboard as Markdown: one section per group, unverified rows apart."""
    parts = ["# ctbench leaderboard", ""]
    parts.append(LEGEND + " ")
    if against:
        parts.append(f"Δ columns: row minus `{against}` in the same group.")
    if not groups:
        parts.append("\n_No result records found._")
    for g in groups:
        parts += ["", f"## {g.title}", ""]
        if g.mixed:
            parts.append(f"**{g.mixed}**\n")
        if g.rank_by:
            parts.append(f"Ranked by `{g.rank_by}`.\n")
        parts.append(_md_table(*_table_rows(g, g.rows, against)) if g.rows else "_No verified rows._")
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
        ".plots{display:flex;flex-wrap:wrap;gap:4px 16px}.scroll{overflow-x:auto}.apart,.mixed{color:#a60}"
        ".quoted{color:#557;font-style:italic}</style></head><body>",
        "<h1>ctbench leaderboard</h1>",
        f"<p>{html.escape(LEGEND)}</p>",
    ]
    if against:
        out.append(f"<p>Δ columns: row minus <code>{e(against)}</code> in the same group.</p>")
    if not groups:
        out.append("<p><em>No result records found.</em></p>")
    for g in groups:
        out.append(f"<h2>{e(g.title)}</h2>")
        if g.mixed:
            out.append(f"<p class='mixed'><strong>{e(g.mixed)}</strong></p>")
        if g.rank_by:
            out.append(f"<p>Ranked by <code>{e(g.rank_by)}</code>.</p>")
        tables = []
        for rows, cls, caption in (
            (g.rows, "", None),
            (g.apart, "apart", APART_CAPTION),
            (g.unverified, "unverified", "Unverified weights (not ranked)"),
        ):
            if rows:
                tables.append((cls, caption, _table_rows(g, rows, against, why=cls == "apart")))
        if g.quoted:
            tables.append(("quoted", QUOTED_CAPTION, _quoted_rows(g)))
        for cls, caption, (header, body) in tables:
            if caption:
                out.append(f"<h3 class='{cls}'>{e(caption)}</h3>")
            out.append(f"<div class='scroll'><table class='{cls}'><tr>" + "".join(f"<th>{e(h)}</th>" for h in header))
            out[-1] += "</tr>"
            for line in body:
                cells = "".join(
                    f"<td class='missing'>{e(c)}</td>" if c == MISSING else f"<td>{e(c)}</td>" for c in line
                )
                out.append(f"<tr>{cells}</tr>")
            out.append("</table></div>")
            if cls == "quoted":
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
