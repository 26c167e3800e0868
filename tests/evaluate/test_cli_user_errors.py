"""User errors on the evaluate / leaderboard command lines: a click error naming the file or generator, no traceback."""

from __future__ import annotations

import io
import json

import pytest
import torch
from click.testing import CliRunner

from ctbench.cli import main
from ctbench.core.progress import progress_bar
from ctbench.leaderboard import build
from ctbench.record import write_record


def _invoke(args: list[str]):
    r = CliRunner().invoke(main, args)
    # a user error is a click exit (SystemExit), never an uncaught Python exception with a traceback
    assert r.exit_code != 0 and isinstance(r.exception, SystemExit), (r.output, r.exception)
    assert "Traceback" not in r.output
    return r


def test_rerun_of_corrupt_or_foreign_record_names_the_file(tmp_path):
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{not json")
    r = _invoke(["evaluate", "--rerun", str(corrupt)])
    assert f"{corrupt}: cannot read as JSON" in r.output
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"kind": "something-else"}))
    r = _invoke(["evaluate", "--rerun", str(foreign)])
    assert str(foreign) in r.output and "not a ctbench result record" in r.output


def test_unwritable_results_folder_fails_before_sampling(prepared_dir, tmp_path, fake_generator):
    calls = []
    fake_generator("counting", lambda n: calls.append(n) or torch.zeros(n, 1, 64, 128, 128))
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a file where the results folder should go: cannot be created, even as root
    r = _invoke(["evaluate", "-g", "counting", "--data", str(prepared_dir), "--n", "2", "--out", str(blocker / "res")])
    assert f"{blocker / 'res'}: results folder cannot be written" in r.output
    assert calls == []


def test_nan_generator_on_the_command_line_names_the_generator(prepared_dir, tmp_path, fake_generator):
    fake_generator("nan-gen", lambda n: torch.full((n, 1, 64, 128, 128), float("nan")))
    args = ["evaluate", "-g", "nan-gen", "--data", str(prepared_dir), "--n", "2", "--out", str(tmp_path)]
    r = _invoke([*args, "--metrics", "intensity"])
    assert "generator 'nan-gen@default'" in r.output and "NaN/inf" in r.output
    assert not list(tmp_path.glob("*.json"))


@pytest.mark.parametrize(
    "option, value, message",
    [("--batch-size", "0", "--batch-size"), ("--n", "0", "--n"), ("--diversity-volumes", "1", "--diversity-volumes")],
)
def test_out_of_range_numbers_are_usage_errors(prepared_dir, option, value, message):
    r = _invoke(["evaluate", "-g", "noise", "--data", str(prepared_dir), option, value])
    assert r.exit_code == 2 and message in r.output and "is not in the range" in r.output


def test_leaderboard_unwritable_output_empty_folder_and_unknown_against(tmp_path, make_record):
    results = tmp_path / "results"
    results.mkdir()
    r = _invoke(["leaderboard", "build", str(results), "-o", str(tmp_path / "lb")])
    assert r.exit_code == 1 and f"Error: {results}: no result records (*.json) found; nothing to build" in r.output
    assert not (tmp_path / "lb").exists()  # no empty board

    write_record(make_record("noise", {"intensity_w1": 200.0}), results)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    r = _invoke(["leaderboard", "build", str(results), "-o", str(blocker / "lb")])
    assert f"{blocker / 'lb'}: cannot create the leaderboard folder" in r.output

    r = CliRunner().invoke(main, ["leaderboard", "build", str(results), "-o", str(tmp_path / "lb"), "--against", "x"])
    assert r.exit_code == 0 and "warning: --against x: no such generator in group" in r.output


def test_real_side_columns_get_no_delta_and_are_drawn_on_their_partner(tmp_path, make_record):
    results = tmp_path / "results"
    for name, w1, ms in (("real-holdout", 15.0, 0.70), ("noise", 230.0, 0.11)):
        write_record(make_record(name, {"intensity_w1": w1, "ms_ssim": ms, "ms_ssim_real": 0.69}), results)
    paths = build(results, tmp_path / "lb", against="real-holdout")
    md = paths["markdown"].read_text()
    assert "Δms_ssim |" in md and "Δms_ssim_real" not in md
    header = paths["csv"].read_text().splitlines()[0].split(",")
    assert "delta_ms_ssim" in header and "ms_ssim_real" in header and "delta_ms_ssim_real" not in header
    plots = sorted(p.name.split("-", 1)[1] for p in (tmp_path / "lb" / "plots").glob("*.png"))
    assert plots == ["intensity_w1.png", "ms_ssim.png"]  # ms_ssim_real is the dashed line on ms_ssim's plot

    # real-side values that differ between rows (other options) keep their own plot
    write_record(make_record("mean-volume", {"intensity_w1": 60.0, "ms_ssim": 1.0, "ms_ssim_real": 0.5}), results)
    build(results, tmp_path / "lb2")
    assert len(list((tmp_path / "lb2" / "plots").glob("*-ms_ssim_real.png"))) == 1


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bars_show_on_a_terminal_only():
    assert progress_bar(range(3), file=io.StringIO()).disable  # a log file / pipe: no bar
    bar = progress_bar(range(3), file=_Terminal())
    assert not bar.disable
    bar.close()
    assert progress_bar(range(3), file=_Terminal(), enabled=False).disable  # e.g. ranks other than 0


def test_demo_on_a_folder_that_is_not_prepared_or_not_writable(tmp_path):
    (tmp_path / "empty").mkdir()
    r = _invoke(["demo", "--out", str(tmp_path / "d"), "--data", str(tmp_path / "empty"), "--no-reference"])
    assert f"{tmp_path / 'empty' / 'manifest.json'}: no manifest" in r.output
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    r = _invoke(["demo", "--out", str(blocker / "demo"), "--cases", "10", "--no-reference"])
    assert f"Error: {blocker / 'demo' / 'raw'}" in r.output and "Not a directory" in r.output


def test_a_checkpoint_given_to_a_baseline_is_an_error_not_ignored(prepared_dir, tmp_path):
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"x")
    args = ["evaluate", "-g", "noise", "--checkpoint", str(ckpt), "--data", str(prepared_dir), "--out", str(tmp_path)]
    r = _invoke([*args, "--n", "1", "--metrics", "intensity"])
    assert f"generator 'noise' needs no checkpoint (it is not trained), got {ckpt}" in r.output


def test_real_holdout_refuses_more_samples_than_its_split(prepared_dir, tmp_path):
    from ctbench.data.prepared import cases

    held = len(cases(prepared_dir, "val"))
    args = ["evaluate", "-g", "real-holdout", "--data", str(prepared_dir), "--metrics", "intensity"]
    r = _invoke([*args, "--n", str(held + 1), "--out", str(tmp_path)])
    error = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and f"{held + 1} samples asked for" in error[0] and f"holds {held} volumes" in error[0]
    assert not list(tmp_path.glob("*.json"))
