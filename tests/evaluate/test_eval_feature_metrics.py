"""A feature metric through `evaluate` with stand-in (unverified) weights: computed, recorded, listed apart.

FVD is used because its stand-in network is tiny (400-d features); FID's 2048-d Fréchet distances with
jackknife intervals cost minutes on 2 CPU cores and are tested in tests/metrics.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from ctbench.evaluate import EvalOptions, EvaluationError, evaluate, plan_metrics
from ctbench.leaderboard import collect
from ctbench.record import read_record


@pytest.fixture()
def i3d_standin(tmp_path, empty_weights_cache):
    """A SavedModel with I3D's ``default`` signature ((N, T, 224, 224, 3) → (N, 400)), imported as unverified."""
    importlib.import_module("torch._dynamo")  # before TensorFlow, as evaluate does: the other order segfaults
    import tensorflow as tf

    from ctbench.weights import import_weights

    proj = tf.constant(np.random.default_rng(7).normal(size=(28 * 28 * 3, 400)).astype(np.float32) / 40)

    class TinyVideoNet(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, 224, 224, 3], tf.float32)])
        def default(self, video):
            n, t = tf.shape(video)[0], tf.shape(video)[1]
            small = tf.nn.avg_pool2d(tf.reshape(video, [n * t, 224, 224, 3]), ksize=8, strides=8, padding="VALID")
            feats = tf.tanh(tf.reshape(small, [n * t, 28 * 28 * 3]) @ proj)
            return {"default": tf.reduce_mean(tf.reshape(feats, [n, t, 400]), axis=1)}

    net = TinyVideoNet()
    path = tmp_path / "i3d-standin"
    tf.saved_model.save(net, str(path), signatures={"default": net.default})
    return import_weights(path, "i3d-kinetics-400", unverified_ok=True)


def test_feature_metric_with_unverified_weights_is_recorded_and_unranked(prepared_dir, tmp_path, i3d_standin):
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
