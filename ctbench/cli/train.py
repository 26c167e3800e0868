"""``ctbench train NAME[@VARIANT]``: train a trainable generator plugin through the registry."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # torch and the plugins are imported when the command runs: `train --help` stays fast
    from ctbench.api import Generator

if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable
else:  # Python 3.10 has it in importlib.abc only
    from importlib.abc import Traversable

CPU_STEP_S = {"vqgan": 1.7, "ddpm": 0.7}
"""Seconds per training step of vqgan-ddpm at full size (64×128×128) on a 2-core CPU (docs/benchmarks.md)."""


def read_config_file(path: Traversable) -> tuple[str | None, dict]:
    """A YAML config file → (its ``variant`` key or None, the rest as overrides of the plugin's defaults)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise click.ClickException(f"{path}: cannot read the config: {exc}") from exc
    if not isinstance(data, dict):
        raise click.ClickException(f"{path}: a config file must be a YAML mapping, got {type(data).__name__}")
    return data.pop("variant", None), data


def find_config(cls: type[Generator], value: str) -> Traversable:
    """``--config VALUE``: the file ``VALUE`` if there is one, else the config of that name the plugin ships."""
    from ctbench.api import plugin_errors

    path = Path(value)
    if path.is_file():
        return path
    with plugin_errors(cls.name, "config_files"):
        shipped = cls.config_files()
    if value in shipped:
        return shipped[value]
    names = ", ".join(shipped) or "none"
    raise click.ClickException(f"--config {value}: no such file, nor a config {cls.name!r} ships (it ships: {names})")


@contextlib.contextmanager
def _only_cpu(on: bool) -> Iterator[None]:
    """Hide every CUDA device from this process while training (``--device cpu``); restored afterwards.

    Plugins choose CUDA when torch sees one; hiding the devices before CUDA starts makes them choose the CPU.
    """
    if not on:
        yield
        return
    import torch

    if torch.cuda.is_initialized():
        raise click.ClickException("--device cpu: CUDA is already initialised in this process; run ctbench afresh")
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    try:
        yield
    finally:
        if before is None:
            del os.environ["CUDA_VISIBLE_DEVICES"]
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = before


def _device(choice: str) -> str:
    """``--device`` → where training runs: ``cpu`` or ``cuda`` (``auto``: CUDA when torch sees a device)."""
    from ctbench.cli.options import check_device

    if choice == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return check_device(choice)


def _cpu_warning(config: dict[str, Any]) -> str | None:
    """One warning when ``config`` trains at the protocol's full volume size on a CPU: how long a step takes."""
    from ctbench.protocol import DEFAULT_PROTOCOL

    shape = (config.get("data") or {}).get("volume_shape")
    if shape is None or list(shape) != list(DEFAULT_PROTOCOL.tensor_shape[1:]):
        return None
    stages = {k: v["train"]["steps"] for k, v in config.items()
              if isinstance(v, dict) and "steps" in (v.get("train") or {})}
    steps = " + ".join(f"{n:,} {k}" if isinstance(n, int) else f"{n!r} {k}" for k, n in stages.items())
    return (
        f"warning: a full-size config ({'×'.join(map(str, shape))} volumes, {steps} steps) on a CPU: one step takes "
        f"seconds here (about {CPU_STEP_S['vqgan']:g} s VQGAN, {CPU_STEP_S['ddpm']:g} s DDPM at batch 2 on 2 idle "
        "cores), so training takes days to weeks. Train on a GPU (--device cuda), or try --config tiny first."
    )


def _train_cases(data: Path) -> int | None:
    """Cases in the prepared folder's train split (None when its manifest cannot be read: the plugin says why)."""
    from ctbench.data.prepared import load_manifest

    try:
        return len(load_manifest(data).select("train"))
    except (FileNotFoundError, ValueError):
        return None


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
@click.option("--device", "device_choice", type=click.Choice(["auto", "cpu", "cuda", "gpu"]), default="auto",
              show_default=True, help="auto: CUDA when there is a device, else the CPU. cuda (alias gpu) is "
              "checked before any work; under torchrun each process takes its local rank's GPU.")
def train(
    spec: str, config_name: str | None, data: Path, out: Path, stage: str | None, resume: bool, device_choice: str
) -> None:
    """Train a generator plugin; works the same under `torchrun` (DistributedDataParallel).

    \b
    Examples:
      ctbench train vqgan-ddpm --config tiny --data prepared/ --out runs/tiny
      ctbench train vqgan-ddpm@c8 --config flare22 --data prepared/ --out runs/c8 --device cuda
      ctbench train vqgan-ddpm --config my-flare22.yaml --data prepared/ --out runs/full --resume
      torchrun --nproc-per-node 8 $(which ctbench) train vqgan-ddpm --config ... --data ... --out ...

    Variants (ablations) and shipped configs of each generator: `ctbench ls`. A variant's own keys win over
    the config file's (vqgan-ddpm@c8 with flare22 trains c = 8); a file that sets them to other values is
    refused. Ctrl-C leaves the last checkpoint intact; --resume continues from it.
    """
    from ctbench.api import REGISTRY, PluginError, UnknownNameError, parse_spec, plugin_errors

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
    main = os.environ.get("RANK", "0") == "0"  # under torchrun, one line, not one per process
    device = "cpu" if device_choice == "cpu" else _device(device_choice)
    n_train = _train_cases(data)
    try:
        with plugin_errors(name, "train", expected=(FileExistsError, FileNotFoundError)):
            config = cls.resolve_config(variant, overrides)
        if main:
            click.echo(f"device: {device}; the progress bar shows the time per step (s/it) and the time left")
            warning = _cpu_warning(config) if device == "cpu" else None
            if warning:
                click.echo(warning, err=True)
            if n_train is not None and n_train < 2:
                click.echo(f"warning: {data} has {n_train} case(s) in its train split; a model trained on it can "
                           "only copy that scan (prepare more scans)", err=True)
        with _only_cpu(device_choice == "cpu"), plugin_errors(name, "train", expected=(FileExistsError,
                                                                                     FileNotFoundError)):
            checkpoint = cls.train(config, data, out, stage=stage, resume=resume, variant=variant)
    except (UnknownNameError, PluginError, ValueError, FileExistsError, FileNotFoundError) as exc:
        where = f"{config_path}: " if config_path and "config key" in str(exc) else ""
        raise click.ClickException(f"{where}{exc}") from exc
    except KeyboardInterrupt:
        if Path(cls.checkpoint_path(out)).is_file():
            click.echo(f"\ninterrupted: {out} keeps its last checkpoint (checkpoints are written atomically); "
                       "run the same command with --resume to continue", err=True)
        else:
            click.echo("\ninterrupted before the first checkpoint: nothing was saved; run the same command again "
                       "to start over", err=True)
        raise SystemExit(130) from None
    if main:
        click.echo(f"checkpoint: {checkpoint}")
