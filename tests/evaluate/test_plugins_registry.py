"""Plugin registry and contract, baselines' seeding and protocol, and third-party plugin packages (a working one
and broken ones) installed and run end to end."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ctbench.api import (
    REGISTRY,
    BadSamplesError,
    Generator,
    GeneratorInfo,
    LoadContext,
    PluginError,
    Registry,
    UnknownNameError,
    check_plugin,
    check_samples,
    parse_spec,
    plugin_errors,
)
from ctbench.cli import main
from ctbench.data.prepared import cases, read_volume
from ctbench.protocol import DEFAULT_PROTOCOL
from ctbench_generators.baselines import GaussianNoise, MeanVolume, RealHoldout

CTBENCH = Path(sys.executable).with_name("ctbench")


def test_builtin_baselines_register_through_entry_points():
    names = REGISTRY.names()
    assert {"real-holdout", "noise", "mean-volume"} <= set(names)
    st = REGISTRY.status("noise")
    assert st.cls is GaussianNoise and st.target == "ctbench_generators.baselines:GaussianNoise"
    assert st.package == "ctbench" and st.variants == ["default", "wide"] and st.configs == []


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
    assert RealHoldout.load(None, context=ctx).config["split"] == "val"
    real = RealHoldout.load(None, variant="train", context=ctx)  # the largest split of the 8 phantoms
    held = cases(prepared_dir, "train")
    a = real.sample(len(held), seed=5)
    assert not any(torch.equal(a[i], a[j]) for i in range(len(a)) for j in range(i))  # every volume once
    assert torch.equal(real.sample(1, 5, offset=1), a[1:2])  # same (seed, i), same volume
    assert any(torch.equal(a[0, 0], torch.from_numpy(read_volume(c.path))) for c in held)
    refusal = f"at least {len(held) + 1} samples asked for .*, but split 'train' holds {len(held)} volumes"
    with pytest.raises(ValueError, match=refusal):
        real.sample(len(held) + 1, seed=5)
    with pytest.raises(ValueError, match=f"holds {len(held)} volumes"):
        real.sample(1, seed=5, offset=len(held))
    mean = MeanVolume.load(None, context=ctx).sample(2, seed=0)
    train = np.stack([read_volume(c.path) for c in cases(prepared_dir, "train")])
    assert np.allclose(mean[1, 0].numpy(), train.mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="pass a prepared folder"):
        RealHoldout.load(None, context=LoadContext())


SMALL = dataclasses.replace(DEFAULT_PROTOCOL, output_shape=(32, 32, 16))  # (x, y, z): volumes (1, 16, 32, 32)


def test_baselines_sample_the_load_contexts_protocol(prepared_dir):
    noise = GaussianNoise.load(None, context=LoadContext(protocol=SMALL))
    x = check_samples(noise.sample(2, seed=0), 2, "noise", SMALL)
    assert x.shape == (2, 1, 16, 32, 32)
    with pytest.raises(BadSamplesError, match=r"shape \(2, 1, 16, 32, 32\), expected \(2, 1, 64, 128, 128\)"):
        check_samples(x, 2, "noise")  # the default protocol's shape
    assert MeanVolume.load(None, context=LoadContext(data_dir=prepared_dir)).mean.shape == DEFAULT_PROTOCOL.tensor_shape


class _Fine(Generator):
    """Keeps the contract; each case below breaks one clause of it."""

    name = "fine"

    @classmethod
    def load(cls, checkpoint, *, variant=None, overrides=None, context=None):
        return cls()

    def sample(self, n, seed, *, offset=0, batch_size=None):
        return torch.zeros(n, *DEFAULT_PROTOCOL.tensor_shape)

    def info(self):
        return GeneratorInfo(self.name, "default", "1", {}, 0)


def _breach(**attrs: Any) -> type:
    """A subclass of :class:`_Fine` with ``attrs`` replaced (functions named like hooks become classmethods)."""
    hooks = {"load", "default_config", "variants", "default_variant", "config_files", "train", "checkpoint_path"}
    return type("Breach", (_Fine,), {k: classmethod(v) if k in hooks and callable(v) else v for k, v in attrs.items()})


def _boom(cls):
    raise RuntimeError("boom")


class _Plain:
    name = "plain"


@pytest.mark.parametrize(
    "plugin, reason",
    [
        (_Plain, "class _Plain is not a subclass of ctbench.api.Generator"),
        (parse_spec, "a function object is not a subclass of ctbench.api.Generator"),
        (_breach(name=None), "class Breach has no valid `name` (a non-empty str without '@'), got None"),
        (_breach(name="a@b"), "class Breach has no valid `name` (a non-empty str without '@'), got 'a@b'"),
        (type("Half", (Generator,), {"name": "half"}), "class Half does not implement info, load, sample"),
        (type("Inst", (_Fine,), {"load": lambda self, checkpoint: self}), "load must be a classmethod"),
        (_breach(load=lambda cls, checkpoint: cls()),
         "load() must accept the call load(checkpoint, *, variant, overrides, context)"),
        (type("Old", (_Fine,), {"sample": lambda self, n, seed: None}),
         "sample() must accept the call sample(n, seed, *, offset, batch_size)"),
        (_breach(default_config=lambda cls: [1]), "default_config() returned list, expected a dict"),
        (_breach(variants=lambda cls: ["big"]), "variants() returned list, expected a dict of name -> dict"),
        (_breach(variants=lambda cls: {"big": 20.0}), "variants()['big'] is float, expected a dict of overrides"),
        (_breach(variants=lambda cls: {"a@b": {}}),
         "variants() has the key 'a@b'; variant names are non-empty str without '@'"),
        (_breach(variants=_boom), "variants() raised RuntimeError: boom"),
        (_breach(default_variant=lambda cls: "huge"),
         "default_variant() returned 'huge', not one of its variants (default)"),
        (_breach(config_files=lambda cls: {"tiny": "tiny.yaml"}),
         "config_files() must return a dict of name -> file (pathlib.Path or importlib.resources)"),
        (_breach(trainable=1), "trainable must be True or False, got 1"),
        (_breach(trainable=True), "trainable, but does not implement train"),
        (_breach(trainable=True, train=lambda cls, config, data, out_dir, **kw: out_dir),
         "trainable, but does not implement checkpoint_path"),
    ],
)
def test_contract_breaches_are_found_when_the_plugin_loads(plugin, reason):
    with pytest.raises(PluginError) as err:
        check_plugin(plugin)
    assert str(err.value) == reason
    with pytest.raises(PluginError, match="cannot register"):
        Registry().register(plugin)


def test_a_kept_contract_reports_variants_and_configs():
    fine = _breach(
        variants=lambda cls: {"big": {}, "default": {}},
        default_variant=lambda cls: "big",
        config_files=lambda cls: {"mine": Path("mine.yaml")},
        trainable=True,
        train=lambda cls, config, data, out_dir, *, stage=None, resume=False, variant=None: out_dir,
        checkpoint_path=lambda cls, out_dir: out_dir / "ckpt",
    )
    assert check_plugin(fine, "fine") == (["default", "big"], "big", ["mine"])
    with pytest.raises(PluginError, match="class Breach has the name 'fine', but its entry point is 'other'"):
        check_plugin(fine, "other")
    reg = Registry()
    reg.register(fine)
    assert reg.resolve("fine") == (fine, "big") and reg.status("fine").configs == ["mine"]


def test_plugin_errors_name_the_plugin_and_let_user_errors_through():
    with pytest.raises(PluginError, match=r"^generator 'g@v': sample\(\) raised KeyError: 'x'$"):
        with plugin_errors("g@v", "sample"):
            raise KeyError("x")
    for user_error in (ValueError("bad override"), BadSamplesError("NaN"), FileExistsError("run exists")):
        with pytest.raises(type(user_error), match=str(user_error)):
            with plugin_errors("g", "train", expected=(FileExistsError,)):
                raise user_error


def test_evaluate_loads_plugins_with_the_manifests_protocol(prepared_dir, tmp_path, monkeypatch):
    seen: list[LoadContext] = []

    class Recording(_Fine):
        name = "recording"

        @classmethod
        def load(cls, checkpoint, *, variant=None, overrides=None, context=None):
            seen.append(context)
            return cls()

    reg = Registry()
    reg.register(Recording)
    monkeypatch.setattr("ctbench.evaluate.sources.REGISTRY", reg)
    args = ["evaluate", "-g", "recording", "--data", str(prepared_dir), "--n", "2", "--metrics", "intensity",
            "--out", str(tmp_path)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    manifest = json.loads((prepared_dir / "manifest.json").read_text())
    assert seen[0].protocol.to_dict() == manifest["protocol"] and Path(seen[0].data_dir) == prepared_dir


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


BROKEN = "ctbench-broken-plugins 0.1.0"
PLAIN = "class PlainBlobs is not a subclass of ctbench.api.Generator"


def test_broken_plugins_are_listed_with_the_reason(toy_plugin_path):
    ls = _run(["ls"], toy_plugin_path)
    assert ls.returncode == 0, ls.stderr
    lines = ls.stdout.splitlines()
    assert lines[: lines.index("metrics:")] == [
        "generators:",
        "  mean-volume      variants: default  [ctbench 0.1.0]",
        "  noise            variants: default, wide  [ctbench 0.1.0]",
        "  real-holdout     variants: default, test, train  [ctbench 0.1.0]",
        f"  toy-bad-variants BROKEN ({BROKEN}): variants()['big'] is float, expected a dict of overrides",
        "  toy-blobs        variants: default, big  [ctbench-toy-plugin 0.3.0]",
        "  toy-broken       BROKEN (ctbench-toy-plugin 0.3.0): ModuleNotFoundError: No module named "
        "'ctbench_toy_plugin.does_not_exist'",
        f"  toy-crash        variants: default, load, info  [{BROKEN}]",
        f"  toy-misnamed     BROKEN ({BROKEN}): class Misnamed has the name 'toy-other-name', but its entry point "
        "is 'toy-misnamed'",
        f"  toy-no-info      BROKEN ({BROKEN}): class NoInfo does not implement info",
        f"  toy-plain        BROKEN ({BROKEN}): {PLAIN}",
        "  vqgan-ddpm       variants: default, full, rec, rec+disc, rec+cb+cm, c2, c4, c8, c16, flip, ancestral  "
        "[ctbench 0.1.0, trainable, "
        "configs: flare22, tiny]",
    ]
    assert ls.stderr == "(broken plugins do not affect the others; `ctbench evaluate` refuses them)\n"


def test_evaluate_on_a_broken_plugin_is_one_error_line(toy_plugin_path, prepared_dir, tmp_path):
    ev = _run(["evaluate", "-g", "toy-plain", "--data", str(prepared_dir), "--out", str(tmp_path)], toy_plugin_path)
    assert (ev.returncode, ev.stdout) == (1, "")
    assert ev.stderr == f"Error: generator 'toy-plain' (ctbench_broken_plugins.plugins:PlainBlobs) is broken: {PLAIN}\n"


@pytest.mark.parametrize(
    "spec, error",
    [
        ("toy-bad-variants", "generator 'toy-bad-variants' (ctbench_broken_plugins.plugins:MalformedVariants) is "
         "broken: variants()['big'] is float, expected a dict of overrides"),
        ("toy-no-info@big", "generator 'toy-no-info' (ctbench_broken_plugins.plugins:NoInfo) is broken: class "
         "NoInfo does not implement info"),
        ("toy-crash@load", "generator 'toy-crash@load': load() raised KeyError: 'weights'"),
        ("toy-crash@info", "generator 'toy-crash': info() returned dict, expected a GeneratorInfo"),
        ("toy-crash", "generator 'toy-crash@default': sample() raised ZeroDivisionError: float division by zero"),
    ],
)
def test_plugin_code_that_breaks_while_evaluating_is_one_error_line(
    spec, error, toy_plugin_path, prepared_dir, tmp_path, monkeypatch
):
    monkeypatch.syspath_prepend(str(toy_plugin_path))
    monkeypatch.setattr("ctbench.evaluate.sources.REGISTRY", Registry())
    args = ["evaluate", "-g", spec, "--data", str(prepared_dir), "--n", "2", "--metrics", "intensity",
            "--out", str(tmp_path)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit)
    assert r.output == f"Error: {error}\n"
    assert not list(tmp_path.glob("*.json"))


def test_train_on_a_broken_or_untrainable_plugin_is_one_error_line(
    toy_plugin_path, prepared_dir, tmp_path, monkeypatch
):
    monkeypatch.syspath_prepend(str(toy_plugin_path))
    monkeypatch.setattr("ctbench.api.REGISTRY", Registry())  # `ctbench train` imports it when it runs
    for spec, error in [
        ("toy-plain", f"generator 'toy-plain' (ctbench_broken_plugins.plugins:PlainBlobs) is broken: {PLAIN}"),
        ("toy-blobs", "generator 'toy-blobs' is not trainable"),
    ]:
        r = CliRunner().invoke(main, ["train", spec, "--data", str(prepared_dir), "--out", str(tmp_path / "run")])
        assert r.exit_code == 1 and isinstance(r.exception, SystemExit)
        assert r.output == f"Error: {error}\n"
    assert not (tmp_path / "run").exists()
