"""Leaderboard: only like with like is ranked (N, metric version, options), and quoted paper figures are shown
beside the runs, marked, never ranked."""

from __future__ import annotations

import csv
import sys

import pytest

from ctbench.leaderboard import build, collect
from ctbench.leaderboard.quoted import MARK, quoted_entries
from ctbench.record import write_record

W = "1" * 64


def _record(make_record, name: str, fid: float, n: int, *, options: dict | None = None, version: str = "1") -> dict:
    rec = make_record(name, {"fid_mean": fid, "intensity_w1": fid / 10}, weights=W, run_id=f"{name}-n{n}")
    rec["sampling"]["n"] = n
    if options is not None:  # a schema-2 record: metric_specs name each metric's version and options
        rec["schema_version"] = 2
        rec["metric_specs"] = {
            "fid": {"version": version, "options": options, "keys": ["fid_mean", "fid_xy", "fid_xz", "fid_yz"]},
            "intensity": {"version": "1", "options": {}, "keys": ["intensity_w1"]},
        }
    return rec


@pytest.fixture
def mixed_n(tmp_path, make_record):
    out = tmp_path / "results"
    for rec in (
        _record(make_record, "real-holdout", 5.0, 256),
        _record(make_record, "vqgan-ddpm", 40.0, 256),
        _record(make_record, "noise", 300.0, 256),
        _record(make_record, "small-run", 1.0, 64),  # the best value, but at another N: must not rank first
    ):
        write_record(rec, out)
    return out


def test_equal_n_rows_are_ranked_and_another_n_is_listed_apart_with_the_reason(mixed_n):
    (group,) = collect(mixed_n)
    assert [(r.label, r.rank) for r in group.rows] == [("real-holdout", 1), ("vqgan-ddpm", 2), ("noise", 3)]
    (apart,) = group.apart
    assert apart.label == "small-run" and apart.rank is None
    assert apart.apart == "n = 64, the group ranks n = 256"
    assert "n = 64 ×1" in group.mixed and "n = 256 ×3" in group.mixed and "1 run(s) listed apart" in group.mixed


def test_mixed_n_board_states_it_in_every_output_and_loses_no_row(mixed_n, tmp_path):
    paths = build(mixed_n, tmp_path / "board", against="real-holdout")
    md, html = paths["markdown"].read_text(), paths["html"].read_text()
    for text in (md, html):
        assert "not all comparable on fid_mean (sample sizes: n = 64 ×1, n = 256 ×3)" in text
        assert "Not comparable with the ranked runs (not ranked)" in text
        assert "n = 64, the group ranks n = 256" in text
    line = next(x for x in md.splitlines() if "| small-run |" in x)
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[0] == "—" and cells[-1] == "n = 64, the group ranks n = 256"
    header = next(x for x in md.splitlines() if x.startswith("| rank |") and "not ranked because" in x)
    names = [c.strip() for c in header.strip("|").split("|")]
    assert cells[names.index("Δfid_mean")] == "—"  # no difference across sample sizes
    rows = {r["generator"]: r for r in csv.DictReader(paths["csv"].open())}
    assert {"real-holdout", "vqgan-ddpm", "noise", "small-run"} <= set(rows)
    assert rows["small-run"]["rank"] == ""
    assert rows["small-run"]["status"] == "not ranked: n = 64, the group ranks n = 256"
    assert rows["noise"]["rank"] == "3" and rows["noise"]["status"] == "ranked"
    assert float(rows["vqgan-ddpm"]["delta_fid_mean"]) == 35.0 and rows["small-run"]["delta_fid_mean"] == ""


def test_the_most_common_n_ranks_ties_go_to_the_larger_n(tmp_path, make_record):
    out = tmp_path / "r"
    for rec in (_record(make_record, "a", 10.0, 64), _record(make_record, "b", 20.0, 512)):
        write_record(rec, out)
    (group,) = collect(out)
    assert [r.label for r in group.rows] == ["b"] and group.rows[0].rank == 1
    assert group.apart[0].apart == "n = 64, the group ranks n = 512"


def test_another_metric_version_or_option_is_listed_apart(tmp_path, make_record):
    out = tmp_path / "r"
    for rec in (
        _record(make_record, "a", 10.0, 256, options={"slice_step": 1, "bf16": False}),
        _record(make_record, "b", 20.0, 256, options={"slice_step": 1, "bf16": False}),
        _record(make_record, "fast", 5.0, 256, options={"slice_step": 1, "bf16": True}),
        _record(make_record, "newer", 7.0, 256, options={"slice_step": 1, "bf16": False}, version="2"),
    ):
        write_record(rec, out)
    (group,) = collect(out)
    assert [r.label for r in group.rows] == ["a", "b"]
    reasons = {r.label: r.apart for r in group.apart}
    assert reasons == {
        "fast": "fid options bf16=True, the group ranks bf16=False",
        "newer": "fid version 2, the group ranks version 1",
    }
    assert "sample sizes" not in group.mixed


