"""``ctbench train NAME[@VARIANT]``: train a trainable generator plugin through the registry."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import yaml

from ctbench.api import REGISTRY, Generator, PluginError, UnknownNameError, parse_spec, plugin_errors

if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable
else:  # Python 3.10 has it in importlib.abc only
    from importlib.abc import Traversable


def read_config_file(path: Traversable) -> tuple[str | None, dict]:
    """A YAML config file → (its ``variant`` key or None, the rest as overrides of the plugin's defaults)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise click.ClickException(f"{path}: cannot read the config: {exc}") from exc
    if not isinstance(data, dict):
        raise click.ClickException(f"{path}: a config file must be a YAML mapping, got {type(data).__name__}")
    return data.pop("variant", None), data


def find_config(cls: type[Generator], value: str) -> Traversable:
    """``--config VALUE``: the file ``VALUE`` if there is one, else the config of that name the plugin ships."""
    path = Path(value)
    if path.is_file():
        return path
    with plugin_errors(cls.name, "config_files"):
        shipped = cls.config_files()
    if value in shipped:
        return shipped[value]
    names = ", ".join(shipped) or "none"
    raise click.ClickException(f"--config {value}: no such file, nor a config {cls.name!r} ships (it ships: {names})")


@click.command()
@click.argument("spec", metavar="NAME[@VARIANT]")
@click.option("--config", "config_name", metavar="FILE|NAME",
              help="YAML file of overrides of the plugin's default config (may set `variant:`), or the name of a "
              "config the plugin ships (`ctbench ls` lists them; vqgan-ddpm: tiny, flare22).")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Prepared folder (ctbench data prepare); its train split is used.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run folder: checkpoint, sample montages.")
@click.option("--stage", default=None, help="Plugin-specific stage (vqgan-ddpm: vqgan | ddpm | all). Default: all.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.")
def train(spec: str, config_name: str | None, data: Path, out: Path, stage: str | None, resume: bool) -> None:
    """Train a generator plugin; works the same under `torchrun` (DistributedDataParallel).

    \b
    Examples:
      ctbench train vqgan-ddpm --config tiny --data prepared/ --out runs/tiny
      ctbench train vqgan-ddpm@c8 --config flare22 --data prepared/ --out runs/c8
      ctbench train vqgan-ddpm --config my-flare22.yaml --data prepared/ --out runs/full --resume
      torchrun --nproc-per-node 8 $(which ctbench) train vqgan-ddpm --config ... --data ... --out ...

    Variants (ablations) and shipped configs of each generator: `ctbench ls`. A variant's own keys win over
    the config file's (vqgan-ddpm@c8 with flare22 trains c = 8); a file that sets them to other values is
    refused. Ctrl-C leaves the last checkpoint intact; --resume continues from it.
    """
    name, variant = parse_spec(spec)
    try:
        cls = REGISTRY.get(name)
    except (UnknownNameError, PluginError) as exc:
        raise click.ClickException(str(exc)) from exc
    if not cls.trainable:
        raise click.ClickException(f"generator {name!r} is not trainable")
    config_path = find_config(cls, config_name) if config_name else None
    file_variant, overrides = read_config_file(config_path) if config_path else (None, {})
    if variant and file_variant and variant != file_variant:
        raise click.ClickException(f"{config_path}: sets variant {file_variant!r} but the command names {variant!r}")
    variant = variant or file_variant or REGISTRY.status(name).default_variant
    try:
        with plugin_errors(name, "train", expected=(FileExistsError, FileNotFoundError)):
            config = cls.resolve_config(variant, overrides)
            checkpoint = cls.train(config, data, out, stage=stage, resume=resume, variant=variant)
    except (UnknownNameError, PluginError, ValueError, FileExistsError, FileNotFoundError) as exc:
        where = f"{config_path}: " if config_path and "config key" in str(exc) else ""
        raise click.ClickException(f"{where}{exc}") from exc
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: {out} keeps its last checkpoint (checkpoints are written atomically); "
                   "run the same command with --resume to continue", err=True)
        raise SystemExit(130) from None
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line, not one per process
        click.echo(f"checkpoint: {checkpoint}")
