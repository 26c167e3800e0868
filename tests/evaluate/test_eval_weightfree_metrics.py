"""Weight-free metrics against independent references and known values."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from numpy.lib.stride_tricks import sliding_window_view

from ctbench.metrics.diversity import (
    DATA_RANGE,
    K1,
    K2,
    WANG_WEIGHTS,
    diversity_value,
    gaussian_window,
    mean_offdiagonal_interval,
    ms_ssim_3d,
    pairwise_ms_ssim,
)
from ctbench.metrics.intensity import BIN_HU, HUHistogram, intensity_value, w1_from_histograms
from ctbench.metrics.memorisation import MemorisationAudit, TrainIndex, audit_values, unit_features


def _smooth(shape, seed, scale=4):
    g = torch.Generator().manual_seed(seed)
    low = torch.rand((1, 1, *(s // scale for s in shape)), generator=g) * 2 - 1
    return torch.nn.functional.interpolate(low, size=shape, mode="trilinear", align_corners=False)[0]


def _naive_ssim_terms(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean SSIM and mean contrast-structure term by explicit 7×7×7 weighted windows (float64)."""
    w1 = gaussian_window().double().numpy()
    w = w1[:, None, None] * w1[None, :, None] * w1[None, None, :]
    wx, wy = sliding_window_view(x, w.shape), sliding_window_view(y, w.shape)
    mx, my = (wx * w).sum((-3, -2, -1)), (wy * w).sum((-3, -2, -1))
    vx = (wx**2 * w).sum((-3, -2, -1)) - mx**2
    vy = (wy**2 * w).sum((-3, -2, -1)) - my**2
    cxy = (wx * wy * w).sum((-3, -2, -1)) - mx * my
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    cs = (2 * cxy + c2) / (vx + vy + c2)
    lum = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
    return float((lum * cs).mean()), float(cs.mean())


def test_single_scale_ssim_matches_explicit_windows():
    x = _smooth((14, 16, 18), 0)[None]
    y = (x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)
    ssim_ref, _ = _naive_ssim_terms(x[0, 0].double().numpy(), y[0, 0].double().numpy())
    # one scale: MS-SSIM = (cs · l)^w1 with Wang's first weight as published (MONAI's definition, not renormalised)
    ours = float(ms_ssim_3d(x, y, scales=1)[0])
    assert ours == pytest.approx(ssim_ref ** WANG_WEIGHTS[0], abs=2e-6)


def test_ms_ssim_known_values_and_symmetry():
    a = _smooth((32, 32, 32), 2)[None]
    b = _smooth((32, 32, 32), 3)[None]
    assert float(ms_ssim_3d(a, a)[0]) == pytest.approx(1.0, abs=1e-6)
    ab, ba = float(ms_ssim_3d(a, b)[0]), float(ms_ssim_3d(b, a)[0])
    assert ab == pytest.approx(ba, abs=1e-9)
    noisy = (a + 0.3 * torch.randn(a.shape, generator=torch.Generator().manual_seed(4))).clamp(-1, 1)
    assert float(ms_ssim_3d(a, noisy)[0]) > ab  # a noisy copy is more similar than an unrelated volume
    assert float(ms_ssim_3d(a, noisy)[0]) < 1.0


def test_pairwise_matrix_equals_pair_by_pair():
    vols = torch.stack([_smooth((32, 32, 32), s) for s in range(4)])
    m = pairwise_ms_ssim(vols)
    assert torch.allclose(m, m.T)
    assert torch.allclose(torch.diagonal(m), torch.ones(4, dtype=torch.float64))
    for i in range(4):
        for j in range(i + 1, 4):
            assert float(m[i, j]) == pytest.approx(float(ms_ssim_3d(vols[i : i + 1], vols[j : j + 1])[0]), abs=1e-6)


def test_ms_ssim_refuses_too_small_volumes():
    with pytest.raises(ValueError, match="too small"):
        ms_ssim_3d(torch.zeros(1, 1, 16, 16, 16), torch.zeros(1, 1, 16, 16, 16))


def test_mean_offdiagonal_and_identical_volumes():
    m = torch.tensor([[1.0, 0.2, 0.4], [0.2, 1.0, 0.6], [0.4, 0.6, 1.0]], dtype=torch.float64)
    mean, (lo, hi) = mean_offdiagonal_interval(m)
    assert mean == pytest.approx(0.4)
    assert 0.2 <= lo <= mean <= hi <= 0.6
    same = diversity_value(_smooth((32, 32, 32), 7)[None].expand(3, 1, 32, 32, 32).clone())
    assert same.value == pytest.approx(1.0, abs=1e-6)
    assert diversity_value(torch.zeros(1, 1, 32, 32, 32)).value is None


def _volume_with_body(seed: int) -> torch.Tensor:
    """(1, 16, 24, 24) in [-1, 1]: air (-1) outside a box of tissue with random values."""
    g = torch.Generator().manual_seed(seed)
    v = torch.full((1, 16, 24, 24), -1.0)
    v[:, 4:12, 6:18, 6:18] = torch.rand((1, 8, 12, 12), generator=g) * 0.8 - 0.1
    return v


