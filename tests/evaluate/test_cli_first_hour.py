"""A new user's first hour: fast `--help`, the README's commands, device checks, seeds, Ctrl-C, rough edges.

Every user error is one exact `Error:` line with a non-zero exit and no traceback.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import click
import pytest
import torch
from click.testing import CliRunner

import ctbench.demo as demo_module
from ctbench.cli import main
from ctbench.record import write_record

README = Path(__file__).resolve().parents[2] / "README.md"
NO_CUDA = "Error: --device cuda: no CUDA device is available here; use --device cpu"


def _fails(args: list[str], code: int = 1) -> str:
    r = CliRunner().invoke(main, args)
    assert r.exit_code == code and isinstance(r.exception, SystemExit), (r.output, r.exception)
    assert "Traceback" not in r.output
    return r.output


def _readme_commands() -> list[list[str]]:
    """The ``ctbench ...`` command lines of the README's bash blocks, as argument lists (comments dropped)."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    lines = [line.split("#")[0].split() for block in blocks for line in block.splitlines()]
    return [words[1:] for words in lines if words and Path(words[0]).name == "ctbench"]


def test_help_imports_no_heavy_module():
    """`ctbench --help` and every sub-command's `--help` import neither torch nor numpy (benchmarks/bench_cli.py
    times them)."""
    script = (
        "import sys\n"
        "from ctbench.cli import main\n"
        "for args in ([], ['data'], ['data', 'synth'], ['data', 'prepare'], ['data', 'info'], ['stats'],\n"
        "             ['weights'], ['weights', 'fetch'], ['train'], ['evaluate'], ['ls'], ['leaderboard', 'build'],\n"
        "             ['demo']):\n"
        "    try:\n"
        "        main([*args, '--help'], prog_name='ctbench')\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, (args, exc.code)\n"
        "heavy = ('torch', 'numpy', 'nibabel', 'SimpleITK', 'scipy', 'matplotlib', 'tensorflow', 'yaml')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]", out[-2000:]


def _command_path(words: list[str]) -> list[str]:
    """The leading words of a command line that name (sub-)commands: ``data prepare /x y`` → data, prepare."""
    names, command = [], main
    for word in words:
        sub = command.get_command(click.Context(command), word) if isinstance(command, click.Group) else None
        if sub is None:
            break
        names.append(word)
        command = sub
    return names


def test_readme_first_screen_commands_have_help():
    commands = _readme_commands()
    assert len(commands) >= 8
    for words in commands:
        names = _command_path(words)
        assert names, words
        r = CliRunner().invoke(main, [*names, "--help"])
        assert r.exit_code == 0 and "Usage: main " + " ".join(names) in r.output, (words, r.output)


def test_seeds_are_non_negative_everywhere(prepared_dir, tmp_path):
    rule = "Invalid value for '--seed': -5 is not in the range 0<=x<=9223372036854775807."
    assert rule in _fails(["data", "synth", str(tmp_path / "raw"), "--seed", "-5"], code=2)
    assert rule in _fails(["evaluate", "-g", "noise", "--data", str(prepared_dir), "--seed", "-5"], code=2)
    assert rule in _fails(["demo", "--out", str(tmp_path / "d"), "--seed", "-5"], code=2)
    assert not (tmp_path / "raw").exists() and not (tmp_path / "d").exists()


def test_prepare_a_single_file_says_it_needs_a_folder(tmp_path):
    scan = tmp_path / "scan.nii.gz"
    scan.write_bytes(b"\x00")
    out = _fails(["data", "prepare", str(scan), str(tmp_path / "prepared")])
    assert out.strip() == (
        f"Error: {scan}: is a file; SRC must be a folder of scans (NIfTI files or DICOM series folders): put the "
        "scan into a folder of its own and pass that folder"
    )
    assert "Invalid value for --protocol: unknown protocol 'v9'; known: flare22-v1" in _fails(
        ["data", "prepare", str(tmp_path), str(tmp_path / "p"), "--protocol", "v9"], code=2
    )


def test_unknown_weights_name_has_no_stray_quotes():
    out = _fails(["weights", "fetch", "foo"])
    assert out.strip() == (
        "Error: foo: unknown weights 'foo'; known: i3d-kinetics-400, i3d-kinetics-400-torch, inception-v3-compat, "
        "medicalnet-resnet50-23, radimagenet-resnet50, vgg16-imagenet"
    )


def test_against_a_misspelt_generator_suggests_the_name(tmp_path, make_record):
    write_record(make_record("noise", {"intensity_w1": 200.0}), tmp_path / "r")
    r = CliRunner().invoke(main, ["leaderboard", "build", str(tmp_path / "r"), "-o", str(tmp_path / "lb"),
                                  "--against", "nosie"])
    assert r.exit_code == 0 and "; Δ cells are —; did you mean: noise?" in r.output


def test_device_is_checked_before_any_work(prepared_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "gpu"):
        out = _fails(["evaluate", "-g", "noise", "--data", str(prepared_dir), "--device", device,
                      "--out", str(tmp_path / "res")])
        assert out.strip() == NO_CUDA.replace("cuda", device, 1)
    assert not (tmp_path / "res").exists()
    out = _fails(["evaluate", "-g", "noise", "--data", str(prepared_dir), "--device", "tpu"], code=2)
    assert "Invalid value for --device: 'tpu': expected cpu, cuda (or gpu) or cuda:N" in out
    out = _fails(["train", "vqgan-ddpm", "--config", "tiny", "--data", str(prepared_dir), "--out",
                  str(tmp_path / "run"), "--device", "cuda"])
    assert out.strip() == NO_CUDA and not (tmp_path / "run").exists()
    assert _fails(["stats", str(prepared_dir), "--device", "gpu"]).strip() == NO_CUDA.replace("cuda", "gpu", 1)


@pytest.fixture
def one_case_folder(prepared_dir, tmp_path) -> Path:
    """A prepared folder whose manifest keeps one train case (the volumes are not needed: training is faked)."""
    manifest = json.loads((prepared_dir / "manifest.json").read_text())
    train = [c for c in manifest["cases"] if c.get("split") == "train"]
    manifest["cases"] = [c for c in manifest["cases"] if c.get("split") != "train"] + train[:1]
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path / "one"


def test_train_says_its_device_hides_gpus_for_cpu_and_warns(one_case_folder, tmp_path, monkeypatch):
    from ctbench_generators.vqgan_ddpm.plugin import VQGANDDPM

    seen = {}

    def fake_train(cls, config, data, out, **kw):
        import os

        seen["visible"] = os.environ.get("CUDA_VISIBLE_DEVICES")
        seen["shape"] = config["data"]["volume_shape"]
        return Path(out) / "checkpoint.pt"

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(VQGANDDPM, "train", classmethod(fake_train))
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "vqgan-ddpm", "--config", "flare22", "--data", str(one_case_folder),
                                  "--out", str(out), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert seen == {"visible": "", "shape": [64, 128, 128]}  # the plugin saw no GPU; restored afterwards:
    assert "CUDA_VISIBLE_DEVICES" not in __import__("os").environ
    lines = r.output.splitlines()
    assert lines[0] == "device: cpu; the progress bar shows the time per step (s/it) and the time left"
    assert lines[1] == (
        "warning: a full-size config (64×128×128 volumes, 100,000 vqgan + 100,000 ddpm steps) on a CPU: one step "
        "takes seconds here (about 1.7 s VQGAN, 0.7 s DDPM at batch 2 on 2 idle cores), so training takes days to "
        "weeks. Train on a GPU (--device cuda), or try --config tiny first."
    )
    assert lines[2] == (f"warning: {one_case_folder} has 1 case(s) in its train split; a model trained on it can "
                        "only copy that scan (prepare more scans)")
    assert lines[3] == f"checkpoint: {out / 'checkpoint.pt'}"
    tiny = CliRunner().invoke(main, ["train", "vqgan-ddpm", "--config", "tiny", "--data", str(one_case_folder),
                                     "--out", str(out), "--device", "cpu"])
    assert tiny.exit_code == 0 and "full-size" not in tiny.output


def test_ctrl_c_messages_say_how_to_go_on(prepared_dir, tmp_path, monkeypatch):
    from ctbench_generators.vqgan_ddpm.plugin import VQGANDDPM

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(VQGANDDPM, "train", classmethod(interrupted))
    args = ["train", "vqgan-ddpm", "--config", "tiny", "--data", str(prepared_dir), "--out", str(tmp_path / "run")]
    out = _fails(args, code=130)
    assert out.strip().endswith("interrupted before the first checkpoint: nothing was saved; run the same command "
                                "again to start over")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"")
    out = _fails(args, code=130)
    assert out.strip().endswith(f"interrupted: {tmp_path / 'run'} keeps its last checkpoint (checkpoints are written "
                                "atomically); run the same command with --resume to continue")

    monkeypatch.setattr("ctbench.demo.run_demo", interrupted)
    out = _fails(["demo", "--out", str(tmp_path / "d")], code=130)
    assert out.strip() == (f"interrupted: run the same command again to resume; it reuses what {tmp_path / 'd'} "
                           "already holds (phantoms, prepared cases, the reference model's last checkpoint, result "
                           "records)")
    monkeypatch.setattr("ctbench.evaluate.run.evaluate", interrupted)
    out = _fails(["evaluate", "-g", "noise", "--data", str(prepared_dir)], code=130)
    assert out.strip() == ("interrupted: no record was written; run the same command again to evaluate (reference "
                           "statistics already cached are reused; samples are drawn again)")


