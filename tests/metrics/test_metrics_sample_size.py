"""Sample-size honesty: a Fréchet value whose generated or real side has fewer samples than the feature
dimension is marked ``rank_deficient`` with a note naming the side and both numbers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ctbench.metrics import get_metric
from ctbench.metrics.base import MetricValue
from ctbench.metrics.contract import Key
from ctbench.metrics.feature import FeatureMetric
from ctbench.metrics.feature_values import make_value
from ctbench.stats import FeatureSetStats, GroupedStats

DIM = 8


class TwoStreams(FeatureMetric):
    """An 8-d stand-in with FID's shape of keys: one per stream and their mean (no network needed)."""

    name = "two-streams"
    version = "1"
    keys = (Key("toy_mean", "lower"), Key("toy_a", "lower"), Key("toy_b", "lower"))
    streams = ("a", "b")
    dim = DIM
    extractor_name = "none"
    preprocessing = "none"
    weights = ()

    def build_extractor(self, weights, device, batch_size):
        raise NotImplementedError

    def features(self, extractor, volumes):
        raise NotImplementedError

    def kernel_values(self, estimates, fake, common):
        return {}

    def frechet_values(self, estimates, fake, common):
        out = {f"toy_{s}": make_value(e.value, e.n, e.interval(), common, "") for s, e in estimates.items()}
        out["toy_mean"] = make_value(np.mean([e.value for e in estimates.values()]), fake.n_volumes, None, common, "")
        return out


def _stats(counts: dict[str, int], seed: int) -> FeatureSetStats:
    rng = np.random.default_rng(seed)
    streams = {}
    for s, n in counts.items():
        g = GroupedStats(DIM, 2)
        g.update(rng.normal(size=(n, DIM)), np.arange(n) % 2)
        streams[s] = g
    return FeatureSetStats(streams, max(counts.values()), {"metric": "two-streams", "verified": True,
                                                            "weights_sha256": "0" * 64})


def _score(fake: dict[str, int], real: dict[str, int]) -> dict[str, MetricValue]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # frechet.py warns about a short generated side too
        return TwoStreams().distances(_stats(fake, 0), _stats(real, 1))


def test_full_rank_on_both_sides_is_not_marked():
    values = _score({"a": 20, "b": 20}, {"a": 30, "b": 30})
    assert not any(v.rank_deficient for v in values.values())
    assert all("rank-deficient" not in (v.note or "") for v in values.values())


def test_short_generated_side_marks_its_stream_and_the_mean():
    values = _score({"a": 5, "b": 20}, {"a": 30, "b": 30})
    assert values["toy_a"].rank_deficient and values["toy_mean"].rank_deficient
    assert not values["toy_b"].rank_deficient
    note = values["toy_a"].note
    assert "generated a 5" in note and "8 feature dimensions" in note and "real" not in note.split("(")[1]


def test_short_real_side_is_marked_too():
    values = _score({"a": 20, "b": 20}, {"a": 30, "b": 3})
    assert values["toy_b"].rank_deficient and values["toy_mean"].rank_deficient and not values["toy_a"].rank_deficient
    assert "real b 3" in values["toy_b"].note and "generated" not in values["toy_b"].note


def test_round_trip_and_old_values_read_as_full_rank():
    v = _score({"a": 5, "b": 6}, {"a": 3, "b": 7})["toy_mean"]
    assert "generated a 5, b 6; real a 3, b 7" in v.note
    assert MetricValue.from_dict(v.to_dict()) == v
    old = v.to_dict()
    del old["rank_deficient"]
    assert MetricValue.from_dict(old).rank_deficient is False


@pytest.mark.parametrize(
    ("metric", "key", "streams"),
    [
        ("fid", "fid_xy", ("xy",)),
        ("fid", "fid_yz", ("yz",)),
        ("fid", "fid_mean", ("xy", "xz", "yz")),
        ("fvd", "fvd", ("video",)),
    ],
)
def test_each_key_is_checked_on_the_streams_it_is_made_of(metric, key, streams):
    m = get_metric(metric)
    assert m.key_streams(key) == streams
    assert m.dim == {"fid": 2048, "fvd": 400}[metric]
