"""``ctbench evaluate`` and ``ctbench ls``: thin wrappers over :mod:`ctbench.evaluate` and the registry."""

from __future__ import annotations

import json
from typing import Any

import click

from ctbench.cli.options import DEVICE_HELP, SEED, check_device
from ctbench.evaluate.options import EvalOptions

_D = EvalOptions()


def key_values(pairs: tuple[str, ...], option: str = "--set", example: str = "sampler.steps=50") -> dict:
    """``key.sub=value`` pairs (values parsed as YAML) → nested dict; ``option`` and ``example`` for errors."""
    import yaml

    out: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r}: expected KEY=VALUE (e.g. {example})", param_hint=option)
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(raw)
    return out


@click.command()
@click.option("--generator", "-g", help="NAME[@VARIANT] of a registered generator (see `ctbench ls`).")
@click.option("--samples", type=click.Path(exists=True, file_okay=False), help="Score a folder of NIfTI volumes.")
@click.option("--checkpoint", type=click.Path(), help="Checkpoint file for the generator.")
@click.option("--data", type=click.Path(exists=True, file_okay=False), help="Prepared folder (ctbench data prepare).")
@click.option(
    "--n", "--num-samples", "n", type=click.IntRange(min=1), default=_D.n, show_default=True, help="Number of samples."
)
@click.option("--seed", type=SEED, default=_D.seed, show_default=True, help="Sample i is seeded by (seed, i).")
@click.option(
    "--metrics",
    help="Comma-separated metric names (see `ctbench ls`). Default: every metric that can run here (others are "
    "recorded as skipped). Named metrics that cannot run are an error.",
)
@click.option(
    "--split",
    type=click.Choice(["train", "val", "test"]),
    default=_D.split,
    show_default=True,
    help="Reference split the samples are compared with.",
)
@click.option("--out", type=click.Path(file_okay=False), default=_D.out, show_default=True, help="Results folder.")
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=_D.batch_size, show_default=True, help="Volumes per sample()."
)
@click.option(
    "--device", default=_D.device, show_default=True, help="Where the generator and extractors run: " + DEVICE_HELP
)
@click.option("--save-samples", is_flag=True, help="Also write the samples as NIfTI in HU under OUT/samples/RUN_ID/.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Config override (repeatable).")
@click.option("--unverified-weights", is_flag=True, help="Allow feature weights whose sha256 differs (unranked).")
@click.option(
    "--slices",
    type=click.Choice(["all", "body"]),
    help="FID slices: all (the protocol's, default) or body (slices that are pure padding left out on both sides).",
)
@click.option(
    "--metric-option",
    "metric_opts",
    multiple=True,
    metavar="METRIC.KEY=VALUE",
    help="A metric's option, e.g. fid.kid_subset_size=500 (repeatable; recorded, part of the comparability key).",
)
@click.option(
    "--diversity-volumes",
    type=click.IntRange(min=2),
    default=_D.diversity_volumes,
    show_default=True,
    help="MS-SSIM uses the first this-many volumes on each side (pairs grow quadratically).",
)
@click.option(
    "--montage-volumes", type=click.IntRange(min=0), default=_D.montage_volumes, show_default=True, help="0: none."
)
@click.option("--no-cache", is_flag=True, help="Recompute reference statistics and the training index.")
@click.option("--force", is_flag=True, help="Evaluate again even if OUT already holds this run's record.")
@click.option("--rerun", type=click.Path(exists=True, dir_okay=False), help="Repeat the run a record describes.")
def evaluate(**kw: Any) -> None:
    """Sample a generator (or read --samples), compute the metrics, write one JSON result record.

    \b
    Examples:
      ctbench evaluate --generator noise --data prepared/ --n 16 --seed 0
      ctbench evaluate -g vqgan-ddpm@c8 --checkpoint ckpt.pt --data prepared/ --n 400 --save-samples
      torchrun --nproc-per-node 4 $(which ctbench) evaluate -g noise --data prepared/ --num-samples 1024
      ctbench evaluate --rerun results/noise-n16-s0-1a2b3c4d5e.json
    """
    from ctbench.api import PluginError, UnknownNameError
    from ctbench.evaluate import EvaluationError, default_argv, rerun_options
    from ctbench.evaluate import evaluate as run

    if kw["rerun"]:
        try:
            opts = rerun_options(kw["rerun"])
        except (EvaluationError, ValueError) as exc:
            raise click.ClickException(str(exc)) from exc
    else:
        if not kw["data"]:
            raise click.UsageError("--data PREPARED_DIR is required")
        opts = EvalOptions(
            data=kw["data"],
            generator=kw["generator"],
            samples=kw["samples"],
            checkpoint=kw["checkpoint"],
            overrides=key_values(kw["sets"]),
            n=kw["n"],
            seed=kw["seed"],
            metrics=metric_names(kw["metrics"]),
            split=kw["split"],
            out=kw["out"],
            batch_size=kw["batch_size"],
            device=kw["device"],
            save_samples=kw["save_samples"],
            unverified_weights=kw["unverified_weights"],
            diversity_volumes=kw["diversity_volumes"],
            montage_volumes=kw["montage_volumes"],
            force=kw["force"],
            cache=not kw["no_cache"],
            metric_options=metric_options(kw["metric_opts"], kw["slices"]),
        )
    opts.device = check_device(opts.device)  # a record made on a GPU, rerun here, is checked too
    try:
        path = run(opts, argv=default_argv())
    except KeyboardInterrupt:
        click.echo("\ninterrupted: no record was written; run the same command again to evaluate (reference "
                   "statistics already cached are reused; samples are drawn again)", err=True)
        raise SystemExit(130) from None
    except (UnknownNameError, PluginError, EvaluationError, ValueError, FileNotFoundError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    if path is None:
        return
    from ctbench.record import read_record

    record = read_record(path)
    click.echo(f"record: {path}")
    for key, value in record["metrics"].items():
        v = value["value"]
        iv = value.get("interval")
        if v is None:
            shown = "—" + (f"  ({value['note']})" if value.get("note") else "")
        else:
            shown = f"{v:.4g}" + (f"  [{iv[0]:.4g}, {iv[1]:.4g}]" if iv else "")
            shown += "  (rank-deficient: compare only at equal N)" if value.get("rank_deficient") else ""
        click.echo(f"  {key:<14} {shown}")
    for name, reason in record["skipped"].items():
        click.echo(f"  {name:<14} skipped: {reason.splitlines()[0]}")


def metric_names(text: str | None) -> list[str] | None:
    """``--metrics a,b`` → ``["a", "b"]``; None when not given. A value that names no metric is an error."""
    if text is None:
        return None
    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise click.BadParameter(f"{text!r}: names no metric (e.g. --metrics intensity,fid; see `ctbench ls`)",
                                 param_hint="--metrics")
    return names


def metric_options(pairs: tuple[str, ...], slices: str | None) -> dict[str, dict[str, Any]]:
    """``--metric-option METRIC.KEY=VALUE`` pairs and ``--slices`` → ``{metric: {option: value}}``."""
    options = key_values(pairs, "--metric-option", "fid.kid_subset_size=500")
    for metric, value in options.items():
        if not isinstance(value, dict):
            raise click.BadParameter(f"{metric}={value!r}: expected METRIC.KEY=VALUE", param_hint="--metric-option")
    if slices is not None:
        options.setdefault("fid", {})["slices"] = slices
    return options


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def ls(as_json: bool) -> None:
    """List generators (variants, shipped configs; broken plugins with the reason) and metrics."""
    from ctbench.api import REGISTRY

    gens: list[dict[str, Any]] = []
    for st in REGISTRY.statuses():  # each plugin imported and checked once; no plugin code runs here
        row: dict = {"name": st.name, "target": st.target, "package": st.package, "version": st.package_version}
        if st.cls is None:
            row["error"] = st.error
        else:
            row["variants"] = st.variants
            row["trainable"] = st.cls.trainable
            row["configs"] = st.configs
        gens.append(row)
    metrics = _metric_rows()
    from ctbench.metrics import METRICS

    shadowed = METRICS.shadowed()
    if as_json:
        click.echo(json.dumps({"generators": gens, "metrics": metrics, "shadowed_metrics": shadowed}, indent=2))
        return
    click.echo("generators:")
    for g in gens:
        where = f"{g['package']} {g['version']}" if g["package"] else g["target"]
        if "error" in g:
            click.echo(f"  {g['name']:<16} BROKEN ({where}): {g['error']}")
        else:
            train = ", trainable" if g["trainable"] else ""
            configs = f", configs: {', '.join(g['configs'])}" if g["configs"] else ""
            click.echo(f"  {g['name']:<16} variants: {', '.join(g['variants'])}  [{where}{train}{configs}]")
    click.echo("metrics:")
    for m in metrics:
        keys = f"[{', '.join(m['keys'])}] " if "keys" in m else ""
        click.echo(f"  {m['name']:<16} {keys}{m['status']}")
    for entry in shadowed:
        click.echo(f"  ignored: plugin entry point {entry} takes a built-in metric's name", err=True)
    if any("error" in g for g in gens) or any(m["status"].startswith("broken") for m in metrics):
        click.echo("(broken plugins do not affect the others; `ctbench evaluate` refuses them)", err=True)


def _metric_rows() -> list[dict]:
    """One row per registered metric: its declaration, and whether it can run here (or why not)."""
    from ctbench.metrics import METRICS, MetricUnavailable

    rows = []
    for st in METRICS.statuses():
        row: dict = {"name": st.name, "target": st.target, "package": st.package, "version": st.package_version}
        if st.cls is None:
            row["status"] = f"broken: {st.error}"
            rows.append(row)
            continue
        metric = METRICS.create(st.name)
        row.update({"metric_version": metric.version, "keys": list(metric.key_names()),
                    "weights": list(metric.weights), "summary": metric.summary})
        try:
            metric.check_ready()
            row["status"] = "ready" + ("" if metric.weights else " (needs no weights)")
        except MetricUnavailable as exc:
            row["status"] = "unavailable: " + str(exc).splitlines()[0]
        except Exception as exc:  # a broken optional dependency or plugin must not break `ls`
            row["status"] = f"error: {type(exc).__name__}: {exc}"
        rows.append(row)
    return rows
