"""`ctbench train` edges: a non-default variant from tiny.yaml end to end, resume of a finished run,
contradicting config keys, Ctrl-C during training and during a checkpoint write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

import ctbench_generators.vqgan_ddpm.trainer as train_module
from ctbench.cli import main
from ctbench.cli.train import find_config
from ctbench.core.hashing import file_sha256
from ctbench_generators.vqgan_ddpm.checkpoint import load_checkpoint
from ctbench_generators.vqgan_ddpm.plugin import VQGANDDPM
from ctbench_generators.vqgan_ddpm.trainer import train

TINY_YAML = VQGANDDPM.config_files()["tiny"]


def _short_tiny_yaml(tmp_path: Path, steps: int = 6, **extra: object) -> Path:
    """tiny.yaml as shipped (it sets ``vqgan.compression: 4``) with its step counts cut down."""
    cfg = yaml.safe_load(TINY_YAML.read_text())
    cfg["vqgan"]["train"]["steps"] = cfg["ddpm"]["train"]["steps"] = steps
    cfg["vqgan"]["discriminator"]["start_step"] = steps // 2
    cfg["ddpm"]["scale_batches"] = 2
    cfg["checkpoint"].update(save_every=2, sample_every=0)
    cfg.update(extra)
    path = tmp_path / "short.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_c16_variant_trains_from_tiny_yaml_then_evaluates(prepared_dir, tmp_path):
    config, out = _short_tiny_yaml(tmp_path), tmp_path / "run"
    args = ["train", "vqgan-ddpm@c16", "--config", str(config), "--data", str(prepared_dir), "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    state = load_checkpoint(out / "checkpoint.pt")
    # the variant's compression wins over the file's `compression: 4` (its default value)
    assert state["variant"] == "c16" and state["config"]["vqgan"]["compression"] == 16
    assert state["vqgan"]["model"]["quantizer.embedding"].shape == (256, 8)

    digest = file_sha256(out / "checkpoint.pt")
    again = CliRunner().invoke(main, [*args, "--resume"])
    assert again.exit_code == 0, again.output
    assert "vqgan: already at step 6 of 6; nothing to train" in again.output
    assert "ddpm: already at step 6 of 6" in again.output
    assert file_sha256(out / "checkpoint.pt") == digest  # a finished run is left as it was
    shipped = CliRunner().invoke(main, [*args[:3], "tiny", *args[4:], "--resume"])  # the plugin's own tiny.yaml
    assert shipped.exit_code == 1
    assert "differs from the checkpoint's in ddpm.scale_batches, vqgan.discriminator.start_step;" in shipped.output

    ev = ["evaluate", "-g", "vqgan-ddpm@c16", "--checkpoint", str(out / "checkpoint.pt"), "--data",
          str(prepared_dir), "--n", "2", "--metrics", "intensity", "--out", str(tmp_path / "results")]
    result = CliRunner().invoke(main, ev)
    assert result.exit_code == 0, result.output
    (record,) = (tmp_path / "results").glob("*.json")
    generator = json.loads(record.read_text())["generator"]
    assert generator["variant"] == "c16" and generator["config"]["vqgan"]["compression"] == 16


def test_config_file_that_contradicts_the_variant_is_refused(prepared_dir, tmp_path):
    config = _short_tiny_yaml(tmp_path)
    data = yaml.safe_load(config.read_text())
    data["vqgan"]["compression"] = 8
    config.write_text(yaml.safe_dump(data))
    args = ["train", "vqgan-ddpm@c16", "--config", str(config), "--data", str(prepared_dir), "--out", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert f"{config}: config key 'vqgan.compression' = 8 contradicts variant 'c16'" in result.output
    assert not (tmp_path / "checkpoint.pt").exists()


def test_ctrl_c_keeps_the_last_checkpoint_and_resume_finishes(prepared_dir, tmp_path, monkeypatch):
    config, out = _short_tiny_yaml(tmp_path), tmp_path / "run"
    args = ["train", "vqgan-ddpm", "--config", str(config), "--data", str(prepared_dir), "--out", str(out),
            "--stage", "vqgan"]
    real_step = train_module.vqgan_step

    def interrupted_at_step_3(*a, **k):
        if a[5] == 3:  # the step argument: steps 0-2 ran, the checkpoint at step 2 was written
            raise KeyboardInterrupt
        return real_step(*a, **k)

    monkeypatch.setattr(train_module, "vqgan_step", interrupted_at_step_3)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 130
    assert "interrupted" in result.output and "--resume" in result.output
    assert load_checkpoint(out / "checkpoint.pt")["vqgan"]["step"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"]  # no temporary file left behind

    monkeypatch.setattr(train_module, "vqgan_step", real_step)
    result = CliRunner().invoke(main, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out / "checkpoint.pt")["vqgan"]["done"]


def test_ctrl_c_inside_a_checkpoint_write_leaves_the_previous_one(tiny_config, toy_volumes, tmp_path, monkeypatch):
    cfg = tiny_config(vqgan={"train": {"steps": 4}}, checkpoint={"save_every": 2, "sample_every": 0})
    train(tiny_config(vqgan={"train": {"steps": 2}}, checkpoint={"save_every": 2, "sample_every": 0}),
          toy_volumes(2), tmp_path, stage="vqgan", progress=False)
    before = file_sha256(tmp_path / "checkpoint.pt")
    real_save = torch.save

    def half_written(obj, f, *a, **k):
        Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", half_written)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, toy_volumes(2), tmp_path, stage="vqgan", resume=True, progress=False)
    monkeypatch.setattr(torch, "save", real_save)
    assert file_sha256(tmp_path / "checkpoint.pt") == before
    assert load_checkpoint(tmp_path / "checkpoint.pt")["vqgan"]["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_config_is_a_file_or_a_config_the_plugin_ships(prepared_dir, tmp_path, monkeypatch):
    shipped = VQGANDDPM.config_files()
    assert sorted(shipped) == ["flare22", "tiny"] and shipped["tiny"].name == "tiny.yaml"
    assert find_config(VQGANDDPM, "flare22") == shipped["flare22"]
    monkeypatch.chdir(tmp_path)
    Path("tiny").write_text("variant: c8\n")  # a file of that name wins
    assert find_config(VQGANDDPM, "tiny") == Path("tiny")
    args = ["train", "vqgan-ddpm", "--config", "nope", "--data", str(prepared_dir), "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    ships = "nor a config 'vqgan-ddpm' ships (it ships: flare22, tiny)"
    assert result.output == f"Error: --config nope: no such file, {ships}\n"
