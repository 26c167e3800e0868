"""Bad inputs a new user tries: each ends in one exact `Error:` line, a non-zero exit, no traceback, nothing written.

Every case fails before any sampling or training, so the file runs in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ctbench.api import REGISTRY
from ctbench.cli import main
from ctbench.cli.train import _cpu_warning


def _error(args: list[str], code: int = 1) -> str:
    """The last output line of a failing command (click prints usage lines above a usage error's)."""
    r = CliRunner().invoke(main, args)
    assert r.exit_code == code and isinstance(r.exception, SystemExit), (r.output, r.exception)
    assert "Traceback" not in r.output
    return r.output.strip().splitlines()[-1]


def _evaluate(prepared_dir: Path, out: Path, *args: str) -> list[str]:
    return ["evaluate", "--data", str(prepared_dir), "--n", "2", "--out", str(out), *args]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-g", "noise", "--set", "foo=1"],
         "Error: --set foo=1: generator 'noise' has no config key 'foo'; known: mean, std"),
        (["-g", "noise", "--set", "std=abc"], "Error: --set std=abc: must be a number"),
        (["-g", "noise", "--set", "std=true"], "Error: --set std=True: must be a number"),
        (["-g", "real-holdout", "--set", "split=bogus"], "Error: --set split=bogus: must be one of train, val, test"),
        (["-g", "mean-volume", "--set", "split.x=1"], "Error: --set split={'x': 1}: must be one of train, val, test"),
    ],
)
def test_baseline_overrides_are_checked_before_sampling(prepared_dir, tmp_path, args, message):
    assert _error(_evaluate(prepared_dir, tmp_path / "r", "--metrics", "intensity", *args)) == message
    assert not (tmp_path / "r").exists()


def test_baseline_overrides_of_the_right_kind_apply():
    assert REGISTRY.load("noise", overrides={"std": 1}).info().config == {"mean": 0.0, "std": 1}
    assert REGISTRY.load("noise@wide", overrides={"mean": -0.5}).info().config == {"mean": -0.5, "std": 1.0}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metrics", "intensity", "--metric-option", "fid.kid_subset_size=abc"],
         "Error: --metric-option fid.kid_subset_size: metric 'fid' is not run (--metrics intensity); add it to "
         "--metrics or drop the option"),
        (["--metrics", "intensity", "--slices", "body"],
         "Error: --slices: metric 'fid' is not run (--metrics intensity); add it to --metrics or drop the option"),
        (["--metrics", "intensity", "--metric-option", "intensity.foo=1"],
         "Error: metric 'intensity' has no option foo; its options: none"),
        (["--metrics", "diversity", "--metric-option", "diversity.volumes=abc"],
         "Error: metric 'diversity': option volumes='abc' must be a whole number"),
        (["--metrics", "memorisation", "--metric-option", "memorisation.keep_worst=2.5"],
         "Error: metric 'memorisation': option keep_worst=2.5 must be a whole number"),
        (["--metrics", "fid", "--metric-option", "fid.bf16=maybe"],
         "Error: metric 'fid': option bf16='maybe' must be true or false"),
        (["--metrics", "fid", "--metric-option", "fid.kid_subset_size=some"],
         "Error: metric 'fid': option kid_subset_size='some' must be a whole number or null"),
        (["--samples", "SAMPLES", "--set", "std=1"],
         "Error: --set configures a generator; --samples SAMPLES scores files as they are"),
        (["--samples", "SAMPLES", "--checkpoint", "SAMPLES"],
         "Error: --checkpoint configures a generator; --samples SAMPLES scores files as they are"),
    ],
)
def test_metric_and_source_options_that_would_be_ignored_are_refused(prepared_dir, tmp_path, args, message):
    samples = tmp_path / "samples"
    samples.mkdir()
    args = [str(samples) if a == "SAMPLES" else a for a in args]
    source = [] if "--samples" in args else ["-g", "noise"]
    assert _error(_evaluate(prepared_dir, tmp_path / "r", *source, *args)) == message.replace("SAMPLES", str(samples))
    assert not (tmp_path / "r").exists()


def test_unknown_metric_in_a_metric_option_is_named(prepared_dir, tmp_path):
    line = _error(_evaluate(prepared_dir, tmp_path / "r", "-g", "noise", "--metric-option", "nometric.x=1"))
    assert line.startswith("Error: --metric-option nometric.x: unknown metric 'nometric'. Did you mean: memorisation? "
                           "Known: fid, fvd, "), line


