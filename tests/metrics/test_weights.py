"""Weights: missing → one clear error before work; import, fetch (pooch, from a local HTTP server), status."""

from __future__ import annotations

import dataclasses
import functools
import shutil
import subprocess
import sys
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from ctbench import weights as W
from ctbench.cli import main
from ctbench.core.hashing import file_sha256
from ctbench.metrics import MetricUnavailable, get_metric
from ctbench.weights_catalog import I3D_HANDLE


def test_missing_weights_fail_before_work_with_one_message(private_cache):
    with pytest.raises(MetricUnavailable) as err:
        get_metric("fid").statistics_accumulator()
    msg = str(err.value)
    assert "weights-inception-2015-12-05-6726825d.pth" in msg  # which file
    assert str(private_cache / "weights") in msg  # where it looked
    assert "ctbench weights fetch inception-v3-compat" in msg and "ctbench weights import PATH" in msg  # both ways


def test_i3d_is_searched_in_the_tfhub_cache_too(private_cache):
    with pytest.raises(MetricUnavailable) as err:
        W.resolve("i3d-kinetics-400")
    assert str(W.tfhub_module_dir(I3D_HANDLE)) in str(err.value)


@pytest.mark.requires_tensorflow
def test_tfhub_cache_folder_is_the_one_tensorflow_hub_resolves(private_cache):
    from ctbench.extractors.i3d import import_tensorflow

    import_tensorflow()  # triton before TensorFlow: a later torchvision import in this worker would crash otherwise
    from tensorflow_hub import compressed_module_resolver

    assert W.tfhub_module_dir(I3D_HANDLE) == W.Path(compressed_module_resolver._module_dir(I3D_HANDLE))


def test_import_refuses_wrong_hash_unless_unverified(inception_weights):
    with pytest.raises(ValueError, match="does not match the pinned"):
        W.import_weights(inception_weights)
    r = W.import_weights(inception_weights, unverified_ok=True)
    assert r.spec.name == "inception-v3-compat" and not r.verified
    with pytest.raises(MetricUnavailable, match="--unverified-weights"):
        W.resolve("inception-v3-compat")
    assert W.resolve("inception-v3-compat", unverified_ok=True).sha256 == file_sha256(inception_weights)


def test_matching_pin_is_verified(inception_weights, monkeypatch):
    spec = dataclasses.replace(W.WEIGHTS["inception-v3-compat"], sha256=file_sha256(inception_weights))
    monkeypatch.setitem(W.WEIGHTS, "inception-v3-compat", spec)
    r = W.import_weights(inception_weights)
    assert r.verified and W.resolve("inception-v3-compat").verified
    states = {s.name: s.state for s in W.status()}
    assert states == {"inception-v3-compat": "verified", "i3d-kinetics-400": "missing",
                      "i3d-kinetics-400-torch": "missing", "radimagenet-resnet50": "missing",
                      "vgg16-imagenet": "missing", "medicalnet-resnet50-23": "missing"}


