"""Diversity's MS-SSIM on MONAI's definition (parity with ``monai.metrics.MultiScaleSSIMMetric``), its stated
weights and scales, and the seeded random reference subset for ``ms_ssim_real``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from monai.metrics import MultiScaleSSIMMetric

from ctbench.metrics import get_metric
from ctbench.metrics.diversity import (
    DATA_RANGE,
    SIGMA,
    WANG_WEIGHTS,
    WINDOW,
    KeepChosen,
    diversity_value,
    ms_ssim_3d,
    pairwise_ms_ssim,
    reference_subset,
)


def _smooth(n: int, shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    """``(n, 1, *shape)`` volumes in [-1, 1]: a shared smooth pattern, a smooth part of their own growing with the
    volume's index, and noise (so pairs have MS-SSIM well inside (0, 1))."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand((n + 1, 1, *(s // 8 for s in shape)), generator=g) * 2 - 1
    smooth = torch.nn.functional.interpolate(low, size=shape, mode="trilinear", align_corners=False)
    own = torch.linspace(0.2, 0.8, n)[:, None, None, None, None]
    vols = (1 - own) * smooth[:1] + own * smooth[1:]
    return (vols + 0.1 * torch.randn(vols.shape, generator=g)).clamp(-1, 1)


def _monai(x: torch.Tensor, y: torch.Tensor, scales: int) -> torch.Tensor:
    metric = MultiScaleSSIMMetric(spatial_dims=3, data_range=DATA_RANGE, kernel_size=WINDOW, kernel_sigma=SIGMA,
                                  weights=WANG_WEIGHTS[:scales], reduction="none")
    return metric(x, y).flatten().double()


@pytest.mark.parametrize(("scales", "shape"), [(3, (32, 40, 48)), (4, (64, 64, 64))])
def test_ms_ssim_equals_monai_multiscale_ssim_metric(scales, shape):
    vols = _smooth(3, shape, scales)
    x, y = vols[[0, 0, 1]], vols[[1, 2, 2]]
    theirs = _monai(x, y, scales)
    assert 0.05 < float(theirs.min()) and float(theirs.max()) < 0.95  # not a trivial case
    torch.testing.assert_close(ms_ssim_3d(x, y, scales), theirs, rtol=0, atol=2e-5)
    pairs = pairwise_ms_ssim(vols, scales)
    torch.testing.assert_close(pairs[[0, 0, 1], [1, 2, 2]], theirs, rtol=0, atol=2e-5)


def test_scales_and_weights_are_options_stated_in_the_record():
    options = get_metric("diversity", scales=4).options()
    assert options["scales"] == 4 and options["weights"] == [0.0448, 0.2856, 0.3001, 0.2363]
    vols = _smooth(2, (32, 32, 32), 5)
    v = diversity_value(vols, scales=3)
    assert "MONAI MultiScaleSSIMMetric" in v.note and "0.0448, 0.2856, 0.3001" in v.note and "scales=3" in v.extractor
    assert v.metric_version == "2"
    with pytest.raises(ValueError, match="scales must be between 1 and 5"):
        get_metric("diversity", scales=6)


def test_reference_subset_is_seeded_random_and_recorded():
    first = reference_subset(50, 32, seed=0)
    assert first == reference_subset(50, 32, seed=0) and first == sorted(set(first)) and len(first) == 32
    assert first != list(range(32)) and max(first) < 50  # not the first cases by id
    assert reference_subset(50, 32, seed=1) != first
    assert reference_subset(20, 32, seed=0) == list(range(20))  # a split smaller than the subset enters whole
    metric = get_metric("diversity", volumes=3, reference_seed=7)
    ctx = SimpleNamespace(manifest=SimpleNamespace(select=lambda split: list(range(9))), split="test")
    acc = metric.reference_accumulator(ctx)
    assert isinstance(acc, KeepChosen) and acc.chosen == frozenset(reference_subset(9, 3, 7))
    vols = torch.arange(9, dtype=torch.float32)[:, None, None, None, None].expand(9, 1, 32, 32, 32).clone()
    acc.update(vols[:5], range(5), [(0.0, 1.0)] * 5)
    acc.update(vols[5:], range(5, 9), [(0.0, 1.0)] * 4)
    assert [int(v[0, 0, 0, 0]) for v in metric.reference(ctx, acc)] == sorted(acc.chosen)
    assert metric.options()["reference_seed"] == 7
