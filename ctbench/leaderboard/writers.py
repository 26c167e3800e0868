"""The leaderboard's three outputs: CSV (one line per record), Markdown and a static HTML page.

The CSV goes through :mod:`csv`; Markdown and HTML are written directly (pandas' ``to_markdown`` needs the
``tabulate`` package, and the "—"/unverified styling is simpler by hand).
"""

from __future__ import annotations

import csv
import html
import io

from ctbench.leaderboard.columns import arrow, column_order, real_partner
from ctbench.leaderboard.ranking import Group, Row, delta_columns

MISSING = "—"
AUDIT_CAPTION = "Memorisation audit: each run's samples closest to a training scan, beside that scan"


def _fmt(v: float | None) -> str:
    return MISSING if v is None else f"{v:.4g}"


def _fmt_iv(iv: tuple[float, float] | None) -> str:
    return "" if iv is None else f" [{iv[0]:.4g}, {iv[1]:.4g}]"


def to_csv(groups: list[Group], against: str | None = None) -> str:
    """One line per record; missing values are empty cells."""
    buf = io.StringIO()
    columns = column_order({c for g in groups for c in g.columns})
    header = ["group", "rank", "generator", "verified", "n", "seed", "run_id", "record"]
    for c in columns:
        header += [c, f"{c}_lo", f"{c}_hi"] + ([f"delta_{c}"] if against and real_partner(c) is None else [])
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for g in groups:
        for r in g.rows + g.unverified:
            s = r.record["sampling"]
            line = [g.title, r.rank or "", r.label, r.verified, s["n"], s["seed"], r.record["run_id"], str(r.path)]
            for c in columns:
                iv = r.interval(c)
                line += ["" if r.value(c) is None else r.value(c), iv[0] if iv else "", iv[1] if iv else ""]
                if against and real_partner(c) is None:
                    d = r.delta.get(c)
                    line.append("" if d is None else d)
            w.writerow(line)
    return buf.getvalue()


def _table_rows(group: Group, rows: list[Row], against: str | None) -> tuple[list[str], list[list[str]]]:
    header = ["rank", "generator", "n", "seed"] + [
        f"{c} {arrow(c)}".strip() for c in group.columns
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
