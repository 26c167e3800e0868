"""Shared fixtures: a small prepared folder (synthetic phantoms), the real scans beside the project, and a tiny
stand-in for the I3D network (FVD) that TensorFlow saves on the spot. Tests marked ``requires_tensorflow`` skip,
with the reason, where TensorFlow or tensorflow-hub (the ``fvd`` extra) is not installed."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

REAL_CT_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real-ct"
PREPARED_N = 8
PREPARED_SEED = 0


def _tensorflow_missing() -> str | None:
    """Why FVD tests cannot run here, or None. Looks for the packages without importing them: TensorFlow must
    be imported after triton (see ``ctbench.extractors.i3d.import_tensorflow``), which ``importorskip`` would not do."""
    missing = [name for name in ("tensorflow", "tensorflow_hub") if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return f"needs TensorFlow: {' and '.join(missing)} not installed (the fvd extra: pip install 'ctbench[fvd]')"


TENSORFLOW_MISSING = _tensorflow_missing()

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs two workers on two cores: one torch thread each
    import torch

    torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the tests marked ``requires_tensorflow`` when TensorFlow or tensorflow-hub is not installed."""
    if TENSORFLOW_MISSING is None:
        return
    for item in items:
        if item.get_closest_marker("requires_tensorflow") is not None:
            item.add_marker(pytest.mark.skip(reason=TENSORFLOW_MISSING))


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Raw synthetic phantoms (``images/``, ``labels/``): 8 small cases, seed 0, all four orientations."""
    from ctbench.data.synth import ORIENTATIONS, synthesize

    root = tmp_path_factory.mktemp("synth")
    synthesize(root, PREPARED_N, PREPARED_SEED, small=True, orientations=ORIENTATIONS, progress=False)
    return root


@pytest.fixture(scope="session")
def prepared_dir(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared folder (``flare22-v1``) of the 8 phantoms; train, val and test are all non-empty.

    Treat it as read-only: it is shared by the whole test session.
    """
    from ctbench.data.batch import prepare

    root = tmp_path_factory.mktemp("prepared")
    result = prepare(synth_dir, root, workers=1, progress=False)
    assert not result.failed, [r.error for r in result.failed]
    return root


@pytest.fixture(scope="session")
def real_ct_dir() -> Path:
    """``<repo>/../shared/data/real-ct`` (small real scans); skips the test when it is absent."""
    if not (REAL_CT_DIR / "example_ct_sm.nii.gz").is_file():
        pytest.skip(f"real scans not found at {REAL_CT_DIR.resolve()}")
    return REAL_CT_DIR.resolve()


def make_i3d_standin(path: Path, seed: int = 0) -> Path:
    """Save a tiny SavedModel with I3D's ``default`` signature: ``(N, T, 224, 224, 3)`` float → ``(N, 400)``.

    Per frame it pools 4×4 blocks of the frame, applies a random linear map and a ReLU, then averages over
    time, so it is nonlinear, sensitive to spatial content and to every input channel.
    """
    from ctbench.extractors.i3d import import_tensorflow

    tf = import_tensorflow()[0]  # loads triton before TensorFlow: the other order crashes
    rng = np.random.default_rng(seed)
    w = tf.constant(rng.normal(size=(3 * 56 * 56 // 16, 400)).astype(np.float32) * 0.05)

    class StandIn(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, 224, 224, 3], tf.float32)])
        def default(self, video):
            n, t = tf.shape(video)[0], tf.shape(video)[1]
            frames = tf.reshape(video, [n * t, 224, 224, 3])
            pooled = tf.nn.avg_pool2d(frames, ksize=16, strides=16, padding="VALID")  # (n*t, 14, 14, 3)
            h = tf.nn.relu(tf.reshape(pooled, [n * t, 14 * 14 * 3]) @ w + 0.1)
            return {"default": tf.reduce_mean(tf.reshape(h, [n, t, 400]), axis=1)}

    module = StandIn()
    tf.saved_model.save(module, str(path), signatures={"default": module.default})
    return path


@pytest.fixture(scope="session")
def i3d_standin(tmp_path_factory) -> Path:
    """A SavedModel folder with I3D's signature (see :func:`make_i3d_standin`); not imported into any cache.

    Skips where TensorFlow is missing, so that a test using it without the ``requires_tensorflow`` mark skips too.
    """
    if TENSORFLOW_MISSING is not None:
        pytest.skip(TENSORFLOW_MISSING)
    return make_i3d_standin(tmp_path_factory.mktemp("i3d") / "i3d-standin")


@pytest.fixture(scope="session")
def i3d_random_module(tmp_path_factory) -> Path:
    """A SavedModel laid out as the TF-Hub I3D module, random weights (see ``tests/i3d_reference_graph.py``)."""
    if TENSORFLOW_MISSING is not None:
        pytest.skip(TENSORFLOW_MISSING)
    from i3d_reference_graph import save_random_i3d

    return save_random_i3d(tmp_path_factory.mktemp("i3d-random") / "i3d-random")


I3D_SOURCE_SHA256 = "5" * 64
"""The module hash that :func:`i3d_torch_weights` says it was converted from (no such module exists)."""


@pytest.fixture(scope="session")
def i3d_torch_weights(tmp_path_factory) -> Path:
    """A converted-weights file for the PyTorch I3D with random weights, made without TensorFlow: He-normal kernels,
    moving means and offsets ~ N(0, 0.05), variances ~ U(0.5, 2); it records :data:`I3D_SOURCE_SHA256`."""
    from ctbench.extractors.i3d_convert import write_random_converted

    path = tmp_path_factory.mktemp("i3d-torch") / "random-i3d-torch.pt"
    return write_random_converted(path, I3D_SOURCE_SHA256)


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory) -> Path:
    """An InceptionV3 state dict in torch-fidelity's format with random weights and calibrated BatchNorm."""
    from ctbench.extractors.inception import write_random_weights

    return write_random_weights(tmp_path_factory.mktemp("weights") / "random-inception.pth")


def _build_wheel_site(factory: pytest.TempPathFactory, *projects: Path) -> Path:
    wheels = factory.mktemp("wheels")
    sources = factory.mktemp("src")
    for project in projects:
        ignore = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
        shutil.copytree(project, sources / project.name, ignore=ignore)
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels)]
    subprocess.run([*pip, *(str(sources / p.name) for p in projects)], check=True, timeout=180)
    site = factory.mktemp("site")
    for wheel in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(site)
    assert len(list(site.glob("*.dist-info"))) == len(projects)
    return site


@pytest.fixture(scope="session")
def build_wheel_site():
    """``build_wheel_site(tmp_path_factory, *project_dirs)``: build test plugin projects (tests/plugins/) into
    wheels and unpack them into one folder for ``sys.path``/``PYTHONPATH``; returns that folder.

    Copies are built, so the source folders stay clean; their entry points then show in ``importlib.metadata``.
    """
    return _build_wheel_site
