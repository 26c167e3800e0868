"""KID/KVD: parity with torch-fidelity's KID on the same features, the grouped jackknife against brute force,
unbiasedness in N, the seeded shard-invariant feature sample, padding counts and ``slices="body"``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_fidelity.metric_kid import kernel_mmd, kid_features_to_metric

from ctbench.feature_sample import FeatureSample
from ctbench.metrics import get_metric
from ctbench.metrics.feature import FeatureAccumulator
from ctbench.metrics.fid import TriPlanarFID
from ctbench.metrics.kernel import KernelSizeError, kid, mmd2_with_replicates

FIDELITY = {"kid_kernel": "poly", "kid_kernel_poly_degree": 3, "kid_kernel_poly_gamma": None,
            "kid_kernel_poly_coef0": 1, "verbose": False}


def _features(n: int, d: int, shift: float, seed: int) -> np.ndarray:
    """float16-rounded Gaussian features (what the sample stores), as float32."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d)) + shift).astype(np.float16).astype(np.float32)


def test_subset_mean_equals_torch_fidelity_kid_on_the_same_features():
    fake, real = _features(70, 16, 0.3, 0), _features(90, 16, 0.0, 1)
    ours = kid(fake, np.arange(70), real, groups=4, subset_size=50, subsets=6, seed=2020)
    theirs = kid_features_to_metric(torch.from_numpy(fake), torch.from_numpy(real), kid_subsets=6,
                                    kid_subset_size=50, rng_seed=2020, **FIDELITY)
    assert ours.subsets == 6 and ours.sizes == (50, 50)
    assert ours.value == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-5)


def test_every_row_when_both_sides_fit_equals_the_full_unbiased_mmd():
    fake, real = _features(40, 16, 0.5, 2), _features(40, 16, 0.0, 3)
    ours = kid(fake, np.arange(40), real, groups=4)  # default subset size 1000: every row, deterministic
    assert ours.subsets == 1 and ours.sizes == (40, 40)
    assert ours.value == pytest.approx(kernel_mmd(fake.astype(np.float64), real.astype(np.float64), **FIDELITY),
                                       rel=1e-9)
    # unequal sides: the general U-statistic, written out
    real2 = _features(25, 16, 0.0, 4).astype(np.float64)
    x = fake.astype(np.float64)
    k = lambda a, b: (a @ b.T / 16 + 1) ** 3  # noqa: E731
    xx, yy, xy = k(x, x), k(real2, real2), k(x, real2)
    expected = ((xx.sum() - np.trace(xx)) / (40 * 39) + (yy.sum() - np.trace(yy)) / (25 * 24)
                - 2 * xy.sum() / (40 * 25))
    assert kid(fake, np.arange(40), real2, groups=4).value == pytest.approx(expected, rel=1e-9)


def test_leave_one_group_out_replicates_equal_brute_force():
    fake, real = _features(30, 8, 0.2, 5), _features(20, 8, 0.0, 6)
    group = np.arange(30) % 3
    x, y = torch.from_numpy(fake).double(), torch.from_numpy(real).double()
    value, reps, counts = mmd2_with_replicates(x, torch.from_numpy(group), 3, y)
    assert list(counts) == [10, 10, 10]
    for g in range(3):
        keep = group != g
        brute, _, _ = mmd2_with_replicates(x[keep], torch.zeros(int(keep.sum()), dtype=torch.long), 1, y)
        assert reps[g] == pytest.approx(brute, rel=1e-10)


def test_kid_is_unbiased_in_n_where_the_plug_in_would_drift():
    """Mean KID over seeded draws at n = 12 equals the n = 400 value within 3 standard errors."""
    big = kid(_features(400, 8, 0.4, 7), np.arange(400), _features(400, 8, 0.0, 8), groups=8).value
    small = [kid(_features(12, 8, 0.4, 100 + s), np.arange(12), _features(12, 8, 0.0, 200 + s), groups=4).value
             for s in range(60)]
    se = np.std(small) / np.sqrt(len(small))
    assert abs(np.mean(small) - big) < 3 * se + 0.01 * big
    assert big > 0


def test_explicit_subset_size_larger_than_a_side_is_refused_with_both_numbers():
    with pytest.raises(KernelSizeError, match="subset size 50 is larger than the real side's 30 rows"):
        kid(_features(60, 4, 0, 0), np.arange(60), _features(30, 4, 0, 1), groups=2, subset_size=50)
    with pytest.raises(ValueError, match="kid_subset_size must be between 2 and kid_max_samples"):
        get_metric("fid", kid_subset_size=20_000)