def test_w1_matches_scipy_within_one_bin():
    ranges = [(-1000.0, 1000.0), (-900.0, 1500.0)]
    fake = torch.stack([_volume_with_body(0), _volume_with_body(1)])
    real = torch.stack([_volume_with_body(2), _volume_with_body(3)]) * 0.9
    hf, hr = HUHistogram(), HUHistogram()
    hf.update(fake, hu_ranges=ranges)
    hr.update(real, hu_ranges=ranges)

    def body_hu(vols):
        out = []
        for v, (lo, hi) in zip(vols, ranges, strict=True):
            hu = lo + (v.double().numpy() + 1) / 2 * (hi - lo)
            out.append(hu[hu > -500])
        return np.concatenate(out)

    exact = scipy.stats.wasserstein_distance(body_hu(fake), body_hu(real))
    assert exact > 20  # the test is not trivially near zero
    assert w1_from_histograms(hf.pooled(), hr.pooled()) == pytest.approx(exact, abs=BIN_HU)
    value = intensity_value(hf, hr)
    assert value.value == pytest.approx(exact, abs=BIN_HU)
    assert value.interval[0] <= value.interval[1]


def test_histogram_merge_equals_one_pass_and_masks_air():
    vols = torch.stack([_volume_with_body(s) for s in range(4)])
    r = [(-1000.0, 1000.0)] * 4
    whole, a, b = HUHistogram(), HUHistogram(), HUHistogram()
    whole.update(vols, hu_ranges=r)
    a.update(vols[:1], hu_ranges=r[:1])
    b.update(vols[1:], hu_ranges=r[1:])
    assert np.array_equal(a.merge(b).pooled(), whole.pooled())
    assert whole.pooled().sum() == 4 * 8 * 12 * 12  # only the body box, no air voxels
    air = HUHistogram()
    air.update(torch.full((1, 1, 4, 4, 4), -1.0), hu_ranges=[(-1000.0, 1000.0)])
    assert intensity_value(air, whole).value is None  # no body voxels → missing, not 0


def test_unit_features_correlation_known_values():
    x = _smooth((16, 32, 32), 5)[None]
    f = unit_features(torch.cat([x, 0.5 * x + 0.1, -x]))
    assert float(f[0] @ f[1]) == pytest.approx(1.0, abs=1e-5)
    assert float(f[0] @ f[2]) == pytest.approx(-1.0, abs=1e-5)


def test_audit_flags_a_copied_training_volume_and_merges():
    train = torch.stack([_smooth((16, 32, 32), s) for s in range(5)])
    held_out = torch.stack([_smooth((16, 32, 32), s) for s in range(10, 13)])
    index = TrainIndex(unit_features(train), [f"t{i}" for i in range(5)])
    copy_of_t3 = (train[3] + 0.01 * torch.randn(train[3].shape, generator=torch.Generator().manual_seed(0)))[None]
    fresh = torch.stack([_smooth((16, 32, 32), s) for s in range(20, 22)])
    whole = MemorisationAudit(index, keep_worst=2)
    whole.update(torch.cat([copy_of_t3, fresh]), [0, 1, 2])
    part_a, part_b = MemorisationAudit(index, keep_worst=2), MemorisationAudit(index, keep_worst=2)
    part_a.update(copy_of_t3, [0])
    part_b.update(fresh, [1, 2])
    merged = part_a.merge(part_b)
    assert merged.corr == whole.corr and merged.nearest == whole.nearest
    assert [p.sample_index for p in merged.worst] == [p.sample_index for p in whole.worst]
    assert whole.nearest[0] == 3 and whole.worst[0].sample_index == 0 and whole.worst[0].train_index == 3
    real_corr = index.nearest(held_out)[0].numpy()
    gen_corr = np.array([whole.corr[i] for i in range(3)])
    values = audit_values(gen_corr, real_corr)
    assert values["memorised"].value == 1.0  # only the copy
    assert values["nn_corr_real"].value == pytest.approx(float(np.median(real_corr)))
    assert audit_values(gen_corr, np.array([]))["memorised"].value is None


def test_training_index_cache_round_trip(tmp_path):
    from ctbench.metrics.memorisation import load_or_build_index

    train = torch.stack([_smooth((16, 32, 32), s) for s in range(3)])
    built = []

    def batches():
        built.append(1)
        return [train[:2], train[2:]]

    ids = ["a", "b", "c"]
    first = load_or_build_index(ids, batches, {"manifest_sha256": "x"}, tmp_path)
    second = load_or_build_index(ids, batches, {"manifest_sha256": "x"}, tmp_path)
    assert len(built) == 1 and torch.equal(first.features, second.features)  # read back, bit-identical
    query = _smooth((16, 32, 32), 9)[None]
    assert torch.equal(first.nearest(query)[0], second.nearest(query)[0])
    load_or_build_index(ids, batches, {"manifest_sha256": "y"}, tmp_path)  # other data: other key, rebuilt
    load_or_build_index(ids, batches, {"manifest_sha256": "x"}, None)  # cache off
    assert len(built) == 3 and len(list(tmp_path.glob("*.npz"))) == 2 and len(list(tmp_path.glob("*.json"))) == 2
