"""Fixtures for the reference generator's tests: toy configs and small smooth volumes."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml

from ctbench.api import deep_update
from ctbench_generators.vqgan_ddpm.plugin import VQGANDDPM
from ctbench_generators.vqgan_ddpm.variants import VARIANTS, default_config

TINY_YAML = VQGANDDPM.config_files()["tiny"]


def _tiny_config(variant: str = "full", **overrides: object) -> dict:
    """The tiny.yaml config of ``variant``, with ``overrides`` (a nested dict) merged in."""
    cfg = deep_update(deep_update(default_config(), VARIANTS[variant]), yaml.safe_load(TINY_YAML.read_text()))
    return deep_update(cfg, copy.deepcopy(overrides))


def _toy_volumes(n: int, shape: tuple[int, int, int] = (16, 32, 32), seed: int = 0) -> list[torch.Tensor]:
    """``n`` volumes ``(1, D, H, W)`` in [-1, 1]: an ellipsoidal body with a bright blob, random sizes."""
    g = torch.Generator().manual_seed(seed)
    z, y, x = torch.meshgrid(*(torch.linspace(-1, 1, s) for s in shape), indexing="ij")
    out = []
    for _ in range(n):
        r = 0.6 + 0.3 * float(torch.rand((), generator=g))
        c = (torch.rand(3, generator=g) - 0.5) * 0.6
        body = (x / r) ** 2 + (y / (0.8 * r)) ** 2 < 1
        vol = torch.where(body, torch.tensor(-0.2), torch.tensor(-1.0))
        blob = (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 < 0.1
        out.append(torch.where(blob & body, torch.tensor(0.7), vol)[None].float())
    return out


@pytest.fixture
def tiny_config():
    """``tiny_config(variant="full", **overrides) -> dict``: tiny.yaml resolved for a variant, plus overrides."""
    return _tiny_config


@pytest.fixture
def toy_volumes():
    """``toy_volumes(n, shape=(16, 32, 32), seed=0) -> list[(1, D, H, W)]``: smooth phantoms in [-1, 1]."""
    return _toy_volumes


@pytest.fixture(autouse=True)
def _one_thread():
    """Run these toy-sized models on one thread: at this size threading costs more than it gives, and the
    2-core CI machine is shared with other test processes (oversubscribed threads slow the steps ~10×)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
