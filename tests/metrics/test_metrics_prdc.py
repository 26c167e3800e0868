"""Precision, recall, density, coverage: parity with torch-fidelity's precision/recall on the same features, a
brute-force re-implementation of the published definitions, the leave-one-group-out replicates, duplicated rows,
and the FID keys built from the feature samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_fidelity.metric_prc import calculate_precision_recall_full, calculate_precision_recall_part

from ctbench.metrics import get_metric
from ctbench.metrics.feature import FeatureAccumulator
from ctbench.metrics.fid import TriPlanarFID
from ctbench.metrics.manifold import NAMES, ManifoldSizeError, prdc


def _features(n: int, d: int, shift: float, seed: int) -> np.ndarray:
    """float16-rounded Gaussian features (what the sample stores), as float64."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d)) + shift).astype(np.float16).astype(np.float64)


def _published(fake: np.ndarray, real: np.ndarray, k_pr: int = 3, k_dc: int = 5) -> dict[str, float]:
    """The four definitions written out with every pairwise distance (Kynkäänniemi et al. 2019; Naeem et al. 2020):
    closed balls around each point with radius the distance to its k-th nearest other point of its own set."""
    def dist(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    def radius(a, k):
        return np.array([np.sort(np.delete(row, i))[k - 1] for i, row in enumerate(dist(a, a))])

    fr = dist(fake, real)  # (m, n)
    r_real_pr, r_real_dc, r_fake_pr = radius(real, k_pr), radius(real, k_dc), radius(fake, k_pr)
    return {
        "precision": np.mean([any(fr[j, i] <= r_real_pr[i] for i in range(len(real))) for j in range(len(fake))]),
        "recall": np.mean([any(fr[j, i] <= r_fake_pr[j] for j in range(len(fake))) for i in range(len(real))]),
        "density": sum(fr[j, i] <= r_real_dc[i] for j in range(len(fake)) for i in range(len(real)))
        / (k_dc * len(fake)),
        "coverage": np.mean([any(fr[j, i] <= r_real_dc[i] for j in range(len(fake))) for i in range(len(real))]),
    }


@pytest.mark.parametrize("fidelity", [calculate_precision_recall_full, calculate_precision_recall_part])
def test_precision_recall_equal_torch_fidelity_on_the_same_features(fidelity):
    fake, real = _features(130, 32, 0.4, 0), _features(110, 32, 0.0, 1)
    ours = prdc(fake, np.arange(130), real, groups=4, chunk=50)  # chunks smaller than either side
    precision, recall = fidelity(torch.from_numpy(fake), torch.from_numpy(real), 3, 40)
    assert 0.2 < ours["precision"].value < 0.95 and 0.2 < ours["recall"].value < 0.95  # not a trivial case
    assert ours["precision"].value == pytest.approx(precision, abs=1e-7)  # theirs: a float32 mean of 130 rows
    assert ours["recall"].value == pytest.approx(recall, abs=1e-7)


def test_all_four_equal_the_published_definitions():
    fake, real = _features(45, 6, 0.5, 2), _features(38, 6, 0.0, 3)
    ours = prdc(fake, np.arange(45), real, groups=3, chunk=16)
    expected = _published(fake, real)
    assert {k: v.value for k, v in ours.items()} == pytest.approx(expected, abs=1e-12)
    assert expected["density"] != pytest.approx(expected["coverage"])  # the two differ on these sets


def test_leave_one_group_out_replicates_equal_brute_force():
    fake, real = _features(36, 5, 0.3, 4), _features(30, 5, 0.0, 5)
    volume = np.repeat(np.arange(12), 3)  # three rows per volume, groups by volume % 4
    ours = prdc(fake, volume, real, groups=4, chunk=10)
    for g in range(4):
        expected = _published(fake[volume % 4 != g], real)
        for name in NAMES:
            assert ours[name].replicates[g] == pytest.approx(expected[name], abs=1e-12), (name, g)
    for name in NAMES:
        lo, hi = ours[name].interval()
        assert 0 <= lo <= ours[name].value <= hi and (hi <= 1 or name == "density")


def test_a_set_against_itself_and_duplicated_rows():
    """Against itself every point is inside its own ball: precision, recall, coverage 1 and density (k+1)/k.
    Duplicated rows with large norms (blank slices) are at distance exactly 0, so they stay inside each other's
    balls although their k-NN radius is 0."""
    real = _features(40, 16, 0.0, 6)
    same = prdc(real.copy(), np.arange(40), real, groups=4)
    assert {k: v.value for k, v in same.items()} == pytest.approx(
        {"precision": 1.0, "recall": 1.0, "density": 6 / 5, "coverage": 1.0})
    blank = np.full((12, 16), 37.3)  # 12 identical rows on each side: their radii are 0
    fake = np.concatenate([blank, _features(30, 16, 3.0, 7)])  # the rest far from every real row
    out = prdc(fake, np.arange(42), np.concatenate([blank, real]), groups=2)
    assert out["precision"].value == pytest.approx(12 / 42)
    assert out["coverage"].value == pytest.approx(12 / 52)
    assert out["density"].value == pytest.approx(12 * 12 / (5 * 42))


def test_too_few_rows_are_refused_with_the_numbers():
    with pytest.raises(ManifoldSizeError, match="fid \\(xy\\): the real side has 5 feature rows; .* at least 6"):
        prdc(_features(10, 4, 0, 0), np.arange(10), _features(5, 4, 0, 1), groups=2, label="fid (xy)")
    with pytest.raises(ManifoldSizeError, match="the generated side has 3 feature rows; .* at least 4"):
        prdc(_features(3, 4, 0, 0), np.arange(3), _features(10, 4, 0, 1), groups=2)


class _SmallFID(TriPlanarFID):
    dim = 16


class _Features:
    """A stand-in extractor: 16 features from the slice's mean grey level plus seeded noise."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        g = torch.Generator().manual_seed(len(images))
        return images.float().mean((1, 2, 3))[:, None] / 64 + torch.randn(len(images), 16, generator=g)


def _stats(metric: TriPlanarFID, level: float, n: int):
    acc = FeatureAccumulator(metric, _Features(), metric.groups, {"metric": "fid", "weights_sha256": "0" * 64})
    vols = torch.full((n, 1, 32, 16, 16), level) + 0.2 * torch.rand(n, 1, 32, 16, 16, generator=torch.Generator()
                                                                        .manual_seed(n))
    acc.update(vols.clamp(-1, 1), indices=range(n))
    return acc.result()


def test_fid_reports_the_four_per_plane_and_mean_from_the_feature_samples():
    metric = _SmallFID(groups=2, kid_max_samples=10_000)
    fake, real = _stats(metric, 0.1, 4), _stats(metric, 0.0, 3)
    values = metric.distances(fake, real)
    for name in NAMES:
        planes = [values[f"{name}_{p}"] for p in ("xy", "xz", "yz")]
        x = fake.samples["xy"]
        direct = prdc(x.features, x.volume, real.samples["xy"].features, 2)[name]
        assert planes[0].value == pytest.approx(direct.value) and planes[0].n == 4 * 32 == direct.n
        assert values[f"{name}_mean"].value == pytest.approx(np.mean([v.value for v in planes]))
        assert values[f"{name}_mean"].n == 4 and "k = " in values[f"{name}_mean"].note
        for v in (*planes, values[f"{name}_mean"]):
            assert v.interval is not None and v.interval_method.startswith("grouped jackknife")
    assert values["precision_xy"].padding == values["fid_xy"].padding
    assert values["coverage_mean"].padding == values["fid_mean"].padding
    capped = _SmallFID(groups=2, kid_max_samples=40)  # the rows are a seeded sample: the note says so
    note = capped.distances(_stats(capped, 0.1, 4), _stats(capped, 0.0, 3))["precision_xy"].note
    assert "seeded row sample (kid_seed 2020): generated xy 40 of 128, real xy 40 of 96" in note
    del real.samples["xy"]  # statistics saved without samples: the four are missing, with the reason
    values = metric.distances(fake, real)
    assert values["recall_xz"].value is None and "no feature sample on the real side" in values["recall_xz"].note
    assert values["fid_xy"].value is not None


def test_keys_state_direction_and_k():
    keys = {k.name: k for k in get_metric("fid").keys}
    for name, k in (("precision", 3), ("recall", 3), ("density", 5), ("coverage", 5)):
        for plane in ("xy", "xz", "yz", "mean"):
            key = keys[f"{name}_{plane}"]
            assert key.direction == "higher" and f"k = {k}" in key.description and key.rank is None
