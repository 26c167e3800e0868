"""``ctbench data``: synthesise phantoms and prepare scans under the data protocol."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ctbench.cli.options import SEED
from ctbench.data.defaults import DEFAULT_N, DEFAULT_SEED, DEFAULT_WORKERS

# the data modules (numpy, nibabel, SimpleITK) are imported when a command runs, so `--help` starts fast


@click.group()
def data() -> None:
    """Synthesise phantoms and prepare scans (FLARE22 protocol)."""


@data.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--n", "n", type=click.IntRange(min=1), default=DEFAULT_N, show_default=True, help="Number of phantoms.")
@click.option("--seed", type=SEED, default=DEFAULT_SEED, show_default=True, help="Same seed, same phantoms.")
@click.option("--small", is_flag=True, help="Coarse, short scans (1 mm, 20-32 slices of 5 mm) for quick tests.")
def synth(out: Path, n: int, seed: int, small: bool) -> None:
    """Write N procedural abdominal CT phantoms (HU, with label maps) to OUT/images and OUT/labels.

    These are synthetic phantoms, NOT FLARE22 scans. Example: ctbench data synth raw --n 8 --seed 0
    """
    from ctbench.data.synth import synthesize

    try:
        paths = synthesize(out, n, seed, small=small)
    except OSError as exc:
        raise click.ClickException(f"{out}: cannot write the phantoms ({exc.strerror or exc})") from exc
    click.echo(f"wrote {len(paths)} phantoms to {out / 'images'} (label maps in {out / 'labels'})")


@data.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--workers", type=click.IntRange(min=1), default=DEFAULT_WORKERS, show_default=True, help="Parallel processes."
)
@click.option(
    "--protocol",
    "protocol_name",
    default=None,
    help="Data protocol (default: the current one, flare22-v1); recorded in the manifest, a rerun must use the same.",
)
def prepare(src: Path, out: Path, workers: int, protocol_name: str | None) -> None:
    """Prepare every scan in SRC (NIfTI files or DICOM series folders) into OUT, with OUT/manifest.json.

    A rerun skips the cases already prepared from the same source bytes. Exits 1 if any scan failed.
    Example: ctbench data prepare raw prepared --workers 2
    """
    from ctbench.data.batch import PrepareError
    from ctbench.data.batch import prepare as run_prepare
    from ctbench.protocol import DEFAULT_PROTOCOL, get_protocol

    if src.is_file():
        raise click.ClickException(
            f"{src}: is a file; SRC must be a folder of scans (NIfTI files or DICOM series folders): "
            "put the scan into a folder of its own and pass that folder"
        )
    try:
        protocol = get_protocol(protocol_name) if protocol_name else DEFAULT_PROTOCOL
    except KeyError as exc:
        raise click.BadParameter(str(exc.args[0]), param_hint="--protocol") from None
    try:
        result = run_prepare(src, out, workers=workers, protocol=protocol)
    except (PrepareError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    m = result.manifest
    splits = {s: len(m.select(s)) for s in ("train", "val", "test")}
    click.echo(
        f"{out}: {len(result.prepared)} prepared, {len(result.skipped)} already done, {len(result.failed)} failed; "
        f"train/val/test = {splits['train']}/{splits['val']}/{splits['test']}; manifest_sha256 {m.sha256[:16]}"
    )
    if result.failed:
        click.echo(f"{len(result.failed)} scan(s) failed:", err=True)
        for rec in result.failed:
            click.echo(f"  {rec.error}", err=True)
        sys.exit(1)


@data.command()
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--preview", type=click.Path(dir_okay=False, path_type=Path), help="Also write a PNG of the volumes.")
@click.option("--split", type=click.Choice(["train", "val", "test"]), help="Cases shown in the preview (default all).")
@click.option("--cases", "max_cases", type=click.IntRange(min=1), default=4, show_default=True)
def info(root: Path, preview: Path | None, split: str | None, max_cases: int) -> None:
    """Summarise a prepared folder: protocol, manifest hash, cases per split, HU ranges, failures.

    Example: ctbench data info prepared --preview prepared.png
    """
    from ctbench.data.prepared import load_manifest
    from ctbench.data.preview import save_preview

    if preview is not None and preview.suffix.lower() != ".png":
        raise click.BadParameter(f"{preview}: the preview is a PNG; name a .png file", param_hint="--preview")
    try:
        m = load_manifest(root)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    done = m.select(None)
    click.echo(f"{root}: protocol {m.protocol['name']} {m.protocol['version']}, manifest_sha256 {m.sha256}")
    click.echo("cases: " + ", ".join(f"{s} {len(m.select(s))}" for s in ("train", "val", "test")))
    if done:
        lo = [c.hu_range[0] for c in done]
        hi = [c.hu_range[1] for c in done]
        click.echo(f"HU clip range: lo {min(lo):.0f} .. {max(lo):.0f}, hi {min(hi):.0f} .. {max(hi):.0f}")
    failed = [c for c in m.cases if c.status != "ok"]
    for c in failed:
        click.echo(f"{c.status}: {c.error or c.id}")
    if preview is not None:
        try:
            click.echo(f"preview: {save_preview(root, preview, split=split, max_cases=max_cases)}")
        except OSError as exc:
            why = f"{exc.filename}: {exc.strerror}" if exc.filename is not None else str(exc)
            raise click.ClickException(f"{preview}: cannot write the preview ({why})") from exc
