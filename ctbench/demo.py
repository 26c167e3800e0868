"""The offline demo (``ctbench demo`` / ``make demo``): phantoms → prepared set → evaluations → leaderboard.

Runs on a CPU with no downloads. Every step is resumable: a rerun with the same ``out`` (after Ctrl-C, say)
reuses the phantoms, the prepared cases (``ctbench data prepare`` skips finished ones), the tiny reference
model (a finished checkpoint is reused, an interrupted training is resumed from its last checkpoint) and the
result records (same run id), and rebuilds the leaderboard.

The phantoms are procedural (``ctbench.data.synth``), NOT FLARE22 scans: the numbers show that the pipeline
works, not how good any generator is on real CT.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# yaml, torch, the plugins and the metrics are imported when the demo runs (`ctbench demo --help` stays fast)

REFERENCE = "vqgan-ddpm"
REFERENCE_CONFIG = "tiny"
"""The config the reference plugin ships (:meth:`~ctbench.api.Generator.config_files`) that the demo trains."""
BASELINES = ("real-holdout", "mean-volume", "noise")
DATA_SOURCE = "synthetic phantoms (ctbench data synth), NOT FLARE22 scans"
"""The demo board's data, as its title states."""


class DemoError(RuntimeError):
    """The demo cannot go on (e.g. a phantom failed to prepare); the message says which step and why."""


@dataclass
class DemoOptions:
    """Demo settings; the CLI shows these defaults."""

    out: str = "demo-out"
    cases: int = 48
    """Phantoms to synthesise (split 80/10/10 by the protocol's hash rule: 35/8/5 at 48)."""
    samples: int = 8
    """Samples per generator, at most the held-out split's size (real-holdout never repeats a volume and every
    run gets the same n, so the board ranks them together)."""
    seed: int = 0
    workers: int = 2
    full_size: bool = False
    """Full-size phantoms (slower to make) instead of the quick coarse ones; prepared volumes are 64×128×128 anyway."""
    reference: bool = True
    """Train and evaluate the tiny reference model when its plugin loads."""
    generators: list[str] = field(default_factory=lambda: list(BASELINES))
    data: str | None = None
    """An existing prepared folder to use instead of synthesising and preparing phantoms."""


@dataclass
class DemoResult:
    """What a demo run made: one record per evaluated generator and the leaderboard built from them."""

    records: list[Path]
    """The result records, in the order they were evaluated."""
    leaderboard: dict[str, Path]
    """The leaderboard's files by name, as :func:`ctbench.leaderboard.build` returns them."""
    skipped: dict[str, str]
    """Feature metric → the reason it was skipped (same on every run of the demo)."""
    notes: list[str]
    """Steps the demo could not do (e.g. the reference model when its plugin is missing)."""


def enabling_command(reason: str) -> str | None:
    """The ``ctbench weights ...`` command quoted in a metric's unavailability message, if any."""
    m = re.search(r"`(ctbench weights [^`]+)`", reason)
    return m.group(1) if m else None


def _train_reference(prepared: Path, run_dir: Path, say: Callable[[str], object]) -> Path | None:
    """Train the reference plugin's shipped tiny config into ``run_dir``; reuse or resume what is there.

    A checkpoint the plugin loads is reused; one it refuses (training was interrupted before the last stage
    finished) is resumed; a checkpoint that cannot be resumed either is a :class:`DemoError` naming the run
    folder to delete.
    """
    import yaml

    from ctbench.api import REGISTRY, plugin_errors

    status = REGISTRY.status(REFERENCE) if REFERENCE in REGISTRY.names() else None
    if status is None or status.cls is None:
        why = status.error if status else "not registered"
        say(f"reference model skipped: plugin {REFERENCE!r} not available ({why})")
        return None
    cls = status.cls
    with plugin_errors(REFERENCE, "config_files"):
        config_file = cls.config_files().get(REFERENCE_CONFIG)
    if config_file is None:
        say(f"reference model skipped: plugin {REFERENCE!r} ships no {REFERENCE_CONFIG!r} config")
        return None
    with plugin_errors(REFERENCE, "checkpoint_path"):
        ckpt = Path(cls.checkpoint_path(run_dir))
    resume = False
    if ckpt.is_file():
        try:
            with plugin_errors(REFERENCE, "load"):
                cls.load(ckpt)
        except ValueError as exc:
            say(f"reference model: {exc}")
            resume = True
        else:
            say(f"reference model: reusing {ckpt}")
            return ckpt
    overrides = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    variant = overrides.pop("variant", None) or status.default_variant
    if resume:
        say(f"resuming the interrupted training of the tiny reference model from {ckpt} ...")
    else:
        say(f"training the tiny reference model ({config_file.name}) on the train split ...")
    t = time.perf_counter()
    try:
        with plugin_errors(REFERENCE, "train", expected=(FileExistsError, FileNotFoundError)):
            config = cls.resolve_config(variant, overrides)
            ckpt = Path(cls.train(config, prepared, run_dir, variant=variant, resume=resume))
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        if not resume:
            raise
        raise DemoError(f"{exc}; delete {run_dir} and run the demo again to train it afresh") from exc
    say(f"  trained in {time.perf_counter() - t:.0f} s -> {ckpt}")
    return ckpt


