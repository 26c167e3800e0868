"""``ctbench stats`` (reference statistics) and ``ctbench weights`` (fetch / import / convert / status).

Thin: parse, call :mod:`ctbench.metrics`, :mod:`ctbench.stats` and :mod:`ctbench.weights`, print.
"""

from __future__ import annotations

from pathlib import Path

import click

from ctbench.cli.options import DEVICE_HELP, check_device
from ctbench.core.errors import MetricUnavailable


@click.command()
@click.argument("prepared_dir", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--metric", "metrics", multiple=True,
              help="Feature metric(s) to compute reference statistics for (default: every one, e.g. fid, fvd).")
@click.option("--device", default="cpu", show_default=True, help="Where the feature network runs: " + DEVICE_HELP)
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Slices (FID) or videos (FVD) per forward pass.")
@click.option("--no-cache", is_flag=True, help="Recompute and do not store in $CTBENCH_CACHE.")
@click.option("--export", "export_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write <metric>-<split>.npz here, to share without sharing scans.")
@click.option("--import", "import_files", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Put exported statistics into the cache (no PREPARED_DIR needed).")
@click.option("--unverified-weights", is_flag=True, help="Accept weights whose sha256 is not the pinned one; "
              "results are marked unverified and the leaderboard will not rank them.")
@click.option("--slices", type=click.Choice(["all", "body"]), help="FID slices: all (default) or body (no padding).")
@click.option("--metric-option", "metric_opts", multiple=True, metavar="METRIC.KEY=VALUE",
              help="A metric's option, e.g. fid.kid_max_samples=20000 (repeatable; must match the evaluation's).")
def stats(
    prepared_dir: Path | None,
    split: str,
    metrics: tuple[str, ...],
    device: str,
    batch_size: int | None,
    no_cache: bool,
    export_dir: Path | None,
    import_files: tuple[Path, ...],
    unverified_weights: bool,
    slices: str | None,
    metric_opts: tuple[str, ...],
) -> None:
    """Compute (once) and cache the real set's statistics for FID/FVD, keyed by content."""
    from ctbench.cli.evaluate import metric_options
    from ctbench.data.prepared import load_manifest
    from ctbench.evaluate.options import option_flags
    from ctbench.metrics import get_metric
    from ctbench.metrics.feature import FeatureMetric
    from ctbench.stats import import_stats

    for f in import_files:
        try:
            metric, path = import_stats(f)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"imported {metric} statistics {f} -> {path}")
    if prepared_dir is None:
        if not import_files:
            raise click.UsageError("give PREPARED_DIR, or --import FILE")
        return
    device = check_device(device)
    try:
        manifest = load_manifest(prepared_dir)
        options = metric_options(metric_opts, slices)
        names = list(metrics or _feature_metrics())
        for name in set(options) - set(names):  # its statistics would not be computed
            given = option_flags(name, options[name])
            raise click.ClickException(f"{given}: metric {name!r} is not among {', '.join(names)}")
        chosen = {name: get_metric(name, **options.get(name, {})) for name in names}
    except (KeyError, ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    unavailable = []
    for name, m in chosen.items():
        if not isinstance(m, FeatureMetric):
            raise click.ClickException(f"{name}: has no reference statistics (only feature metrics do, e.g. fid, fvd)")
        try:
            ref = m.reference_statistics(manifest, split, device=device, cache=not no_cache,
                                         unverified_ok=unverified_weights, batch_size=batch_size)
        except MetricUnavailable as exc:  # the other metrics still run; the command fails at the end
            click.echo(f"{name}: not computed: {exc}", err=True)
            unavailable.append(name)
            continue
        counts = ", ".join(f"{s}: N={g.total().count}" + _padding(ref.padding.get(s)) for s, g in ref.streams.items())
        flag = "" if ref.provenance.get("verified") else " [UNVERIFIED weights]"
        click.echo(f"{name} {split}: {ref.n_volumes} volumes ({counts}){flag}")
        if export_dir is not None:
            out = ref.save(Path(export_dir) / f"{name}-{split}.npz")
            click.echo(f"  exported to {out}")
    if unavailable:
        raise click.ClickException(f"no statistics for: {', '.join(unavailable)} (see above)")


def _padding(counts: list[int] | None) -> str:
    """`` (31% padding)``: the share of a stream's slices that were pure padding, or nothing if none were."""
    return f" ({counts[0] / counts[1]:.0%} padding)" if counts and counts[0] else ""


def _feature_metrics() -> list[str]:
    """Registered metrics that keep reference statistics of a real split (FID, FVD, and such plugins)."""
    from ctbench.metrics import METRICS
    from ctbench.metrics.feature import FeatureMetric

    return [st.name for st in METRICS.statuses() if st.cls is not None and issubclass(st.cls, FeatureMetric)]


@click.group()
def weights() -> None:
    """Feature-network weights: fetch (download + verify), import (air-gapped), convert, status."""


@weights.command("fetch")
@click.argument("names", nargs=-1)
def fetch_cmd(names: tuple[str, ...]) -> None:
    """Download NAMES (default: all that are downloaded) from their canonical URLs, verifying sha256."""
    from ctbench.weights import fetch
    from ctbench.weights_catalog import WEIGHTS

    for name in names or tuple(n for n, s in WEIGHTS.items() if s.kind != "converted"):
        try:
            r = fetch(name)
        except (KeyError, ValueError, OSError) as exc:
            why = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc  # str(KeyError) adds quotes
            raise click.ClickException(f"{name}: {why}") from exc
        if r.verified:
            click.echo(f"{name}: {r.path} (verified, sha256 {r.sha256})")
        else:
            click.echo(
                f"{name}: {r.path}\n  UNPINNED: ctbench pins no hash for it (none is published), so it cannot be "
                f"verified; its content hash is sha256 {r.sha256}. Results made with it are marked unverified and "
                "need --unverified-weights; compare this hash with `ctbench weights status` on another machine to "
                "check both have the same module."
            )


@weights.command("import")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--name", default=None, help="Which weights PATH is (default: guessed from the file type).")
@click.option("--unverified-weights", is_flag=True, help="Import even if the sha256 is not the pinned one.")
def import_cmd(path: Path, name: str | None, unverified_weights: bool) -> None:
    """Copy a weights file or a TF-Hub SavedModel folder into the cache (for machines without internet)."""
    from ctbench.weights import import_weights

    try:
        r = import_weights(path, name, unverified_ok=unverified_weights)
    except KeyError as exc:  # an unknown --name; str(KeyError) adds quotes
        raise click.ClickException(f"--name {name}: {exc.args[0] if exc.args else exc}") from exc
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{r.spec.name}: {r.path} ({'verified' if r.verified else 'UNVERIFIED, sha256 ' + r.sha256})")


@weights.command("convert")
@click.argument("name", default="i3d-kinetics-400")
def convert_cmd(name: str) -> None:
    """Convert the installed TF-Hub module NAME for ctbench's PyTorch I3D, so that FVD runs without TensorFlow.

    Needs TensorFlow for this step only (pip install 'ctbench[fvd]'). The port is checked against the module on two
    videos before anything is written.
    """
    from ctbench.weights import convert

    try:
        module, done = convert(name)
    except (ValueError, MetricUnavailable) as exc:
        raise click.ClickException(str(exc)) from exc
    pin = module.spec.sha256 or "none"
    click.echo(f"{name} -> {done.path}\n"
               f"  sha256 {done.sha256}\n"
               f"  converted from {module.path}, sha256 {done.source_sha256} (pinned: {pin})\n"
               f"  largest logit difference to the module: {done.parity_error:.1e} of the largest logit")
    if not module.verified:
        click.echo("  UNVERIFIED: the module is not the pinned one, so FVD with these weights is marked unverified "
                   "(it needs --unverified-weights)")


@weights.command("status")
def status_cmd() -> None:
    """Show which weights are present and whether their sha256 matches the pin."""
    from ctbench.weights import status, weights_dir

    click.echo(f"weights cache: {weights_dir()}")
    for s in status():
        click.echo(f"{s.name:22s} {s.state:10s} {s.path or '-'}")
        if s.sha256:
            click.echo(f"{'':22s} sha256 {s.sha256} (pinned: {s.pinned or 'none'})")
        if s.explanation:
            click.echo(f"{'':22s} {s.explanation}")