def test_metrics_that_name_nothing_is_a_usage_error(prepared_dir, tmp_path):
    assert _error(_evaluate(prepared_dir, tmp_path / "r", "-g", "noise", "--metrics", " , "), code=2) == (
        "Error: Invalid value for --metrics: ' , ': names no metric (e.g. --metrics intensity,fid; see `ctbench ls`)"
    )


def test_checkpoint_folder_and_corrupt_checkpoint(prepared_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert _error(_evaluate(prepared_dir, tmp_path / "r", "-g", "vqgan-ddpm", "--checkpoint", str(run))) == (
        f"Error: {run}: is a folder, not a checkpoint file"
    )
    torch.save({"weights": torch.zeros(1000)}, run / "checkpoint.pt")
    assert _error(_evaluate(prepared_dir, tmp_path / "r", "-g", "vqgan-ddpm", "--checkpoint", str(run))) == (
        f"Error: --checkpoint {run}: is a run folder; pass its checkpoint file, {run / 'checkpoint.pt'}"
    )
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((run / "checkpoint.pt").read_bytes()[:2000])
    assert _error(_evaluate(prepared_dir, tmp_path / "r", "-g", "vqgan-ddpm", "--checkpoint", str(truncated))) == (
        f"Error: {truncated}: not a readable checkpoint (RuntimeError: PytorchStreamReader failed reading zip archive: "
        "failed finding central directory)"
    )
    assert not (tmp_path / "r").exists()


def test_stats_checks_batch_size_and_options_of_metrics_it_does_not_compute(prepared_dir):
    assert _error(["stats", str(prepared_dir), "--batch-size", "0"], code=2) == (
        "Error: Invalid value for '--batch-size': 0 is not in the range x>=1."
    )
    assert _error(["stats", str(prepared_dir), "--metric", "fvd", "--metric-option", "fid.groups=2"]) == (
        "Error: --metric-option fid.groups: metric 'fid' is not among fvd"
    )
    assert _error(["stats", str(prepared_dir), "--metric", "fvd", "--slices", "body"]) == (
        "Error: --slices: metric 'fid' is not among fvd"
    )


def test_weights_import_of_an_unknown_name_or_a_training_checkpoint(tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "rng": np.random.get_state()}, checkpoint)  # pickles numpy objects
    assert _error(["weights", "import", str(checkpoint), "--name", "nope"]) == (
        "Error: --name nope: unknown weights 'nope'; known: i3d-kinetics-400, i3d-kinetics-400-torch, "
        "inception-v3-compat, medicalnet-resnet50-23, radimagenet-resnet50, vgg16-imagenet"
    )
    why = "it pickles Python objects besides tensors (a training checkpoint?), or is no torch.save file"
    for name, what in [("medicalnet-resnet50-23", "a MedicalNet weights file"),
                       ("radimagenet-resnet50", "a PyTorch state dict"),
                       ("i3d-kinetics-400-torch", "a converted I3D weights file")]:
        assert _error(["weights", "import", str(checkpoint), "--name", name]) == (
            f"Error: {checkpoint}: not {what} ({why})"
        )
    text = tmp_path / "notes.pth"
    text.write_text("not weights\n")
    assert _error(["weights", "import", str(text), "--name", "i3d-kinetics-400-torch"]) == (
        f"Error: {text}: not a converted I3D weights file (no torch.save file)"
    )


def test_manifest_problems_are_named_once(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"schema_version": 1}))
    assert _error(["data", "info", str(tmp_path)]) == (
        f"Error: {tmp_path / 'manifest.json'}: not a valid ctbench manifest: protocol: missing; cases: missing"
    )


def test_cpu_warning_shows_a_wrong_typed_step_count_instead_of_crashing():
    config = {"data": {"volume_shape": [64, 128, 128]}, "vqgan": {"train": {"steps": "two"}},
              "ddpm": {"train": {"steps": 100000}}}
    assert _cpu_warning(config).startswith(
        "warning: a full-size config (64×128×128 volumes, 'two' vqgan + 100,000 ddpm steps) on a CPU"
    )


