"""Leaderboard: grouping, unverified rows, missing values, ranking, --against, bad files, outputs."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from ctbench.cli import main
from ctbench.leaderboard import build, collect
from ctbench.record import write_record


@pytest.fixture
def results(tmp_path, make_record):
    out = tmp_path / "results"
    w1, w2 = "1" * 64, "2" * 64
    recs = [
        make_record("real-holdout", {"fid_mean": 2.0, "intensity_w1": 1.0}, weights=w1, intervals={"fid_mean": (1, 3)}),
        make_record("noise", {"fid_mean": 300.0, "intensity_w1": 240.0}, weights=w1),
        make_record("vqgan-ddpm", {"fid_mean": 40.0, "intensity_w1": None}, variant="c8", weights=w1),
        make_record("mean-volume", {"intensity_w1": 80.0, "ms_ssim": 1.0}, weights=w1),  # FID missing
        make_record("sneaky", {"fid_mean": 0.5}, weights="f" * 64, verified=False),
        make_record("noise", {"fid_mean": 310.0}, weights=w2),  # other weights: own group
        make_record("noise", {"fid_mean": 290.0}, weights=w1, protocol_version="2.0.0"),  # other protocol
    ]
    for rec in recs:
        write_record(rec, out)
    (out / "broken.json").write_text("{")
    (out / "other-tool.json").write_text(json.dumps({"accuracy": 0.9}))
    return out


def test_groups_never_mix_protocols_or_weights(results):
    with pytest.warns(UserWarning, match="skipped: "):
        groups = collect(results)
    assert len(groups) == 5  # (v1, w1) (v1, w2) (v2, w1) (v1, unverified weights f…) (v1 weight-free mean-volume)
    by_title = {g.title: g for g in groups}
    main_group = next(g for t, g in by_title.items() if "1.0.0" in t and "111111" in t)
    assert [r.label for r in main_group.rows] == ["real-holdout", "vqgan-ddpm@c8", "noise"]
    assert [r.rank for r in main_group.rows] == [1, 2, 3]
    assert main_group.rank_by == "fid_mean"
    sneaky = next(g for g in groups if any(r.label == "sneaky" for r in g.unverified))
    assert not sneaky.rows and sneaky.unverified[0].rank is None


def test_missing_metric_is_dash_never_zero_and_against(results, tmp_path):
    with pytest.warns(UserWarning, match="skipped: |--against real-holdout: no such generator"):
        paths = build(results, tmp_path / "board", against="real-holdout")
    md = paths["markdown"].read_text()
    blocks = [b.split("</details>")[0] for b in md.split("<details>")[1:]]  # each group's full table
    full = next(b for b in blocks if "| vqgan-ddpm@c8 |" in b).splitlines()
    line = next(x for x in full if "| vqgan-ddpm@c8 |" in x)
    cells = [c.strip() for c in line.strip("|").split("|")]
    header = next(x for x in full if x.startswith("| rank |"))
    names = [c.strip() for c in header.strip("|").split("|")]
    assert cells[names.index("intensity_w1 ↓")] == "—"
    assert cells[names.index("fid_mean ↓")] == "40"
    assert cells[names.index("Δfid_mean")] == "+38"  # 40 − 2
    assert cells[names.index("Δintensity_w1")] == "—"
    rows = list(csv.DictReader(paths["csv"].open()))
    vq = next(r for r in rows if r["generator"] == "vqgan-ddpm@c8")
    assert vq["intensity_w1"] == "" and float(vq["fid_mean"]) == 40.0 and float(vq["delta_fid_mean"]) == 38.0
    mv = next(r for r in rows if r["generator"] == "mean-volume")
    assert mv["fid_mean"] == ""
    html = paths["html"].read_text()
    assert "Unverified weights (not ranked)" in html and "sneaky" in html
    plots = sorted(p.name for p in (tmp_path / "board" / "plots").iterdir())
    assert any(p.endswith("-fid_mean.png") for p in plots)
    for name in plots:
        assert f"plots/{name}" in html


def test_cli_builds_and_warns_about_bad_files(results, tmp_path):
    out = tmp_path / "lb"
    res = CliRunner().invoke(main, ["leaderboard", "build", str(results), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "broken.json" in res.output and "other-tool.json" in res.output
    assert (out / "index.html").is_file() and (out / "README.md").is_file() and (out / "leaderboard.csv").is_file()


def test_empty_results_folder(tmp_path, make_record):
    (tmp_path / "r").mkdir()
    with pytest.raises(FileNotFoundError, match="no result records"):
        build(tmp_path / "r", tmp_path / "b")
    assert not (tmp_path / "b").exists()
    write_record(make_record("x", {"fid_mean": 1.0}, weights="1" * 64), tmp_path / "r")
    assert len(collect(tmp_path / "r")) == 1


def test_montage_and_memorisation_figures_are_copied_and_linked(tmp_path, make_record):
    results = tmp_path / "results"
    rec = make_record("noise", {"intensity_w1": 230.0}, run_id="noise-run")
    rec["artifacts"] = {"montage": "noise-run.montage.png", "memorisation_pairs": "noise-run.memorisation.png"}
    write_record(rec, results)
    (results / "noise-run.montage.png").write_bytes(b"montage bytes")
    (results / "noise-run.memorisation.png").write_bytes(b"pairs bytes")
    lost = make_record("mean-volume", {"intensity_w1": 60.0}, run_id="lost-run")
    lost["artifacts"] = {"memorisation_pairs": "lost-run.memorisation.png"}  # file never written
    write_record(lost, results)
    with pytest.warns(UserWarning, match="lost-run.json: memorisation_pairs figure .* not found"):
        paths = build(results, tmp_path / "board")
    board = tmp_path / "board"
    assert (board / "montages" / "noise-run.montage.png").read_bytes() == b"montage bytes"
    assert (board / "memorisation" / "noise-run.memorisation.png").read_bytes() == b"pairs bytes"
    html, md = paths["html"].read_text(), paths["markdown"].read_text()
    for text in (html, md):
        assert "memorisation/noise-run.memorisation.png" in text and "montages/noise-run.montage.png" in text
        assert "lost-run.memorisation" not in text
        assert "samples are themselves held-out real scans" in text  # why real-holdout is flagged
