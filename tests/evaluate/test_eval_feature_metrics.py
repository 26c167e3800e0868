"""A feature metric through `evaluate` with stand-in (unverified) weights: computed, recorded, listed apart.

FVD is used because its stand-in network is tiny (400-d features); FID's 2048-d Fréchet distances with
jackknife intervals cost minutes on 2 CPU cores and are tested in tests/metrics.
"""

from __future__ import annotations

import pytest

from ctbench.evaluate import EvalOptions, EvaluationError, evaluate, plan_metrics
from ctbench.leaderboard import collect
from ctbench.record import read_record


@pytest.fixture()
def installed_i3d(i3d_standin, empty_weights_cache):
    """The I3D stand-in imported into the (otherwise empty) weights cache, as unverified weights."""
    from ctbench.weights import import_weights

    return import_weights(i3d_standin, "i3d-kinetics-400", unverified_ok=True)


def test_feature_metric_with_unverified_weights_is_recorded_and_unranked(prepared_dir, tmp_path, installed_i3d):
    base = dict(
        data=str(prepared_dir), generator="noise", n=4, seed=0, out=str(tmp_path / "r"), metrics=["fvd", "intensity"],
        split="train",  # the only split of the shared folder with enough volumes for a covariance
        montage_volumes=0,
    )  # fmt: skip
    with pytest.raises(EvaluationError, match="'fvd' was requested but cannot run"):
        evaluate(EvalOptions(**base))  # the hash is not the pinned one: refused unless allowed
    rec = read_record(evaluate(EvalOptions(**base, unverified_weights=True)))
    fvd = rec["metrics"]["fvd"]
    assert fvd["verified"] is False and fvd["weights_sha256"] and fvd["value"] is not None and fvd["value"] > 0
    assert fvd["n"] == 4 and rec["skipped"] == {}
    assert rec["metrics"]["intensity_w1"]["value"] > 0
    (group,) = collect(tmp_path / "r")
    assert not group.rows and [r.label for r in group.unverified] == ["noise"]  # listed apart, not ranked
    # with no metrics named, whatever can run here runs: FVD (its weights are installed), not FID
    run, skipped = plan_metrics(EvalOptions(data=str(prepared_dir), generator="noise", unverified_weights=True))
    assert "fvd" in run and "fid" not in run and set(skipped) == {"fid"}
