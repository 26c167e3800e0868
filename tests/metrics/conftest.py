"""Fixtures for the metrics tests: a private CTBENCH_CACHE (the random InceptionV3 weights and the I3D stand-in
are in tests/conftest.py, shared with the evaluate tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own CTBENCH_CACHE, TFHUB_CACHE_DIR and TORCH_HOME; home caches are never touched."""
    root = tmp_path_factory.mktemp("ctbench-cache")
    monkeypatch.setenv("CTBENCH_CACHE", str(root))
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(root / "tfhub"))
    monkeypatch.setenv("TORCH_HOME", str(root / "torch"))
    return root


@pytest.fixture
def installed_inception(inception_weights, private_cache):
    """The random weights imported into the private cache (unverified: their hash is not the pinned one)."""
    from ctbench.weights import import_weights

    return import_weights(inception_weights, "inception-v3-compat", unverified_ok=True)


@pytest.fixture
def volumes() -> torch.Tensor:
    """Three smooth random volumes ``(3, 1, 64, 128, 128)`` in [-1, 1]."""
    g = torch.Generator().manual_seed(7)
    coarse = torch.rand(3, 1, 8, 16, 16, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=(64, 128, 128), mode="trilinear", align_corners=False)