def run_demo(opts: DemoOptions, say: Callable[[str], object] = print) -> DemoResult:
    """Run the whole demo into ``opts.out``; ``say`` receives one line per step."""
    from ctbench.data.batch import prepare
    from ctbench.data.prepared import load_manifest
    from ctbench.data.synth import synthesize
    from ctbench.evaluate import EvalOptions, evaluate
    from ctbench.leaderboard import build
    from ctbench.record import read_record

    out = Path(opts.out)
    results = out / "results"
    notes: list[str] = []
    if opts.data:
        prepared = Path(opts.data)
        say(f"[1/4] [2/4] using the prepared folder {prepared}")
        manifest = load_manifest(prepared)
    else:
        raw, prepared = out / "raw", out / "prepared"
        images = sorted((raw / "images").glob("*.nii*")) if (raw / "images").is_dir() else []
        if len(images) != opts.cases:
            say(f"[1/4] synthesising {opts.cases} phantoms (NOT FLARE22 scans) into {raw}")
            synthesize(raw, opts.cases, opts.seed, small=not opts.full_size)
        else:
            say(f"[1/4] reusing {len(images)} phantoms in {raw}")
        say(f"[2/4] preparing them under flare22-v1 into {prepared}")
        result = prepare(raw, prepared, workers=opts.workers)
        if result.failed:
            errors = "; ".join(r.error or r.id for r in result.failed)
            raise DemoError(f"{len(result.failed)} phantom(s) in {raw} failed to prepare: {errors}")
        manifest = result.manifest

    say(f"[3/4] evaluating {', '.join(opts.generators)}" + (f" and {REFERENCE} (tiny)" if opts.reference else ""))
    runs: list[tuple[str, str | None]] = [(g, None) for g in opts.generators]
    if opts.reference:
        ckpt = _train_reference(prepared, out / "runs" / "vqgan-ddpm-tiny", say)
        if ckpt is not None:
            runs.append((REFERENCE, str(ckpt)))
        else:
            notes.append(f"{REFERENCE} was not evaluated (see above)")
    # the hash split of a small set can leave val or test with one case: compare with the larger of the two
    # held-out splits and let real-holdout draw from the other
    sizes = {s: len(manifest.select(s)) for s in ("val", "test")}
    reference = max(sizes, key=lambda s: (sizes[s], s == "test"))
    holdout = "val" if reference == "test" else "test"
    say(f"  reference split {reference!r} ({sizes[reference]} cases), real-holdout from {holdout!r} ({sizes[holdout]})")
    # real-holdout never repeats a volume, and the board ranks only runs of equal n: every run gets this n
    n = min(opts.samples, sizes[holdout])
    records: list[Path] = []
    skipped: dict[str, str] = {}
    for spec, checkpoint in runs:
        path = evaluate(
            EvalOptions(
                data=str(prepared),
                generator=spec,
                checkpoint=checkpoint,
                overrides={"split": holdout} if spec == "real-holdout" else {},
                n=n,
                seed=opts.seed,
                split=reference,
                out=str(results),
            ),
            argv=None,
        )
        assert path is not None  # one process: it is rank 0, which returns the record
        rec = read_record(path)
        skipped.update(rec["skipped"])
        records.append(path)
        say(f"  {spec}: {path}")
    say(f"[4/4] building the leaderboard from {results}")
    source = f"prepared folder {prepared}" if opts.data else DATA_SOURCE
    board = build(results, out / "leaderboard", against="real-holdout", data_source=source)
    return DemoResult(records, board, skipped, notes)