def test_quoted_paper_figures_appear_marked_and_are_never_ranked(mixed_n, tmp_path, monkeypatch):
    plotted: list[str] = []

    def fake_plot(points, path, *args, **kwargs):
        plotted.extend(label for label, _, _ in points)

    monkeypatch.setattr(sys.modules["ctbench.leaderboard.build"], "interval_plot", fake_plot)
    (paper,) = [q for q in quoted_entries() if "seed paper" in q.label]
    assert paper.values == {"fid_xy": 20.45, "fid_xz": 21.57, "fid_yz": 20.34, "fid_mean": 20.79, "fvd": 252.97}
    assert any("N" in u for u in paper.unknown)
    (group,) = collect(mixed_n)
    assert group.quoted == [paper]
    assert all(r.label != paper.label for r in group.rows + group.apart)  # not a ranked (or apart) row
    paths = build(mixed_n, tmp_path / "board", against="real-holdout")
    md, html = paths["markdown"].read_text(), paths["html"].read_text()
    for text in (md, html):
        assert f"Published figures ({MARK})" in text and paper.label in text
        assert "quoted, not computed by ctbench — not ranked" in text
    line = next(x for x in md.splitlines() if x.startswith(f"| paper | {paper.label} |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert "20.79" in cells and "Δ" not in md.split("Published figures")[1].split("\n\n")[1]  # no Δ column
    rows = [r for r in csv.DictReader(paths["csv"].open()) if r["generator"] == paper.label]
    assert len(rows) == 1 and rows[0]["rank"] == "" and rows[0]["status"] == f"paper: {MARK}"
    assert float(rows[0]["fid_mean"]) == 20.79 and rows[0]["delta_fid_mean"] == "" and rows[0]["n"] == ""
    assert plotted and not any(paper.label in label for label in plotted)  # never drawn in the plots
    assert "small-run (n = 64, not ranked)" in plotted


def test_quoted_figures_stay_out_of_groups_without_their_keys(tmp_path, make_record):
    out = tmp_path / "r"
    write_record(make_record("noise", {"intensity_w1": 200.0}), out)
    (group,) = collect(out)
    assert group.quoted == []
    md = build(out, tmp_path / "b")["markdown"].read_text()
    assert "Published figures" not in md


def test_rank_deficient_values_are_marked(tmp_path, make_record):
    out = tmp_path / "r"
    rec = _record(make_record, "small", 30.0, 16)
    rec["metrics"]["fid_mean"]["rank_deficient"] = True
    write_record(rec, out)
    write_record(_record(make_record, "other", 40.0, 16), out)
    paths = build(out, tmp_path / "b")
    md = paths["markdown"].read_text()
    assert "† = fewer samples than feature dimensions" in md and "† = fewer samples" in paths["html"].read_text()
    assert "| 30† |" in next(x for x in md.splitlines() if "| small |" in x)
    assert "| 40 |" in next(x for x in md.splitlines() if "| other |" in x)


def test_an_n_independent_key_compares_across_n_and_slice_kid_does_not(tmp_path, make_record):
    """KVD (one row per volume: unbiased at any N, the bias study) has a Δ across N; FVD and the slice-level KID,
    whose rows are clustered in volumes (the phantom bias study: it drifts with N), compare only at equal N."""
    out = tmp_path / "r"
    for name, kvd, n in (("a", 0.02, 64), ("b", 0.01, 256), ("c", 0.03, 256)):
        rec = make_record(name, {"fvd": kvd * 1000, "kvd": kvd, "kid_mean": kvd / 10}, weights=W,
                          run_id=f"{name}-n{n}")
        rec["sampling"]["n"] = n
        write_record(rec, out)
    (group,) = collect(out, against="c")
    assert group.rank_by == "kid_mean" and [(r.label, r.rank) for r in group.rows] == [("b", 1), ("c", 2)]
    (a,) = group.apart
    assert a.label == "a" and a.apart == "n = 64, the group ranks n = 256"
    assert a.delta["kvd"] == pytest.approx(-0.01) and a.delta["fvd"] is None and a.delta["kid_mean"] is None


def test_runs_of_one_generator_with_other_samplers_are_named_by_their_sampler(tmp_path, make_record):
    out = tmp_path / "r"
    for sampler, fid in (("ddim-50", 30.0), ("ancestral-1000", 25.0), (None, 28.0)):
        rec = _record(make_record, "vqgan-ddpm", fid, 256)
        rec["run_id"] = f"vqgan-{sampler}"
        if sampler:
            rec["generator"]["config"] = {"sampler": sampler}
        write_record(rec, out)
    write_record(_record(make_record, "noise", 300.0, 256), out)
    (group,) = collect(out, against="vqgan-ddpm")
    assert [(r.label, r.rank) for r in group.rows] == [
        ("vqgan-ddpm (ancestral-1000)", 1), ("vqgan-ddpm (sampler unknown)", 2), ("vqgan-ddpm (ddim-50)", 3),
        ("noise", 4),
    ]