def test_preparing_other_scans_into_a_prepared_folder_keeps_its_cases(prepared_dir, tmp_path):
    out, src = tmp_path / "prepared", tmp_path / "other"
    out.mkdir()
    src.mkdir()
    manifest = (prepared_dir / "manifest.json").read_text()
    (out / "manifest.json").write_text(manifest)
    (src / "scan.nii.gz").write_bytes(b"\x00")
    ids = sorted(c["id"] for c in json.loads(manifest)["cases"])
    assert _error(["data", "prepare", str(src), str(out)]) == (
        f"Error: {out}: {len(ids)} prepared case(s) are not in {src} ({', '.join(ids[:3])}, ...; prepared from "
        f"{json.loads(manifest)['source']}); preparing {src} here would drop them and draw the splits again: use a new "
        f"output folder (or remove {out / 'manifest.json'} to start this folder over)"
    )
    assert (out / "manifest.json").read_text() == manifest


def test_leaderboard_build_keeps_a_folders_own_readme(tmp_path, make_record):
    from ctbench.record import write_record

    write_record(make_record("noise", {"intensity_w1": 200.0}), tmp_path / "r")
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "README.md").write_text("# my notes\n")
    assert _error(["leaderboard", "build", str(tmp_path / "r"), "-o", str(tmp_path / "project")]) == (
        f"Error: {tmp_path / 'project'}: holds README.md that no leaderboard build wrote; a build writes "
        "leaderboard.csv, README.md and index.html there: choose another folder (-o)"
    )
    assert (tmp_path / "project" / "README.md").read_text() == "# my notes\n"
    shipped = Path(__file__).resolve().parents[2] / "leaderboard" / "README.md"  # the placeholder a build replaces
    (tmp_path / "board").mkdir()
    (tmp_path / "board" / "README.md").write_text(shipped.read_text())
    for _ in range(2):  # the placeholder, then the build's own pages, are rewritten
        r = CliRunner().invoke(main, ["leaderboard", "build", str(tmp_path / "r"), "-o", str(tmp_path / "board")])
        assert r.exit_code == 0, r.output
        assert (tmp_path / "board" / "README.md").read_text().startswith("# ctbench leaderboard")


def test_a_damaged_saved_sample_is_named_with_the_fix(prepared_dir, tmp_path):
    args = _evaluate(prepared_dir, tmp_path / "r", "-g", "noise", "--n", "1", "--metrics", "intensity",
                     "--save-samples", "--montage-volumes", "0")
    assert CliRunner().invoke(main, args).exit_code == 0
    (record,) = (tmp_path / "r").glob("*.json")
    sample = tmp_path / "r" / "samples" / record.stem / "sample_00000.nii.gz"
    sample.write_bytes(b"junk")
    record.unlink()
    assert _error(args) == (
        f"Error: {sample}: cannot read NIfTI (File {sample} is not a gzip file); a saved sample of an earlier run: "
        "delete it to draw it again"
    )
    sample.unlink()
    assert CliRunner().invoke(main, args).exit_code == 0 and record.is_file()


def test_stats_import_of_a_file_that_is_not_statistics(tmp_path):
    text, npz = tmp_path / "stats.npz", tmp_path / "other.npz"
    text.write_text("not statistics\n")
    np.savez(npz, a=np.zeros(3))
    assert _error(["stats", "--import", str(text)]) == (
        f"Error: {text}: not a ctbench statistics file (not an .npz archive: `ctbench stats --export` writes them)"
    )
    assert _error(["stats", "--import", str(npz)]) == (
        f"Error: {npz}: not a ctbench statistics file (no 'meta.json' entry)"
    )


def test_data_info_preview_must_be_a_png(prepared_dir, tmp_path):
    assert _error(["data", "info", str(prepared_dir), "--preview", str(tmp_path / "p.txt")], code=2) == (
        f"Error: Invalid value for --preview: {tmp_path / 'p.txt'}: the preview is a PNG; name a .png file"
    )
    assert not list(tmp_path.iterdir())


def test_weights_import_checks_inception_even_when_unverified(tmp_path):
    text = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    text.write_text("<html>not weights</html>\n")
    assert _error(["weights", "import", str(text), "--unverified-weights"]) == (
        f"Error: {text}: not usable as InceptionV3 FID weights (invalid load key, '<'.)"
    )
