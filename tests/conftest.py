"""Shared fixtures: a small prepared folder (synthetic phantoms) and the real scans beside the project."""

from __future__ import annotations

from pathlib import Path

import pytest

REAL_CT_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real-ct"
PREPARED_N = 8
PREPARED_SEED = 0


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
