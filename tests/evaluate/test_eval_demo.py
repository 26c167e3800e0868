"""The demo's evaluate → leaderboard chain on the shared prepared folder (phantom making is tested in tests/data)."""

from __future__ import annotations

from click.testing import CliRunner

from ctbench.cli import main
from ctbench.record import read_record


def test_demo_on_prepared_folder(prepared_dir, tmp_path):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--data", str(prepared_dir), "--samples", "2", "--no-reference"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert not (out / "raw").exists() and not (out / "prepared").exists()  # --data: no phantoms made
    records = sorted((out / "results").glob("*.json"))
    assert {read_record(p)["generator"]["name"] for p in records} == {"real-holdout", "mean-volume", "noise"}
    holdout = next(read_record(p) for p in records if "real-holdout" in p.name)
    assert holdout["generator"]["config"]["split"] != holdout["protocol"]["split"]  # never scored against itself
    board = (out / "leaderboard" / "README.md").read_text()
    assert "| real-holdout |" in board and "| noise |" in board and "Δintensity_w1" in board
    assert "FID skipped" in res.output and "ctbench weights fetch inception-v3-compat" in res.output
    assert "FVD skipped" in res.output and "ctbench weights fetch i3d-kinetics-400" in res.output
    assert (out / "leaderboard" / "index.html").as_uri() in res.output
    montages = list((out / "leaderboard" / "montages").glob("*.png"))
    assert len(montages) == 3
