"""Feature-network weights: where they come from, where they live, and whether they are the right ones.

The known networks and their pins are :mod:`ctbench.weights_catalog` (:data:`WEIGHTS`).

Weights live in ``$CTBENCH_CACHE/weights`` (default ``~/.cache/ctbench/weights``). ``fetch`` downloads them with
pooch and checks the pinned hash; ``import_weights`` copies a local file or folder in (air-gapped machines);
``resolve`` finds them for a metric (in that cache, then in ``$TORCH_HOME/hub/checkpoints`` where torch-fidelity
downloads the same file, then in ``TFHUB_CACHE_DIR`` for the TF-Hub module), or raises
:class:`~ctbench.core.errors.MetricUnavailable` naming the file, the places searched and both ways to get it.
``unverified_ok=True`` accepts any file of the right architecture; everything computed with it is marked
unverified.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ctbench.core.atomic import install_copy
from ctbench.core.cache import cache_root
from ctbench.core.errors import MetricUnavailable
from ctbench.core.hashing import file_sha256
from ctbench.weights_catalog import WEIGHTS, WeightSpec

if TYPE_CHECKING:
    from ctbench.extractors.i3d_convert import Conversion

def weights_dir() -> Path:
    """Folder holding fetched or imported weights: ``<cache_root>/weights``."""
    return cache_root() / "weights"


def get_spec(name: str) -> WeightSpec:
    """The spec of a pinned network; ``KeyError`` listing the known names."""
    try:
        return WEIGHTS[name]
    except KeyError:
        raise KeyError(f"unknown weights {name!r}; known: {', '.join(sorted(WEIGHTS))}") from None


def tfhub_module_dir(handle: str) -> Path:
    """Where tensorflow_hub caches ``handle``: ``$TFHUB_CACHE_DIR/<sha1(handle)>``.

    Without ``TFHUB_CACHE_DIR`` tensorflow_hub uses ``$TMPDIR/tfhub_modules``; so does this function.
    """
    root = os.environ.get("TFHUB_CACHE_DIR") or str(Path(tempfile.gettempdir()) / "tfhub_modules")
    return Path(root).expanduser() / hashlib.sha1(handle.encode("utf8")).hexdigest()


def torch_hub_checkpoint(filename: str) -> Path:
    """Where ``torch.hub`` (hence torch-fidelity) caches a downloaded file: ``$TORCH_HOME/hub/checkpoints``."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def candidates(spec: WeightSpec) -> list[Path]:
    """Every place searched for ``spec``, in order: the ctbench weights cache, then where the reference tools keep
    it (torch-fidelity's torch.hub download for files, the TF-Hub cache for modules)."""
    places = [weights_dir() / spec.filename]
    if spec.kind == "file":
        places.append(torch_hub_checkpoint(spec.filename))
    if spec.handle:
        places.append(tfhub_module_dir(spec.handle))
    return places


def converted_from(name: str) -> WeightSpec:
    """The spec of the converted weights made from ``name`` (``ValueError`` if nothing converts from it)."""
    spec = next((s for s in WEIGHTS.values() if s.source == name), None)
    if spec is None:
        convertible = sorted(s.source for s in WEIGHTS.values() if s.source)
        raise ValueError(f"{name}: nothing converts from it; convertible: {', '.join(convertible)}")
    return spec


def _present(spec: WeightSpec, path: Path) -> bool:
    if spec.kind == "savedmodel":
        return (path / "saved_model.pb").is_file()
    return path.is_file()


def locate(name: str) -> Path | None:
    """The first place holding ``name``'s weights, or None."""
    spec = get_spec(name)
    return next((p for p in candidates(spec) if _present(spec, p)), None)


@dataclass(frozen=True)
class ResolvedWeights:
    """Weights found on disk, with their hash and whether it equals the pinned one.

    ``sha256`` identifies the network in provenance: the file's (folder's) own hash, except for converted weights
    (:func:`resolve_converted`), where it is the hash of the module they reproduce, so that both implementations of
    a metric record the same network; their own hash is then ``file_sha256``.
    """

    spec: WeightSpec
    path: Path
    sha256: str
    verified: bool
    file_sha256: str | None = None