def test_feature_sample_is_seeded_bounded_and_shard_invariant():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(50, 4)).astype(np.float32)
    volume, position = np.repeat(np.arange(10), 5), np.tile(np.arange(5), 10)

    def sample(rows, capacity=12, seed=3):
        s = FeatureSample(4, capacity, seed)
        for r in rows:
            s.update("xy", feats[r], volume[r], position[r])
        return s

    whole = sample([np.arange(50)])
    sharded = sample([np.arange(30, 50), np.arange(0, 10)]).merge(sample([np.arange(10, 30)]))
    assert len(whole) == 12 and whole.seen == sharded.seen == 50 and whole.subsampled
    np.testing.assert_array_equal(whole.volume, sharded.volume)
    np.testing.assert_array_equal(whole.position, sharded.position)
    np.testing.assert_array_equal(whole.features, sharded.features)
    assert whole.features.dtype == np.float16
    other_seed = sample([np.arange(50)], seed=4)
    assert (other_seed.volume * 5 + other_seed.position).tolist() != (whole.volume * 5 + whole.position).tolist()
    back = FeatureSample.from_arrays(whole.to_arrays("xy"), "xy")
    np.testing.assert_array_equal(back.priority, whole.priority)
    assert (back.capacity, back.seed, back.seen) == (12, 3, 50)
    assert len(sample([np.arange(50)], capacity=100)) == 50 and not sample([np.arange(50)], capacity=100).subsampled


class _SmallFID(TriPlanarFID):
    """Tri-planar FID's slicing and padding logic with 16-d features (the Fréchet part stays cheap)."""

    dim = 16


class _GreyLevel:
    """A stand-in extractor: the slice's mean grey level plus noise in each of 16 features."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        g = torch.Generator().manual_seed(len(images))
        return images.float().mean((1, 2, 3))[:, None] + torch.randn(len(images), 16, generator=g)


def _padded_volumes() -> torch.Tensor:
    """Two volumes ``(2, 1, 64, 16, 16)``: soft tissue, with the first 16 axial slices pure padding (-1)."""
    vols = torch.full((2, 1, 64, 16, 16), 0.1)
    vols[:, :, :16] = -1.0
    return vols


@pytest.mark.parametrize("slices", ["all", "body"])
def test_padding_is_counted_and_body_drops_blank_slices(slices):
    metric = _SmallFID(groups=2, slices=slices, kid_max_samples=10_000)
    acc = FeatureAccumulator(metric, _GreyLevel(), 2, {"metric": "fid"})
    acc.update(_padded_volumes(), indices=[0, 1])
    stats = acc.result()
    assert stats.padding["xy"] == [32, 128]  # 16 of 64 axial slices per volume
    assert stats.padding["xz"] == [0, 32] and stats.padding["yz"] == [0, 32]  # bands, never a whole slice
    rows = stats.streams["xy"].total().count
    assert rows == (128 if slices == "all" else 96) == len(stats.samples["xy"])
    assert metric.options()["slices"] == slices  # part of the comparability key (and of the cache key)
    real_acc = FeatureAccumulator(metric, _GreyLevel(), 2, {"metric": "fid", "weights_sha256": "0" * 64})
    real_acc.update(torch.full((2, 1, 64, 16, 16), 0.2), indices=[0, 1])
    acc.stats.provenance["weights_sha256"] = "0" * 64
    values = metric.distances(acc.result(), real_acc.result())
    assert values["fid_xy"].padding == {"generated": 0.25, "real": 0.0}
    assert values["kid_xy"].padding == values["fid_xy"].padding
    assert values["fid_mean"].padding["generated"] == pytest.approx(32 / 192)
    assert values["kid_xy"].value is not None and values["kid_xy"].n == rows
    assert "every row" in values["kid_xy"].note and "row sample" not in values["kid_xy"].note
    capped = _SmallFID(groups=2, slices=slices, kid_max_samples=40)
    small = FeatureAccumulator(capped, _GreyLevel(), 2, {"metric": "fid", "weights_sha256": "0" * 64})
    small.update(_padded_volumes(), indices=[0, 1])
    real_small = FeatureAccumulator(capped, _GreyLevel(), 2, {"metric": "fid", "weights_sha256": "0" * 64})
    real_small.update(torch.full((2, 1, 64, 16, 16), 0.2), indices=[0, 1])
    note = capped.distances(small.result(), real_small.result())["kid_xy"].note
    assert f"seeded row sample (kid_seed 2020): generated xy 40 of {rows}, real xy 40 of 128" in note
    with pytest.raises(ValueError, match="slices must be one of all, body"):
        TriPlanarFID(slices="lungs")
