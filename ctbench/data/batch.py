"""``ctbench data prepare``: a folder of raw scans → a prepared folder (volumes + manifest).

Finds the scans (:func:`discover`), prepares each in a worker process, writes every volume and the
manifest atomically, and skips on a rerun the cases already finished from the same source bytes.
Bad scans are recorded as failed with their reason; the batch goes on.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ctbench.core.errors import CtbenchError
from ctbench.core.hashing import file_sha256
from ctbench.core.progress import progress_bar
from ctbench.data.checks import ScanError
from ctbench.data.defaults import DEFAULT_WORKERS
from ctbench.data.prepared import (
    MANIFEST_NAME,
    VOLUMES_DIR,
    CaseRecord,
    Manifest,
    load_manifest,
    volume_sha256,
    write_volume,
)
from ctbench.data.scan_io import dicom_series_files, is_nifti
from ctbench.data.split import assign_splits
from ctbench.protocol import FLARE22_V1, Protocol

MODALITY_SUFFIX = "_0000"
"""FLARE22 / nnU-Net channel suffix dropped from file names to form case ids."""
SAVE_EVERY_S = 1.0
"""The manifest is rewritten at most this often during a run (and always at the end or on Ctrl-C)."""


class PrepareError(CtbenchError, RuntimeError):
    """The whole batch cannot run (no scans, output not writable, protocol mismatch)."""


@dataclass(frozen=True)
class Source:
    """One scan to prepare: a NIfTI file or a DICOM series folder."""

    id: str
    path: Path


@dataclass
class PrepareResult:
    """What a run did: the manifest, and case ids prepared now, skipped (already done), failed."""

    manifest: Manifest
    prepared: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[CaseRecord] = field(default_factory=list)


def case_id(path: Path) -> str:
    """Case id of a source: the file name without ``.nii[.gz]`` and ``_0000``; a folder's name."""
    name = path.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    return name[: -len(MODALITY_SUFFIX)] if name.endswith(MODALITY_SUFFIX) else name


def _dicom_folders(base: Path) -> list[Path]:
    """Folders under ``base`` (any depth, ``labels/`` excepted) that hold a DICOM series themselves."""
    found, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink loop, or the same folder linked twice
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if d != "labels" and not d.startswith("."))
        candidates = [f for f in filenames if not is_nifti(Path(f)) and not f.startswith(".")]
        if candidates and dicom_series_files(dirpath):
            found.append(Path(dirpath))
    return found


def discover(src: str | os.PathLike) -> list[Source]:
    """Scans in ``src`` (or ``src/images`` when present): ``*.nii`` / ``*.nii.gz`` files directly in it, and
    DICOM series folders at any depth (``PATIENT/STUDY/SERIES`` exports work).

    Case ids: the file name without ``.nii[.gz]`` and the ``_0000`` channel suffix; for DICOM, the folder's
    path below ``src`` joined with ``_`` (the folder's name when ``src`` itself is the series). Raises
    :class:`PrepareError` when ``src`` is missing or holds no scans, or when two sources share an id.
    """
    src = Path(src)
    if not src.is_dir():
        raise PrepareError(f"{src}: source folder does not exist")
    base = src / "images" if (src / "images").is_dir() else src
    found = [(case_id(p), p) for p in sorted(base.iterdir()) if p.is_file() and is_nifti(p)]
    for folder in _dicom_folders(base):
        rel = folder.relative_to(base)
        found.append((folder.name if rel == Path(".") else "_".join(rel.parts), folder))
    if not found:
        raise PrepareError(f"{base}: no scans found (looked for *.nii, *.nii.gz and DICOM series folders)")
    sources: dict[str, Source] = {}
    for cid, p in found:
        if cid in sources:
            raise PrepareError(f"{p}: case id {cid!r} also used by {sources[cid].path}; rename one")
        sources[cid] = Source(cid, p.resolve())
    return list(sources.values())


def _check_writable(out: Path) -> None:
    try:
        (out / VOLUMES_DIR).mkdir(parents=True, exist_ok=True)
        probe = out / VOLUMES_DIR / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise PrepareError(f"{out}: output folder cannot be written ({exc.strerror or exc})") from exc


def _is_done(prev: CaseRecord | None, out: Path, source_sha: str) -> bool:
    if prev is None or prev.status != "ok" or prev.source_sha256 != source_sha or not prev.output:
        return False
    try:
        return volume_sha256(out / prev.output) == prev.volume_sha256
    except (OSError, ValueError):  # missing or damaged output: do it again
        return False