def how_to_get(spec: WeightSpec) -> str:
    """The two ways to obtain ``spec``'s weights, as one line for error messages."""
    if spec.kind == "converted":
        return (
            f"run `ctbench weights convert {spec.source}` (needs that module, see `ctbench weights fetch "
            f"{spec.source}`, and TensorFlow: pip install 'ctbench[fvd]'), or copy the converted file from a machine "
            f"that has it and run `ctbench weights import PATH --name {spec.name}`"
        )
    return (
        f"run `ctbench weights fetch {spec.name}` (downloads {spec.url}), or on an offline machine copy it "
        f"from one that has it and run `ctbench weights import PATH --name {spec.name}`"
    )


_DIGESTS: dict[tuple, str] = {}


def weights_sha256(path: Path) -> str:
    """:func:`~ctbench.core.hashing.file_sha256` of a weights file or folder, computed once per process while
    its files keep their size and modification time (a run resolves the same weights several times)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    signature = (str(path.resolve()), tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    if signature not in _DIGESTS:
        _DIGESTS[signature] = file_sha256(path)
    return _DIGESTS[signature]


def resolve(name: str, unverified_ok: bool = False) -> ResolvedWeights:
    """Find and hash ``name``'s weights; raise :class:`MetricUnavailable` before any work if they cannot be used.

    Unverified weights (hash differs from the pin, or no pin exists) are refused unless ``unverified_ok``.
    """
    spec = get_spec(name)
    path = locate(name)
    if path is None:
        looked = ", ".join(str(p) for p in candidates(spec))
        what = "SavedModel folder" if spec.kind == "savedmodel" else "file"
        raise MetricUnavailable(
            f"{spec.name} weights missing: {what} {spec.filename!r} not found (looked in: {looked}). "
            f"To get it, {how_to_get(spec)}."
        )
    digest = weights_sha256(path)
    verified = spec.sha256 is not None and digest == spec.sha256
    if not verified and not unverified_ok:
        why = (
            f"has sha256 {digest}, expected {spec.sha256}"
            if spec.sha256
            else f"has sha256 {digest}, and ctbench pins no hash for it yet"
        )
        raise MetricUnavailable(
            f"{spec.name} weights at {path} {why}. Replace them ({how_to_get(spec)}), or pass "
            "--unverified-weights (Python: unverified_ok=True) to compute values marked unverified."
        )
    return ResolvedWeights(spec=spec, path=path, sha256=digest, verified=verified)


def resolve_converted(name: str, unverified_ok: bool = False) -> ResolvedWeights:
    """Find converted weights and check them: their own pin, the module hash recorded inside against the module's
    pin, and against the module installed here (if one is). Any failed check refuses them
    (:class:`MetricUnavailable`) unless ``unverified_ok``; they are then unverified, and a mismatch with the
    installed module is warned about. The result's ``sha256`` is the recorded module hash.
    """
    from ctbench.extractors.i3d_torch import converted_source_sha256

    spec = get_spec(name)
    assert spec.source is not None, f"{name} is not converted weights"
    source = get_spec(spec.source)
    own = resolve(name, unverified_ok=True)
    try:
        recorded = converted_source_sha256(own.path)
    except ValueError as exc:
        raise MetricUnavailable(f"{exc}. Replace it: {how_to_get(spec)}.") from exc
    problems = []
    if spec.sha256 is None:
        problems.append(f"has sha256 {own.sha256}, and ctbench pins no hash for it yet")
    elif own.sha256 != spec.sha256:
        problems.append(f"has sha256 {own.sha256}, expected {spec.sha256}")
    if source.sha256 is not None and recorded != source.sha256:
        problems.append(f"was converted from a {source.name} with sha256 {recorded}, not the pinned {source.sha256}")
    installed = locate(source.name)
    if installed is not None and (here := weights_sha256(installed)) != recorded:
        mismatch = (f"was converted from a {source.name} with sha256 {recorded}, but the one installed at {installed} "
                    f"has sha256 {here}; convert it again (`ctbench weights convert {source.name}`)")
        problems.append(mismatch)
        if unverified_ok:
            warnings.warn(f"{name} weights at {own.path} {mismatch}; its values are marked unverified", stacklevel=2)
    if problems and not unverified_ok:
        raise MetricUnavailable(
            f"{name} weights at {own.path} {'; '.join(problems)}. Replace them ({how_to_get(spec)}), or pass "
            "--unverified-weights (Python: unverified_ok=True) to compute values marked unverified."
        )
    return ResolvedWeights(spec, own.path, recorded, verified=not problems, file_sha256=own.sha256)


def convert(name: str) -> tuple[ResolvedWeights, Conversion]:
    """Convert the installed ``name`` (``i3d-kinetics-400``) into its converted weights in the cache.

    Returns the module as resolved (found anywhere :func:`resolve` looks; pinned or not) and the written
    :class:`~ctbench.extractors.i3d_convert.Conversion`. Raises :class:`MetricUnavailable` when the module is
    missing or TensorFlow is not installed, ``ValueError`` when the module is not I3D or the port does not match.
    """
    from ctbench.extractors.i3d_convert import convert as convert_module

    spec = converted_from(name)
    module = resolve(name, unverified_ok=True)
    return module, convert_module(module.path, weights_dir() / spec.filename, module.sha256)


def infer_name(path: Path) -> str:
    """Which pinned network a local file or folder is: a SavedModel folder is I3D, a file named as a pinned file
    (``vgg16-397923af.pth``) that one, another ``.pth``/``.pt`` file the converted I3D when it holds one, else
    InceptionV3."""
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "i3d-kinetics-400"
        raise ValueError(f"{path}: folder has no saved_model.pb; not a TF-Hub SavedModel")
    by_filename = [spec.name for spec in WEIGHTS.values() if spec.kind == "file" and spec.filename == path.name]
    if by_filename:
        return by_filename[0]
    if path.suffix in (".pth", ".pt"):
        return "i3d-kinetics-400-torch" if _is_converted_i3d(path) else "inception-v3-compat"
    raise ValueError(f"{path}: cannot tell which weights this is; pass --name ({', '.join(sorted(WEIGHTS))})")


def _is_converted_i3d(path: Path) -> bool:
    from ctbench.extractors.i3d_torch import converted_source_sha256

    try:
        converted_source_sha256(path)
    except ValueError:
        return False
    return True


def import_weights(src: str | Path, name: str | None = None, unverified_ok: bool = False) -> ResolvedWeights:
    """Copy a local weights file or SavedModel folder into the cache (air-gapped machines).

    The hash is checked first; a mismatch raises ``ValueError`` unless ``unverified_ok``.
    """
    src = Path(src).expanduser()
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such file or folder")
    spec = get_spec(name or infer_name(src))
    if spec.kind == "savedmodel" and not (src / "saved_model.pb").is_file():
        raise ValueError(f"{src}: {spec.name} must be a SavedModel folder containing saved_model.pb")
    if spec.kind != "savedmodel" and not src.is_file():
        raise ValueError(f"{src}: {spec.name} must be a single file")
    if spec.kind == "converted":
        from ctbench.extractors.i3d_torch import converted_source_sha256

        converted_source_sha256(src)  # ValueError unless it is a converted file
    check_network(spec, src)
    digest = file_sha256(src)
    verified = spec.sha256 is not None and digest == spec.sha256
    if not verified and not unverified_ok:
        why = f"does not match the pinned {spec.sha256}" if spec.sha256 else "cannot be checked: no hash is pinned"
        raise ValueError(
            f"{src}: sha256 {digest} {why} for {spec.name}; "
            "pass --unverified-weights to import it anyway (results will be marked unverified)"
        )
    dest = install_copy(src, weights_dir() / spec.filename)
    return ResolvedWeights(spec=spec, path=dest, sha256=digest, verified=verified)


def check_network(spec: WeightSpec, path: Path) -> None:
    """Run ``spec.check`` on ``path`` (``ValueError`` naming the file when it is another network's weights)."""
    if spec.check:
        module, _, function = spec.check.partition(":")
        getattr(importlib.import_module(module), function)(path)


def fetch(name: str, progress: bool = True) -> ResolvedWeights:
    """Download ``name``'s weights from the canonical URL with pooch, verify the pin, install into the cache."""
    import pooch

    spec = get_spec(name)
    if spec.kind == "converted":
        raise ValueError(f"{name} is not downloaded but made here: {how_to_get(spec)}")
    downloads = weights_dir() / "downloads"
    if spec.kind == "file":
        known = f"sha256:{spec.sha256}" if spec.sha256 else None
        path = Path(pooch.retrieve(spec.url, known_hash=known, fname=spec.filename, path=weights_dir(),
                                   progressbar=progress))
        try:
            check_network(spec, path)
        except ValueError as exc:
            path.unlink()
            raise ValueError(f"the download from {spec.url} is not usable (removed): {exc}") from exc
        return ResolvedWeights(spec, path, file_sha256(path), verified=spec.sha256 is not None)
    tarball = Path(pooch.retrieve(spec.url, known_hash=None, fname=f"{spec.filename}.tar.gz", path=downloads,
                                  progressbar=progress))
    extract = Path(tempfile.mkdtemp(prefix=f".{spec.filename}.", dir=downloads))
    try:
        shutil.unpack_archive(str(tarball), str(extract), format="gztar")
        return import_weights(savedmodel_root(extract, tarball), spec.name, unverified_ok=spec.sha256 is None)
    finally:
        shutil.rmtree(extract, ignore_errors=True)


def savedmodel_root(folder: Path, source: Path) -> Path:
    """The one folder under ``folder`` (itself included) holding ``saved_model.pb``: archives may wrap it in a folder.

    ``source`` names the archive in the error raised when there is none, or more than one.
    """
    found = sorted(p.parent for p in folder.rglob("saved_model.pb"))
    if len(found) != 1:
        what = "no saved_model.pb" if not found else f"{len(found)} saved_model.pb files"
        raise ValueError(f"{source}: {what} inside; expected one TF-Hub SavedModel")
    return found[0]


@dataclass(frozen=True)
class WeightStatus:
    """What ``ctbench weights status`` shows for one network."""

    name: str
    path: Path | None
    sha256: str | None
    pinned: str | None
    verified: bool
    source: str = ""
    """For converted weights: what they were converted from, and whether that is the module installed here."""

    @property
    def state(self) -> str:
        if self.path is None:
            return "missing"
        if self.verified:
            return "verified"
        return "unpinned" if self.pinned is None else "WRONG HASH"

    @property
    def explanation(self) -> str:
        """What the state means for results (and where converted weights come from); empty when nothing to say."""
        meaning = ""
        if self.state == "unpinned":
            meaning = ("no hash is pinned in ctbench for these weights, so they cannot be verified: results made with "
                       "them are marked unverified (they need --unverified-weights) and are not ranked")
        elif self.state == "WRONG HASH":
            meaning = "not the pinned file: refused unless --unverified-weights (results then marked unverified)"
        return "; ".join(part for part in (self.source, meaning) if part)


def status() -> list[WeightStatus]:
    """Presence and verification of every pinned network (hashes each file found)."""
    out = []
    for spec in WEIGHTS.values():
        path = locate(spec.name)
        digest = weights_sha256(path) if path is not None else None
        verified = digest is not None and digest == spec.sha256
        source = _converted_note(spec, path) if spec.kind == "converted" else ""
        out.append(WeightStatus(spec.name, path, digest, spec.sha256, verified, source))
    return out


def _converted_note(spec: WeightSpec, path: Path | None) -> str:
    """Where converted weights come from, for ``weights status``."""
    if path is None:
        return f"FVD runs on TensorFlow until this exists: `ctbench weights convert {spec.source}`"
    from ctbench.extractors.i3d_torch import converted_source_sha256

    try:
        recorded = converted_source_sha256(path)
    except ValueError as exc:
        return str(exc)
    note = f"converted from {spec.source} sha256 {recorded}"
    installed = locate(str(spec.source))
    if installed is not None and weights_sha256(installed) != recorded:
        note += f", NOT the one installed at {installed}: convert it again"
    return note
