"""The boards read at a glance: significant digits, real-side values once, glossary, headline first, data source."""

from __future__ import annotations

import csv

import pytest
from click.testing import CliRunner

from ctbench.cli import main
from ctbench.leaderboard import build
from ctbench.leaderboard.columns import glossary, headline_keys
from ctbench.leaderboard.writers import fmt_value
from ctbench.record import write_record


@pytest.mark.parametrize(
    ("value", "interval", "integer", "shown"),
    [
        (0.001223, (-0.0007031, 0.004645), False, "0.0012 [-0.0007, 0.0046]"),
        (230.5, (200.1, 260.3), False, "230 [200, 260]"),
        (0.5123, (0.5120, 0.5126), False, "0.5123 [0.5120, 0.5126]"),
        (40.0, None, False, "40"),
        (0.0012234, None, False, "0.00122"),
        (12345.6, None, False, "12346"),
        (2.0, (0.0, 5.0), True, "2 [0, 5]"),
        (None, None, False, "—"),
    ],
)
def test_values_carry_the_digits_their_interval_supports(value, interval, integer, shown):
    assert fmt_value(value, interval, integer) == shown


def test_glossary_lines_come_from_the_metric_contract():
    assert glossary("intensity_w1") == (
        "`intensity_w1` (↓ lower is better, in HU): W1 distance of body-voxel HU distributions"
    )
    assert glossary("ms_ssim_real") == "`ms_ssim_real` (real-side reference for `ms_ssim`): the same for real " \
        "reference volumes"
    assert glossary("nn_corr").startswith("`nn_corr` (read against `nn_corr_real`): ")
    assert glossary("my_plugin_key") == "`my_plugin_key` (no better direction): not declared by any metric " \
        "installed here"
    assert {"fid_mean", "fvd", "intensity_w1", "ms_ssim", "memorised"} <= headline_keys()
    assert not {"fid_xy", "ms_ssim_real", "nn_corr", "nn_corr_real"} & headline_keys()


def test_board_states_real_values_once_glossary_headline_first_and_data_source(tmp_path, make_record):
    results = tmp_path / "r"
    values = {"real-holdout": (20.0, 2.0, 0.95), "noise": (240.0, 0.0, 0.01)}
    for name, (w1, memorised, corr) in values.items():
        rec = make_record(name, {"intensity_w1": w1, "memorised": memorised, "nn_corr": corr, "nn_corr_real": 0.9312,
                                 "ms_ssim": 0.5, "ms_ssim_real": 0.4})
        write_record(rec, results)
    paths = build(results, tmp_path / "b", against="real-holdout", data_source="synthetic phantoms, NOT FLARE22")
    md, page = paths["markdown"].read_text(), paths["html"].read_text()
    assert md.startswith("# ctbench leaderboard — data: synthetic phantoms, NOT FLARE22\n")
    assert "<title>ctbench leaderboard — data: synthetic phantoms, NOT FLARE22</title>" in page
    real = "Real reference volumes (split test, the same for every row): ms_ssim_real 0.4; nn_corr_real 0.931"
    assert md.count(real) == 1 and page.count(real) == 1
    assert "- `memorised` (↓ lower is better, in samples flagged): samples closer to a training scan" in md
    assert "- `Δkey`: the row's value minus `real-holdout`'s in the same group" in md
    headline, details = md.split("<details>")
    assert "| rank | generator | n | intensity_w1 ↓ | ms_ssim | memorised ↓ |" in headline
    assert "| 2 | noise | 8 | 240 | 0.5 | 0 |" in headline
    assert "Δ" not in headline.split("| rank |")[1]  # differences only in the full table
    full_header = "| rank | generator | n | seed | intensity_w1 ↓ | ms_ssim | memorised ↓ | nn_corr | Δintensity_w1"
    assert full_header in details and "ms_ssim_real |" not in details  # stated once above, not a column
    assert "| 2 | noise | 8 | 0 | 240 | 0.5 | 0 | 0.01 | +220 | +0 | -2 | -0.94 |" in details
    assert page.index("<details><summary>All columns") > page.index("<td>noise</td>")  # headline table first
    rows = {r["generator"]: r for r in csv.DictReader(paths["csv"].open())}
    assert float(rows["noise"]["nn_corr_real"]) == 0.9312  # the CSV keeps every value at full precision


def test_leaderboard_cli_takes_the_data_source(tmp_path, make_record):
    write_record(make_record("noise", {"intensity_w1": 200.0}), tmp_path / "r")
    r = CliRunner().invoke(main, ["leaderboard", "build", str(tmp_path / "r"), "-o", str(tmp_path / "b"),
                                  "--data-source", "FLARE22"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "b" / "README.md").read_text().startswith("# ctbench leaderboard — data: FLARE22\n")
