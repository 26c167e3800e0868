"""``ctbench leaderboard build``: records → a folder with ``leaderboard.csv``, ``README.md``, ``index.html``,
interval plots per metric (ranked rows, rows listed apart and unverified ones, marked; never quoted figures),
and each run's montage and memorisation figure copied beside them."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

from ctbench.core.atomic import atomic_path, write_text_atomic
from ctbench.figures import interval_plot
from ctbench.leaderboard.columns import axis_label, key_info, real_partner
from ctbench.leaderboard.ranking import Row, collect
from ctbench.leaderboard.writers import shared_value, to_csv, to_html, to_markdown


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
    shared = shared_value(rows, key)
    if shared is None:
        return None
    split = next(r for r in rows if r.value(key) is not None).record["protocol"]["split"]
    return f"real volumes ({split}): {key}", *shared


def _plot_label(row: Row) -> str:
    """The row's label on a plot, marked when it is not ranked with the others (quoted figures are never drawn)."""
    if not row.verified:
        return f"{row.label} (unverified)"
    if row.apart:
        return f"{row.label} (n = {row.record['sampling']['n']}, not ranked)"
    return row.label


def _foreign(path: Path) -> bool:
    """Whether ``path`` exists and is not a board's page (an earlier build's, or a placeholder that names the
    command): a build must not overwrite it."""
    if not path.is_file():  # absent, or out is no folder: creating it fails with its own message
        return False
    try:
        return "ctbench leaderboard" not in path.read_text(encoding="utf-8", errors="replace")
    except OSError:  # unreadable: not ours to overwrite
        return True


def build(
    results: str | Path, out: str | Path, against: str | None = None, data_source: str | None = None
) -> dict[str, Path]:
    """Write ``leaderboard.csv``, ``README.md``, ``index.html``, plots and montages to ``out``; returns their paths.

    ``data_source`` (e.g. ``FLARE22`` or ``synthetic phantoms, NOT FLARE22``) goes into the boards' titles.
    Raises ``FileNotFoundError`` when ``results`` holds no result record (no empty board is written).
    """
    results, out = Path(results), Path(out)
    if not results.is_dir():
        raise FileNotFoundError(f"{results}: no such results folder")
    groups = collect(results, against)
    if not groups:
        raise FileNotFoundError(f"{results}: no result records (*.json) found; nothing to build")
    theirs = [name for name in ("README.md", "index.html") if _foreign(out / name)]
    if theirs:
        raise FileExistsError(
            f"{out}: holds {' and '.join(theirs)} that no leaderboard build wrote; a build writes leaderboard.csv, "
            "README.md and index.html there: choose another folder (-o)"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"{out}: cannot create the leaderboard folder ({exc.strerror or exc})") from exc
    for g in groups:
        rows = g.rows + g.apart + g.unverified
        real_keys = [k for k in g.columns if real_partner(k) is not None]
        references = {
            partner: ref
            for k in real_keys
            if (partner := real_partner(k)) is not None and (ref := _shared_reference(rows, k)) is not None
        }
        for metric in g.columns:
            partner = real_partner(metric)
            if not any(r.value(metric) is not None for r in rows) or (partner is not None and partner in references):
                continue
            name = f"plots/{g.slug}-{metric}.png"
            points = [(_plot_label(r), r.value(metric), r.interval(metric)) for r in rows]
            integer = key_info(metric).integer
            interval_plot(points, out / name, axis_label(metric), reference=references.get(metric), integer=integer)
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
    write_text_atomic(paths["markdown"], to_markdown(groups, against, data_source))
    write_text_atomic(paths["html"], to_html(groups, against, data_source))
    return paths