class _Reference:
    """A stand-in for the reference plugin: its checkpoint is a JSON file of finished stages."""

    calls: list[dict] = []

    @classmethod
    def config_files(cls):
        return {"tiny": Path(demo_module.__file__)}  # any text file parses as YAML: the module docstring

    @classmethod
    def checkpoint_path(cls, out_dir):
        return Path(out_dir) / "checkpoint.pt"

    @classmethod
    def resolve_config(cls, variant, overrides):
        return {}

    @classmethod
    def load(cls, checkpoint):
        if json.loads(Path(checkpoint).read_text()) != ["vqgan", "ddpm"]:
            raise ValueError(f"{checkpoint}: the ddpm stage is not finished; train it first")

    @classmethod
    def train(cls, config, data, out_dir, *, variant, resume):
        cls.calls.append({"resume": resume})
        path = cls.checkpoint_path(out_dir)
        if resume and not path.is_file():
            raise FileNotFoundError(f"{path}: no checkpoint to resume")
        path.write_text(json.dumps(["vqgan", "ddpm"]))
        return path


def test_demo_resumes_an_interrupted_reference_training(tmp_path, monkeypatch):
    status = SimpleNamespace(cls=_Reference, default_variant="full", error=None)
    monkeypatch.setattr("ctbench.api.REGISTRY", SimpleNamespace(names=lambda: ["vqgan-ddpm"], status=lambda n: status))
    monkeypatch.setattr("yaml.safe_load", lambda text: {})
    run = tmp_path / "runs" / "vqgan-ddpm-tiny"
    run.mkdir(parents=True)
    (run / "checkpoint.pt").write_text(json.dumps(["vqgan"]))  # Ctrl-C during the ddpm stage
    said: list[str] = []
    _Reference.calls = []
    assert demo_module._train_reference(tmp_path, run, said.append) == run / "checkpoint.pt"
    assert _Reference.calls == [{"resume": True}]
    assert said[:2] == [
        f"reference model: {run / 'checkpoint.pt'}: the ddpm stage is not finished; train it first",
        f"resuming the interrupted training of the tiny reference model from {run / 'checkpoint.pt'} ...",
    ]
    said.clear()
    assert demo_module._train_reference(tmp_path, run, said.append) == run / "checkpoint.pt"
    assert said == [f"reference model: reusing {run / 'checkpoint.pt'}"] and len(_Reference.calls) == 1
