"""Plugin registry, baselines' seeding, and a third-party plugin package installed and run end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ctbench.api import REGISTRY, LoadContext, Registry, UnknownNameError, parse_spec
from ctbench.data.prepared import cases, read_volume
from generators.baselines import GaussianNoise, MeanVolume, RealHoldout

CTBENCH = Path(sys.executable).with_name("ctbench")


def test_builtin_baselines_register_through_entry_points():
    names = REGISTRY.names()
    assert {"real-holdout", "noise", "mean-volume"} <= set(names)
    st = REGISTRY.status("noise")
    assert st.cls is GaussianNoise and st.target == "generators.baselines:GaussianNoise" and st.package == "ctbench"


def test_unknown_names_list_close_ones():
    with pytest.raises(UnknownNameError, match="Did you mean: mean-volume"):
        REGISTRY.get("mean-volum")
    with pytest.raises(UnknownNameError, match=r"unknown variant 'noise@wid'.*Did you mean: noise@wide"):
        REGISTRY.resolve("noise@wid")
    assert parse_spec("vqgan-ddpm@c8") == ("vqgan-ddpm", "c8") and parse_spec("noise") == ("noise", None)


def test_variant_is_base_config_plus_overrides():
    gen = REGISTRY.load("noise@wide", overrides={"mean": 0.1})
    assert gen.info().config == {"mean": 0.1, "std": 1.0} and gen.info().variant == "wide"


def test_noise_sample_i_depends_only_on_seed_and_i():
    gen = GaussianNoise.load(None)
    whole = gen.sample(4, seed=3)
    parts = torch.cat([gen.sample(1, 3, offset=0), gen.sample(3, 3, offset=1, batch_size=1)])
    assert torch.equal(whole, parts)
    assert not torch.equal(gen.sample(1, 4), whole[:1])
    assert whole.dtype == torch.float32 and whole.shape == (4, 1, 64, 128, 128) and whole.abs().max() <= 1


def test_real_holdout_and_mean_volume(prepared_dir):
    ctx = LoadContext(data_dir=prepared_dir)
    real = RealHoldout.load(None, context=ctx)
    val = cases(prepared_dir, "val")
    a = real.sample(len(val) + 1, seed=5)
    assert torch.equal(a[len(val)], a[0])  # wraps around after the split is exhausted
    assert torch.equal(real.sample(1, 5, offset=1), a[1:2])  # same (seed, i), same volume
    assert any(torch.equal(a[0, 0], torch.from_numpy(read_volume(c.path))) for c in val)
    mean = MeanVolume.load(None, context=ctx).sample(2, seed=0)
    train = np.stack([read_volume(c.path) for c in cases(prepared_dir, "train")])
    assert np.allclose(mean[1, 0].numpy(), train.mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="pass a prepared folder"):
        RealHoldout.load(None, context=LoadContext())


def _run(args: list[str], site: Path, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([str(CTBENCH), *args], capture_output=True, text=True, env=env, timeout=300, **kw)


def test_third_party_plugin_end_to_end(toy_plugin_path, prepared_dir, tmp_path):
    ls = _run(["ls", "--json"], toy_plugin_path)
    assert ls.returncode == 0, ls.stderr
    listing = {g["name"]: g for g in json.loads(ls.stdout)["generators"]}
    assert listing["toy-blobs"]["package"] == "ctbench-toy-plugin" and listing["toy-blobs"]["version"] == "0.3.0"
    assert listing["toy-blobs"]["variants"] == ["default", "big"]
    assert "ModuleNotFoundError" in listing["toy-broken"]["error"]  # reported, and the others still load
    assert "variants" in listing["noise"]
    out = tmp_path / "results"
    args = ["evaluate", "-g", "toy-blobs@big", "--data", str(prepared_dir), "--n", "3", "--out", str(out)]
    ev = _run([*args, "--metrics", "diversity,memorisation", "--montage-volumes", "2"], toy_plugin_path)
    assert ev.returncode == 0, ev.stderr
    (path,) = out.glob("toy-blobs@big-*.json")
    rec = json.loads(path.read_text())
    assert rec["generator"]["plugin_package"] == "ctbench-toy-plugin" and rec["generator"]["plugin_version"] == "0.3.0"
    assert rec["generator"]["config"] == {"radius": 20.0, "body": -0.1}
    assert 0.5 < rec["metrics"]["ms_ssim"]["value"] < 1.0  # same body, blob moves: similar, not identical
    # in-process: the same entry points are visible through importlib.metadata once the wheel is on the path
    sys.path.insert(0, str(toy_plugin_path))
    try:
        reg = Registry()
        assert reg.get("toy-blobs").name == "toy-blobs"
        assert reg.status("toy-broken").cls is None
    finally:
        sys.path.remove(str(toy_plugin_path))
