"""``ctbench leaderboard build``: result records → CSV, Markdown and static HTML (see :mod:`ctbench.leaderboard`)."""

from __future__ import annotations

import warnings

import click


@click.group()
def leaderboard() -> None:
    """Build leaderboards from result records."""


@leaderboard.command("build")
@click.argument("results", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", type=click.Path(file_okay=False), default="leaderboard", show_default=True)
@click.option("--against", metavar="NAME", help="Add each row's difference from this generator (same group).")
@click.option("--data-source", metavar="TEXT", help="What the data are, for the titles (e.g. 'FLARE22').")
def build(results: str, out: str, against: str | None, data_source: str | None) -> None:
    """Write leaderboard.csv, README.md and index.html (with plots and montages) for RESULTS into OUT.

    \b
    Example:
      ctbench leaderboard build results/ -o leaderboard/ --against real-holdout --data-source FLARE22
    """
    from ctbench.leaderboard import build as run

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            paths = run(results, out, against=against, data_source=data_source)
        except OSError as exc:  # FileNotFoundError: no records; others: the folder cannot be written
            raise click.ClickException(str(exc)) from exc
        finally:
            for w in caught:
                click.echo(f"warning: {w.message}", err=True)
    for kind, path in paths.items():
        click.echo(f"{kind:<9} {path}")
    click.echo(f"open {paths['html'].resolve().as_uri()}")
