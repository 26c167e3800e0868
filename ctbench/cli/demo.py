"""``ctbench demo``: the offline end-to-end demo (see :mod:`ctbench.demo`)."""

from __future__ import annotations

import re

import click

from ctbench.cli.options import SEED
from ctbench.demo import DemoOptions

_D = DemoOptions()


@click.command()
@click.option("--out", type=click.Path(file_okay=False), default=_D.out, show_default=True)
@click.option("--cases", type=click.IntRange(min=10), default=_D.cases, show_default=True, help="Phantoms to make.")
@click.option("--samples", type=click.IntRange(min=2), default=_D.samples, show_default=True, help="Per generator.")
@click.option("--seed", type=SEED, default=_D.seed, show_default=True, help="Seed of the phantoms and samples.")
@click.option("--workers", type=click.IntRange(min=1), default=_D.workers, show_default=True)
@click.option("--full-size", is_flag=True, help="Full-size phantoms (slower) instead of the quick coarse ones.")
@click.option("--no-reference", is_flag=True, help="Skip training/evaluating the tiny vqgan-ddpm.")
@click.option("--data", type=click.Path(exists=True, file_okay=False), help="Use this prepared folder, skip phantoms.")
def demo(
    out: str, cases: int, samples: int, seed: int, workers: int, full_size: bool, no_reference: bool, data: str | None
) -> None:
    """Synthesise phantoms, prepare them, evaluate the baselines (+ a tiny reference model), build a leaderboard.

    Offline and on CPU. Interrupted (Ctrl-C)? Run the same command again: it resumes, reusing every finished
    step. Example: ctbench demo --out demo-out
    """
    from ctbench.api import PluginError, UnknownNameError
    from ctbench.data.batch import PrepareError
    from ctbench.demo import DemoError, enabling_command, run_demo
    from ctbench.evaluate import EvaluationError

    opts = DemoOptions(
        out=out,
        cases=cases,
        samples=samples,
        seed=seed,
        workers=workers,
        full_size=full_size,
        reference=not no_reference,
        data=data,
    )
    try:
        result = run_demo(opts, say=click.echo)
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: run the same command again to resume; it reuses what {out} already holds "
                   "(phantoms, prepared cases, the reference model's last checkpoint, result records)", err=True)
        raise SystemExit(130) from None
    except OSError as exc:
        where = exc.filename if exc.filename is not None else out
        raise click.ClickException(f"{where}: {exc.strerror or exc}") from exc
    except (DemoError, PrepareError, EvaluationError, UnknownNameError, PluginError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("")
    board = result.leaderboard["markdown"].read_text()
    click.echo(re.split(r"\n<details>|\nSkipped metrics:", board)[0].strip())  # glossary and headline table
    click.echo("")
    for note in result.notes:
        click.echo(f"note: {note}")
    for metric, reason in sorted(result.skipped.items()):
        cmd = enabling_command(reason)
        click.echo(f"{metric.upper()} skipped: {reason.split(':')[0]}." + (f" Enable it with: {cmd}" if cmd else ""))
    click.echo(f"\nleaderboard: {result.leaderboard['html'].resolve().as_uri()}")
    click.echo(f"             {result.leaderboard['markdown']}  {result.leaderboard['csv']}")