def prepare_case(source: Source, out: Path, protocol: Protocol, previous: dict | None) -> tuple[str, dict]:
    """Prepare one case (runs in a worker). Returns ``(action, record as dict)``, action one of
    ``"prepared"``, ``"skipped"`` (finished before from the same source bytes) or ``"failed"``."""
    from ctbench.data.pipeline import load_checked, prepare_scan

    rec = CaseRecord(id=source.id, source=str(source.path))
    try:
        rec.source_sha256 = file_sha256(source.path)
        prev = CaseRecord.from_dict(previous) if previous else None
        if prev is not None and _is_done(prev, out, rec.source_sha256):
            prev.source = rec.source  # the same bytes may have moved
            return "skipped", asdict(prev)
        scan = load_checked(source.path, protocol)
        rec.original_shape = list(scan.original_shape)
        rec.original_spacing_mm = [round(s, 6) for s in scan.original_spacing_mm]
        rec.original_orientation = scan.original_orientation
        result = prepare_scan(scan, protocol)
        rel = f"{VOLUMES_DIR}/{source.id}.nii.gz"
        write_volume(out / rel, result.volume, (result.hu_lo, result.hu_hi), result.affine, protocol)
        rec.output, rec.volume_sha256 = rel, volume_sha256(out / rel)
        rec.crop_box, rec.hu_lo, rec.hu_hi = result.crop_box, result.hu_lo, result.hu_hi
        rec.status = "ok"
        return "prepared", asdict(rec)
    except ScanError as exc:
        rec.status, rec.error = "failed", str(exc)
    except OSError as exc:
        rec.status, rec.error = "failed", f"{source.path}: {exc}"
    except Exception as exc:  # one bad case must not stop the batch; the error is recorded
        rec.status, rec.error = "failed", f"{source.path}: unexpected {type(exc).__name__}: {exc}"
    return "failed", asdict(rec)


def prepare(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    workers: int = DEFAULT_WORKERS,
    protocol: Protocol = FLARE22_V1,
    progress: bool = True,
) -> PrepareResult:
    """Prepare every scan in ``src`` into ``out`` under ``protocol``; see the module docstring.

    ``workers`` > 1 runs cases in that many processes (the pipeline is single-threaded). Raises
    :class:`PrepareError` when nothing can run; per-case failures are in the result and the manifest.
    """
    out = Path(out)
    sources = discover(src)
    _check_writable(out)
    previous: dict[str, CaseRecord] = {}
    if (out / MANIFEST_NAME).is_file():
        old = load_manifest(out)
        if old.protocol != protocol.to_dict():
            raise PrepareError(
                f"{out / MANIFEST_NAME}: prepared under other protocol parameters "
                f"({old.protocol.get('name')} {old.protocol.get('version')}); use a new output folder"
            )
        previous = {c.id: c for c in old.cases}
        _check_nothing_dropped(old, src, {s.id for s in sources})
    manifest = Manifest(root=out, protocol=protocol.to_dict(), source=str(Path(src).resolve()))
    records = {s.id: previous.get(s.id, CaseRecord(id=s.id, source=str(s.path))) for s in sources}
    result = PrepareResult(manifest)
    jobs = [(s, out, protocol, asdict(previous[s.id]) if s.id in previous else None) for s in sources]
    bar = progress_bar(total=len(jobs), desc="prepare", unit="scan", enabled=progress)
    last_save = time.monotonic()

    def finish(action: str, rec_dict: dict) -> None:
        nonlocal last_save
        rec = CaseRecord.from_dict(rec_dict)
        records[rec.id] = rec
        if action == "failed":
            result.failed.append(rec)
            if not bar.disable:  # live on a terminal; logs get the summary at the end
                bar.write(f"FAILED {rec.error}")
        elif action == "prepared":
            result.prepared.append(rec.id)
        else:
            result.skipped.append(rec.id)
        bar.update(1)
        bar.set_postfix(failed=len(result.failed))
        if time.monotonic() - last_save > SAVE_EVERY_S:
            _save(manifest, records, protocol)
            last_save = time.monotonic()

    try:
        if workers <= 1:
            for job in jobs:
                finish(*prepare_case(*job))
        else:
            import multiprocessing as mp

            pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))
            try:
                futures = {pool.submit(prepare_case, *job): job[0] for job in jobs}
                for fut in as_completed(futures):
                    try:
                        finish(*fut.result())
                    except Exception as exc:  # the worker died (killed, out of memory): record, go on
                        lost = futures[fut]
                        error = f"{lost.path}: worker process failed ({type(exc).__name__}: {exc})"
                        finish("failed", asdict(CaseRecord(lost.id, str(lost.path), status="failed", error=error)))
            except BaseException:  # Ctrl-C: drop the queue instead of finishing it; finished cases are kept
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown()
    finally:
        bar.close()
        _save(manifest, records, protocol)
    result.failed.sort(key=lambda r: r.id)
    return result


def _check_nothing_dropped(old: Manifest, src: str | os.PathLike, ids: set[str]) -> None:
    """:class:`PrepareError` when ``src`` lacks cases ``old`` finished: the new manifest would drop them and draw
    the splits again (preparing another folder of scans into a prepared folder)."""
    gone = sorted(c.id for c in old.cases if c.status == "ok" and c.id not in ids)
    if gone:
        shown = ", ".join(gone[:3]) + (", ..." if len(gone) > 3 else "")
        raise PrepareError(
            f"{old.root}: {len(gone)} prepared case(s) are not in {src} ({shown}; prepared from {old.source}); "
            f"preparing {src} here would drop them and draw the splits again: use a new output folder (or remove "
            f"{old.root / MANIFEST_NAME} to start this folder over)"
        )


def _save(manifest: Manifest, records: dict[str, CaseRecord], protocol: Protocol) -> None:
    """Assign splits to the finished cases and write the manifest atomically."""
    done = [cid for cid, r in records.items() if r.status == "ok"]
    splits = assign_splits(done, protocol.split_fractions)
    for cid, rec in records.items():
        rec.split = splits.get(cid)
    manifest.cases = sorted(records.values(), key=lambda r: r.id)
    manifest.save()
