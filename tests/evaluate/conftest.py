"""Fixtures for the evaluate / leaderboard / plugin tests."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

PLUGINS_DIR = Path(__file__).resolve().parents[1] / "plugins"
TOY_PLUGINS = [PLUGINS_DIR / "ctbench-toy-plugin", PLUGINS_DIR / "ctbench-broken-plugins"]


@pytest.fixture(autouse=True)
def empty_weights_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ctbench's weights cache at an empty folder: FID/FVD are then unavailable, as on a fresh machine."""
    cache = tmp_path_factory.getbasetemp() / "empty-ctbench-cache"
    cache.mkdir(exist_ok=True)
    monkeypatch.setenv("CTBENCH_CACHE", str(cache))
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache / "tfhub"))
    return cache


@pytest.fixture(scope="session")
def toy_plugin_path(tmp_path_factory: pytest.TempPathFactory, build_wheel_site) -> Path:
    """The toy third-party plugin packages (tests/plugins/) built into wheels and unpacked into one folder.

    Put it on ``sys.path``/``PYTHONPATH``: their entry points then show in ``importlib.metadata``.
    """
    return build_wheel_site(tmp_path_factory, *TOY_PLUGINS)


def _make_record(
    name: str,
    metrics: dict[str, float | None],
    *,
    variant: str = "default",
    protocol_version: str = "1.0.0",
    weights: str | None = None,
    verified: bool = True,
    run_id: str | None = None,
    intervals: dict[str, tuple[float, float]] | None = None,
) -> dict:
    """A schema-valid record with chosen metric values (for leaderboard tests; no evaluation run)."""
    base = {
        "kind": "ctbench.result",
        "schema_version": 1,
        "ctbench_version": "0.1.0",
        "run_id": run_id or f"{name}-{variant}-{protocol_version}-{weights}-{verified}",
        "created_at": "2026-11-26T10:00:00+00:00",
        "generator": {"name": name, "variant": variant, "config_hash": "0" * 64, "config": {}},
        "protocol": {"name": "flare22-v1", "version": protocol_version, "manifest_sha256": "ab" * 32, "split": "test"},
        "sampling": {"n": 8, "seed": 0, "scheme": "seed+i"},
        "metrics": {},
        "skipped": {},
        "artifacts": {},
        "env": {},
        "timing": {},
        "command": {"argv": None, "options": {}},
    }
    for key, value in metrics.items():
        feature = key.startswith(("fid", "fvd"))
        base["metrics"][key] = {
            "value": value,
            "interval": list((intervals or {}).get(key)) if (intervals or {}).get(key) else None,
            "n": 8,
            "extractor": "inception-v3" if key.startswith("fid") else ("i3d" if feature else "weight-free"),
            "weights_sha256": weights if feature else None,
            "verified": verified if feature else True,
            "metric_version": "1",
        }
    return copy.deepcopy(base)


@pytest.fixture
def make_record():
    """Factory of schema-valid records with chosen metric values: ``make_record(name, {key: value}, ...)``."""
    return _make_record


@pytest.fixture
def fake_generator(monkeypatch: pytest.MonkeyPatch):
    """``register(name, sample_fn)``: evaluate sees one generator whose ``sample(n, ...)`` returns ``sample_fn(n)``."""
    from ctbench.api import Generator, GeneratorInfo, Registry

    def register(name: str, sample_fn) -> str:
        class Fake(Generator):
            @classmethod
            def load(cls, checkpoint, *, variant=None, overrides=None, context=None):
                return cls()

            def sample(self, n, seed, *, offset=0, batch_size=None):
                return sample_fn(n)

            def info(self):
                return GeneratorInfo(name, "default", "1", {}, 0)

        Fake.name = name
        reg = Registry()
        reg.register(Fake)
        monkeypatch.setattr("ctbench.evaluate.sources.REGISTRY", reg)
        return name

    return register
