"""Training runs: bit-for-bit resume, the `ctbench train` command on a prepared folder, the plugin's samples."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
import yaml
from click.testing import CliRunner

from ctbench.api import REGISTRY, LoadContext, check_samples
from ctbench.cli import main
from ctbench.data.dataset import PreparedDataset
from ctbench.protocol import DEFAULT_PROTOCOL
from ctbench_generators.vqgan_ddpm.build import build_vqgan
from ctbench_generators.vqgan_ddpm.checkpoint import load_checkpoint
from ctbench_generators.vqgan_ddpm.data import VolumeBatches
from ctbench_generators.vqgan_ddpm.plugin import VQGANDDPM
from ctbench_generators.vqgan_ddpm.trainer import train
from ctbench_generators.vqgan_ddpm.variants import default_config

TINY_YAML = VQGANDDPM.config_files()["tiny"]


def _steps(tiny_config, vq: int, dd: int) -> dict:
    return tiny_config(
        "full",
        vqgan={"train": {"steps": vq}, "discriminator": {"start_step": 1}},
        ddpm={"train": {"steps": dd}, "scale_batches": 2},
        checkpoint={"save_every": 2, "sample_every": 4, "log_every": 1},
    )


def _assert_same_tree(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same_tree(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same_tree(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_resume_continues_bit_for_bit(tiny_config, toy_volumes, tmp_path):
    data = toy_volumes(5)
    straight = train(_steps(tiny_config, 4, 4), data, tmp_path / "a", progress=False).checkpoint
    b = tmp_path / "b"
    train(_steps(tiny_config, 2, 4), data, b, stage="vqgan", progress=False)
    assert load_checkpoint(b / "checkpoint.pt")["vqgan"]["step"] == 2
    train(_steps(tiny_config, 4, 4), data, b, stage="vqgan", resume=True, progress=False)
    train(_steps(tiny_config, 4, 2), data, b, stage="ddpm", progress=False)
    resumed = train(_steps(tiny_config, 4, 4), data, b, stage="ddpm", resume=True, progress=False).checkpoint
    sa, sb = load_checkpoint(straight), load_checkpoint(resumed)
    for stage in ("vqgan", "ddpm"):
        _assert_same_tree(sa[stage], sb[stage], stage)
    assert sa["vqgan"]["step"] == sa["ddpm"]["step"] == 4 and sa["ddpm"]["done"]
    assert sa["vqgan"]["discriminators"] is not None and sa["vqgan"]["opt_d"]["state"]  # D was trained
    assert (tmp_path / "a" / "montages" / "vqgan_0000004.png").stat().st_size > 0
    assert (tmp_path / "a" / "montages" / "ddpm_0000004.png").stat().st_size > 0


def test_runs_refuse_to_overwrite_or_mix_configs(tiny_config, toy_volumes, tmp_path):
    data = toy_volumes(2)
    cfg = _steps(tiny_config, 1, 1)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(cfg, data, tmp_path, stage="ddpm", progress=False)
    train(cfg, data, tmp_path, stage="vqgan", progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg, data, tmp_path, stage="vqgan", progress=False)
    other = tiny_config("full", vqgan={"base_channels": 4, "train": {"steps": 1}})
    with pytest.raises(ValueError, match="vqgan.base_channels"):
        train(other, data, tmp_path, stage="ddpm", progress=False)
    with pytest.raises(ValueError, match="not finished"):
        REGISTRY.get("vqgan-ddpm").load(tmp_path / "checkpoint.pt")
    train(cfg, data, tmp_path, stage="ddpm", progress=False)
    assert "ddpm" in load_checkpoint(tmp_path / "checkpoint.pt")
    with pytest.warns(UserWarning, match="DDPM stage is dropped"):
        train(_steps(tiny_config, 2, 1), data, tmp_path, stage="vqgan", resume=True, progress=False)
    assert "ddpm" not in load_checkpoint(tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="unknown stage"):
        train(cfg, data, tmp_path / "x", stage="vae", progress=False)


def test_train_command_on_prepared_folder_then_sample(prepared_dir, tmp_path):
    """The demo's path: `ctbench train vqgan-ddpm --config tiny.yaml` (steps cut down), then load and sample."""
    cfg = yaml.safe_load(TINY_YAML.read_text())
    cfg["vqgan"]["train"]["steps"] = 12
    cfg["vqgan"]["discriminator"]["start_step"] = 6
    cfg["ddpm"]["train"]["steps"] = 12
    cfg["checkpoint"]["sample_every"] = 0
    cfg["variant"] = "rec+disc"
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    args = ["train", "vqgan-ddpm", "--config", str(config), "--data", str(prepared_dir), "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "checkpoint.pt" in result.output
    again = CliRunner().invoke(main, args)
    assert again.exit_code != 0 and "--resume" in again.output
    clash = CliRunner().invoke(main, [*args[:1], "vqgan-ddpm@c8", *args[2:]])
    assert clash.exit_code != 0 and "variant" in clash.output

    gen = REGISTRY.load("vqgan-ddpm", out / "checkpoint.pt")
    info = gen.info()
    assert info.variant == "rec+disc" and info.checkpoint_sha256 and info.parameters > 0
    assert info.config["output"] == {"decoded_shape": [16, 32, 32], "resize_to_protocol": "nearest"}
    x = check_samples(gen.sample(3, seed=7, batch_size=3), 3, "vqgan-ddpm")
    assert x.std() > 0
    one_by_one = gen.sample(3, seed=7, batch_size=1)
    assert torch.allclose(x, one_by_one, atol=1e-5)
    assert torch.allclose(gen.sample(1, seed=7, offset=2), x[2:], atol=1e-5)
    assert not torch.allclose(gen.sample(1, seed=8), x[:1], atol=1e-3)
    at_decoded = LoadContext(protocol=dataclasses.replace(DEFAULT_PROTOCOL, output_shape=(32, 32, 16)))  # (x, y, z)
    small = REGISTRY.load("vqgan-ddpm", out / "checkpoint.pt", context=at_decoded)
    assert small.info().config["output"]["resize_to_protocol"] is None  # the protocol's shape is the decoded one
    assert check_samples(small.sample(1, seed=7), 1, "vqgan-ddpm", at_decoded.protocol).shape == (1, 1, 16, 32, 32)
    full_chain = {"sampling": {"sampler": "ancestral", "steps": None}}
    ancestral = REGISTRY.load("vqgan-ddpm", out / "checkpoint.pt", overrides=full_chain)
    assert ancestral.sampler.diffusion.num_timesteps == 100  # all T steps
    check_samples(ancestral.sample(1, seed=0), 1, "vqgan-ddpm")
    with pytest.raises(ValueError, match="only bf16, channels_last, sampling overrides"):
        REGISTRY.load("vqgan-ddpm", out / "checkpoint.pt", overrides={"vqgan": {"compression": 8}})
    typo = r"^override \(--set\): unknown config key 'sampling.clip_xo'; known here: batch_size, "
    with pytest.raises(ValueError, match=typo):
        REGISTRY.load("vqgan-ddpm", out / "checkpoint.pt", overrides={"sampling": {"clip_xo": False}})
    unclipped = REGISTRY.load("vqgan-ddpm", out / "checkpoint.pt", overrides={"sampling": {"clip_x0": False}})
    assert unclipped.x0_bounds is None and gen.x0_bounds is not None
    assert unclipped.info().config["sampler"] == "ddim-5-unclipped"
    with pytest.raises(ValueError, match="trained as variant"):
        REGISTRY.load("vqgan-ddpm@c8", out / "checkpoint.pt")


def test_batches_are_deterministic_resized_and_split_across_ranks(toy_volumes):
    data = [v * 0 + i / 10 for i, v in enumerate(toy_volumes(5, shape=(8, 16, 16)))]  # volume i is constant i/10
    ranks = [VolumeBatches(data, 2, (4, 8, 8), rank=r, world_size=2, seed=3) for r in (0, 1)]
    g = torch.Generator()
    seen = [[round(float(v.mean()) * 10) for r in ranks for v in r.batch(i, g)] for i in range(5)]
    assert seen == [[round(float(v.mean()) * 10) for r in ranks for v in r.batch(i, g)] for i in range(5)]
    flat = [k for batch in seen for k in batch]  # 20 draws = 4 epochs of 5, each a permutation
    for epoch in range(4):
        assert sorted(flat[5 * epoch : 5 * epoch + 5]) == [0, 1, 2, 3, 4]
    assert ranks[0].batch(0, g).shape == (2, 1, 4, 8, 8)
    flips = VolumeBatches([torch.arange(4.0).view(1, 1, 1, 4)], 1, (1, 1, 4), flip_probability=1.0)
    assert flips.batch(0, g).flatten().tolist() == [3.0, 2.0, 1.0, 0.0]


def test_tiny_yaml_trains_both_stages_and_learns(prepared_dir, tmp_path):
    """The call the demo makes, on tiny.yaml with its steps cut (120 + 150; the demo trains 600 + 300)."""
    tiny = yaml.safe_load(TINY_YAML.read_text())
    tiny["vqgan"]["train"]["steps"], tiny["vqgan"]["discriminator"]["start_step"] = 120, 60
    tiny["ddpm"]["train"]["steps"] = 150
    config = VQGANDDPM.resolve_config(None, tiny)
    checkpoint = VQGANDDPM.train(config, prepared_dir, tmp_path)
    assert sorted(p.name for p in (tmp_path / "montages").iterdir()) == ["ddpm_0000100.png", "vqgan_0000100.png"]

    gen = VQGANDDPM.load(checkpoint)
    vols = torch.stack([F.interpolate(v[None], size=(16, 32, 32), mode="trilinear")[0]
                        for v in PreparedDataset(prepared_dir, "train")])
    torch.manual_seed(config["seed"])
    untrained = build_vqgan(config)
    with torch.no_grad():
        untrained.train()(vols)  # initialises the codebook from these volumes, as training does
        before = (untrained.eval()(vols).reconstruction - vols).abs().mean().item()
        after = (gen.vqgan(vols).reconstruction - vols).abs().mean().item()
    assert after < 0.3 * before, (before, after)
    with torch.no_grad():
        scaled = (gen.vqgan.encode(vols).z_q - gen.latent_mean) * gen.latent_scale  # tiny.yaml centres latents
    assert scaled.std().item() == pytest.approx(1.0, rel=0.2)  # the DDPM sees unit-variance latents
    assert scaled.mean(0).abs().mean().item() < 0.2 * scaled.std().item()  # ... around the per-position mean
    x = check_samples(gen.sample(2, seed=0), 2, "vqgan-ddpm")
    info = gen.info().config
    assert info == {**config, "output": info["output"], "sampler": "ddim-5", "augmentation": []}
    assert info["output"]["resize_to_protocol"] == "nearest"
    paper = REGISTRY.load("vqgan-ddpm@ancestral", checkpoint)  # a sampling variant of the default's checkpoint
    assert paper.info().variant == "ancestral" and paper.info().config["sampler"] == "ancestral-100"
    assert default_config()["data"]["volume_shape"] == [64, 128, 128] and x.shape[2:] == (64, 128, 128)

    # ... and evaluates through the registry like any plugin (weight-free metric: runs offline)
    args = ["evaluate", "-g", "vqgan-ddpm", "--checkpoint", str(checkpoint), "--data", str(prepared_dir), "--n", "2",
            "--metrics", "intensity", "--out", str(tmp_path / "results"), "--montage-volumes", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    (record,) = (tmp_path / "results").glob("*.json")
    generator = json.loads(record.read_text())["generator"]
    assert generator["name"] == "vqgan-ddpm" and generator["variant"] == "full"
    assert generator["config"]["sampler"] == "ddim-5" and generator["config"]["augmentation"] == []