@pytest.fixture
def http_root(tmp_path):
    """A local HTTP server standing in for the canonical hosts (pooch's real download path, no internet)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_file_verifies_sha256(inception_weights, http_root, monkeypatch):
    root, url = http_root
    shutil.copy(inception_weights, root / "w.pth")
    good = dataclasses.replace(
        W.WEIGHTS["inception-v3-compat"], url=f"{url}/w.pth", sha256=file_sha256(inception_weights)
    )
    monkeypatch.setitem(W.WEIGHTS, "inception-v3-compat", good)
    r = W.fetch("inception-v3-compat", progress=False)
    assert r.verified and r.path == W.weights_dir() / good.filename
    assert W.resolve("inception-v3-compat").verified
    r.path.unlink()
    monkeypatch.setitem(W.WEIGHTS, "inception-v3-compat", dataclasses.replace(good, sha256="0" * 64))
    with pytest.raises(ValueError, match="SHA256 hash of downloaded file"):
        W.fetch("inception-v3-compat", progress=False)
    assert not (W.weights_dir() / good.filename).exists()


@pytest.mark.requires_tensorflow
def test_fetch_savedmodel_tarball_unpacks_into_cache(i3d_standin, http_root, monkeypatch):
    root, url = http_root
    with tarfile.open(root / "i3d.tar.gz", "w:gz") as tar:
        for p in sorted(i3d_standin.rglob("*")):
            tar.add(p, arcname=str(p.relative_to(i3d_standin)), recursive=False)
    pinned = file_sha256(i3d_standin)
    spec = dataclasses.replace(W.WEIGHTS["i3d-kinetics-400"], url=f"{url}/i3d.tar.gz", sha256=pinned)
    monkeypatch.setitem(W.WEIGHTS, "i3d-kinetics-400", spec)
    r = W.fetch("i3d-kinetics-400", progress=False)
    assert r.verified and (r.path / "saved_model.pb").is_file() and file_sha256(r.path) == pinned


@pytest.mark.requires_tensorflow
def test_cli_fetch_of_the_unpinned_i3d_module_downloads_unpacks_and_says_so(i3d_standin, http_root, monkeypatch):
    """The real spec (no pinned hash), only its URL pointed at a local server; the archive wraps the module in a
    folder, as re-packed archives do. Installed, hashed, reported unpinned; FVD then needs the override."""
    root, url = http_root
    with tarfile.open(root / "i3d.tar.gz", "w:gz") as tar:
        tar.add(i3d_standin, arcname="i3d-kinetics-400_1")
    spec = W.WEIGHTS["i3d-kinetics-400"]
    assert spec.sha256 is None  # the case under test: nothing is published to pin
    monkeypatch.setitem(W.WEIGHTS, spec.name, dataclasses.replace(spec, url=f"{url}/i3d.tar.gz"))
    res = CliRunner().invoke(main, ["weights", "fetch", spec.name])
    assert res.exit_code == 0, res.output
    digest = file_sha256(i3d_standin)
    installed = W.weights_dir() / spec.filename
    assert file_sha256(installed) == digest and (installed / "saved_model.pb").is_file()
    assert "UNPINNED" in res.output and f"sha256 {digest}" in res.output and "--unverified-weights" in res.output
    status = CliRunner().invoke(main, ["weights", "status"]).output
    assert f"{spec.name:22s} unpinned" in status and "no hash is pinned in ctbench" in status
    with pytest.raises(MetricUnavailable, match="pins no hash for it yet"):
        W.resolve(spec.name)
    assert W.resolve(spec.name, unverified_ok=True).verified is False


def test_archive_without_a_savedmodel_is_named(tmp_path):
    (tmp_path / "x" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="i3d.tar.gz: no saved_model.pb inside"):
        W.savedmodel_root(tmp_path / "x", tmp_path / "i3d.tar.gz")


@pytest.mark.parametrize("args", [["weights", "status"], ["ls"]])
def test_commands_that_only_look_never_import_tensorflow(args):
    """`ctbench weights status` and `ctbench ls` work where TensorFlow is missing or broken: they never import it."""
    code = (
        "import sys\n"
        "from ctbench.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "loaded = sorted(m for m in ('tensorflow', 'tensorflow_hub') if m in sys.modules)\n"
        "assert not loaded, f'imported {loaded}'\n"
    )
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr


def test_cli_weights_import_and_status(inception_weights):
    runner = CliRunner()
    res = runner.invoke(main, ["weights", "import", str(inception_weights)])
    assert res.exit_code == 1 and "does not match the pinned" in res.output
    res = runner.invoke(main, ["weights", "import", str(inception_weights), "--unverified-weights"])
    assert res.exit_code == 0, res.output
    assert "UNVERIFIED" in res.output
    res = runner.invoke(main, ["weights", "status"])
    assert res.exit_code == 0
    assert "inception-v3-compat    WRONG HASH" in res.output and "i3d-kinetics-400       missing" in res.output


def test_torch_fidelity_download_is_found_where_torch_hub_keeps_it(inception_weights, private_cache):
    spec = W.WEIGHTS["inception-v3-compat"]
    hub_file = W.torch_hub_checkpoint(spec.filename)
    assert hub_file.is_relative_to(private_cache / "torch")  # TORCH_HOME is honoured
    hub_file.parent.mkdir(parents=True)
    shutil.copy(inception_weights, hub_file)
    assert W.locate("inception-v3-compat") == hub_file
    assert W.resolve("inception-v3-compat", unverified_ok=True).path == hub_file


def test_weights_are_hashed_once_per_run_until_they_change(inception_weights, monkeypatch):
    installed = W.import_weights(inception_weights, "inception-v3-compat", unverified_ok=True)
    calls = []
    monkeypatch.setattr(W, "file_sha256", lambda path: calls.append(path) or file_sha256(path))
    monkeypatch.setattr(W, "_DIGESTS", {})
    fid = get_metric("fid")
    for _ in range(3):  # planning, the generated side, the reference side
        assert fid.resolve_weights(unverified_ok=True).sha256 == installed.sha256
    assert calls == [installed.path]
    installed.path.write_bytes(installed.path.read_bytes() + b"\0")  # changed bytes: hashed again
    assert fid.resolve_weights(unverified_ok=True).sha256 != installed.sha256 and len(calls) == 2
