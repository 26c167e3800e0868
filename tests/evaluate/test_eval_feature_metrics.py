"""Feature metrics through `evaluate` with stand-in (unverified) weights: computed, recorded, listed apart.

FVD runs with its tiny stand-in network (400-d features); FID with random InceptionV3 weights on every 32nd
slice (2 + 4 + 4 slices per volume), which keeps the 2048-d Fréchet distances and their jackknife cheap.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ctbench.core.hashing import file_sha256
from ctbench.evaluate import EvalOptions, EvaluationError, evaluate, plan_metrics
from ctbench.leaderboard import collect
from ctbench.record import read_record

FID_STEP = 32
"""Every 32nd slice: 64/32 = 2 xy slices, 128/32 = 4 xz and 4 yz slices per volume."""
FID_N = 3


@pytest.fixture
def weights_cache(tmp_path, monkeypatch) -> Path:
    """A weights cache of this test's own, so imported weights never leak into the shared empty cache."""
    root = tmp_path / "ctbench-cache"
    monkeypatch.setenv("CTBENCH_CACHE", str(root))
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(root / "tfhub"))
    monkeypatch.setenv("TORCH_HOME", str(root / "torch"))
    return root


@pytest.fixture
def installed_i3d(i3d_standin, weights_cache):
    """The I3D stand-in imported into this test's weights cache, as unverified weights."""
    from ctbench.weights import import_weights

    return import_weights(i3d_standin, "i3d-kinetics-400", unverified_ok=True)


@pytest.fixture
def installed_inception(inception_weights, weights_cache):
    """Random InceptionV3 weights imported into this test's weights cache, as unverified weights."""
    from ctbench.weights import import_weights

    return import_weights(inception_weights, "inception-v3-compat", unverified_ok=True)


@pytest.mark.requires_tensorflow
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
    assert fvd["verified"] is False and fvd["weights_sha256"] == installed_i3d.sha256
    assert fvd["value"] is not None and fvd["value"] > 0
    assert fvd["n"] == 4 and rec["skipped"] == {}
    assert rec["metrics"]["intensity_w1"]["value"] > 0
    (group,) = collect(tmp_path / "r")
    assert not group.rows and [r.label for r in group.unverified] == ["noise"]  # listed apart, not ranked
    # with no metrics named, whatever can run here runs: FVD (its weights are installed), not FID
    run, skipped = plan_metrics(EvalOptions(data=str(prepared_dir), generator="noise", unverified_weights=True))
    assert "fvd" in run and "fid" not in run and set(skipped) == {"fid", "fid3d-medicalnet", "fid-radimagenet"}


@pytest.mark.timeout(600)
def test_fid_end_to_end_with_random_weights(prepared_dir, tmp_path, installed_inception, inception_weights):
    """Tri-planar FID through `evaluate`: every recorded field, and real held-out volumes beat noise on every plane."""
    base = dict(
        data=str(prepared_dir), n=FID_N, seed=0, out=str(tmp_path / "r"), metrics=["fid"],
        split="test", unverified_weights=True,  # 1 reference volume; real-holdout draws 3 distinct train volumes
        metric_options={"fid": {"slice_step": FID_STEP}}, montage_volumes=0,
    )  # fmt: skip
    gens = {"noise": {}, "real-holdout": {"split": "train"}}  # val holds 1 volume and real-holdout never repeats one
    records = {
        g: read_record(evaluate(EvalOptions(**base, generator=g, overrides=o)))["metrics"] for g, o in gens.items()
    }
    per_plane = {"xy": FID_N * 64 // FID_STEP, "xz": FID_N * 128 // FID_STEP, "yz": FID_N * 128 // FID_STEP}
    sha = file_sha256(inception_weights)
    for gen, metrics in records.items():
        plain = {"fid_xy", "fid_xz", "fid_yz", "fid_mean"}
        kernel = {k.replace("fid", "kid") for k in plain}
        manifold = {k.replace("fid", name) for name in ("precision", "recall", "density", "coverage") for k in plain}
        assert set(metrics) == plain | {f"{k}_unbiased" for k in plain} | kernel | manifold, gen
        for key, m in metrics.items():
            if key in manifold:  # one reference volume, every 32nd slice: 2 real xy rows, too few for a k-NN radius
                assert m["value"] is None and "fid (xy): the real side has 2 feature rows" in m["note"], (gen, key)
                continue
            assert m["verified"] is False and m["weights_sha256"] == sha and m["extractor"] == "inception-v3-compat"
            lo, hi = m["interval"]
            assert lo <= m["value"] <= hi and math.isfinite(hi), (gen, key, m)
            assert lo >= 0 or key.endswith("_unbiased") or key in kernel, (gen, key, m)  # unbiased: not clipped
            assert set(m["padding"]) == {"generated", "real"}, (gen, key)
            assert f"step {FID_STEP}" in m["note"]  # subsampled slices are flagged as not comparable
        for plane, n in per_plane.items():
            assert metrics[f"fid_{plane}"]["n"] == n, (gen, plane)
        assert metrics["fid_mean"]["n"] == FID_N  # volumes
        mean = sum(metrics[f"fid_{p}"]["value"] for p in per_plane) / 3
        assert metrics["fid_mean"]["value"] == pytest.approx(mean, rel=1e-12)
    noise, real = records["noise"], records["real-holdout"]
    for key in ("fid_xy", "fid_xz", "fid_yz", "fid_mean", "kid_xy", "kid_xz", "kid_yz", "kid_mean"):
        assert real[key]["value"] < noise[key]["value"] / 2, key  # a real sanity property, even with random weights
    assert noise["fid_xy"]["padding"]["generated"] == 0.0  # noise volumes have no blank slice
    # three different noise volumes: a non-degenerate jackknife interval
    assert noise["fid_mean"]["interval"][0] < noise["fid_mean"]["value"] < noise["fid_mean"]["interval"][1]
