"""Diversity: mean pairwise 3D MS-SSIM among volumes (lower = more diverse); needs no downloaded weights.

Written here rather than taken from a library: neither torchmetrics nor pytorch-msssim is a ctbench
dependency, and both run a dense k³ 3D convolution, while a Gaussian window is separable (3k taps per
voxel instead of k³; here each axis is a banded matmul). For pairwise use, each volume's local means and
second moments are filtered once and only the cross term ``f(x·y)`` is filtered per pair.

The definition is MONAI's ``MultiScaleSSIMMetric`` (``spatial_dims=3``): per scale s the mean over the 'valid'
Gaussian-filtered map of the contrast-structure term (the last scale: of the full SSIM map), negative means set to
0 (ReLU), combined as ``Π_s mean_s ** w_s`` with Wang et al.'s weights as published — *not* renormalised to sum
1, so fewer scales than five give a larger value than a renormalised product — and ×2 average pooling between
scales. Choices for 64×128×128 volumes: window 7 voxels, σ = 1.5, data range 2 (values in [-1, 1]), K1 = 0.01,
K2 = 0.03, ``scales`` = 3 by default (64 → 32 → 16 axial slices; weights 0.0448, 0.2856, 0.3001), 4 allowed
(0.2363 added; the smallest scale is then 8 slices); five would leave fewer slices than the window (MONAI's
5-scale default refuses 64-slice volumes too).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ctbench.metrics.base import MetricValue
from ctbench.metrics.contract import Accumulator, KeepFirst, Key, Metric, RunContext

VERSION = "2"
WINDOW = 7
SIGMA = 1.5
WANG_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""Wang et al. (2003)'s five scale weights (MONAI's and torchmetrics' default); the first ``scales`` are used."""
DEFAULT_SCALES = 3
DEFAULT_REFERENCE_SEED = 0
DATA_RANGE = 2.0
K1, K2 = 0.01, 0.03


def gaussian_window(size: int = WINDOW, sigma: float = SIGMA) -> torch.Tensor:
    """1D Gaussian taps ``(size,)`` summing to 1."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    w = torch.exp(-(x**2) / (2 * sigma**2))
    return (w / w.sum()).float()


def _band(n: int, window: torch.Tensor) -> torch.Tensor:
    """``(n - k + 1, n)`` matrix whose rows are the window shifted by one: 'valid' correlation as a matmul."""
    k = window.numel()
    rows = torch.arange(n - k + 1)[:, None] + torch.arange(k)[None, :]
    band = torch.zeros(n - k + 1, n, dtype=window.dtype)
    band.scatter_(1, rows, window.expand(n - k + 1, k).contiguous())
    return band


def filter3d(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filtering of ``(N, 1, D, H, W)``; output shrinks by ``len(window) - 1`` per axis.

    Each axis is one matmul with a banded matrix: about 10× faster on CPU than three thin ``conv3d`` calls.
    """
    w = window.to(x.dtype)
    d, h, wd = x.shape[2:]
    y = x[:, 0] @ _band(wd, w).T
    y = torch.einsum("ndhw,eh->ndew", y, _band(h, w))
    y = torch.einsum("ndhw,ed->nehw", y, _band(d, w))
    return y[:, None]


def _check(volumes: torch.Tensor, scales: int, window: int) -> None:
    if volumes.ndim != 5 or volumes.shape[1] != 1:
        raise ValueError(f"MS-SSIM expects (N, 1, D, H, W), got {tuple(volumes.shape)}")
    smallest = min(volumes.shape[2:]) // 2 ** (scales - 1)
    if smallest < window:
        raise ValueError(
            f"volume {tuple(volumes.shape[2:])} too small for {scales} scales with a {window}-voxel window "
            f"(smallest scale {smallest} < {window})"
        )


def scale_weights(scales: int) -> tuple[float, ...]:
    """The first ``scales`` of Wang et al.'s weights, as published (not renormalised)."""
    if not 1 <= scales <= len(WANG_WEIGHTS):
        raise ValueError(f"MS-SSIM scales must be between 1 and {len(WANG_WEIGHTS)}, got {scales}")
    return WANG_WEIGHTS[:scales]


def _weights(scales: int) -> torch.Tensor:
    return torch.tensor(scale_weights(scales), dtype=torch.float64)


def ms_ssim_3d(x: torch.Tensor, y: torch.Tensor, scales: int = DEFAULT_SCALES) -> torch.Tensor:
    """MS-SSIM of matching pairs ``x[i], y[i]``; inputs ``(N, 1, D, H, W)`` in [-1, 1]; returns ``(N,)`` float64."""
    _check(x, scales, WINDOW)
    win = gaussian_window()
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    x, y = x.float(), y.float()
    out = torch.ones(x.shape[0], dtype=torch.float64)
    for s, w in enumerate(_weights(scales)):
        mx, my = filter3d(x, win), filter3d(y, win)
        vx = filter3d(x * x, win) - mx**2
        vy = filter3d(y * y, win) - my**2
        cxy = filter3d(x * y, win) - mx * my
        cs_map = (2 * cxy + c2) / (vx + vy + c2)
        if s == scales - 1:  # last scale: the full SSIM map, luminance × contrast-structure
            cs_map = cs_map * (2 * mx * my + c1) / (mx**2 + my**2 + c1)
        out = out * cs_map.flatten(1).mean(1).clamp_min(0).double() ** w
        x, y = F.avg_pool3d(x, 2), F.avg_pool3d(y, 2)
    return out


def pairwise_ms_ssim(volumes: torch.Tensor, scales: int = DEFAULT_SCALES) -> torch.Tensor:
    """Symmetric ``(M, M)`` float64 matrix of MS-SSIM between all pairs of ``(M, 1, D, H, W)`` volumes.

    The diagonal is 1. Per-volume moments are filtered once; each pair filters only ``x·y``.
    """
    _check(volumes, scales, WINDOW)
    win = gaussian_window()
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    m = volumes.shape[0]
    log_out = torch.zeros(m, m, dtype=torch.float64)
    x = volumes.float()
    for s, w in enumerate(_weights(scales)):
        mu = filter3d(x, win)
        var = filter3d(x * x, win) - mu**2
        for i in range(m - 1):
            rest = slice(i + 1, m)
            cxy = filter3d(x[i : i + 1] * x[rest], win) - mu[i : i + 1] * mu[rest]
            cs_map = (2 * cxy + c2) / (var[i : i + 1] + var[rest] + c2)
            if s == scales - 1:
                mi, mj = mu[i : i + 1], mu[rest]
                cs_map = cs_map * (2 * mi * mj + c1) / (mi**2 + mj**2 + c1)
            cs = cs_map.flatten(1).mean(1).clamp_min(0).double()
            log_out[i, rest] += w * torch.log(cs.clamp_min(1e-300))
        x = F.avg_pool3d(x, 2)
    out = torch.exp(log_out)
    out = torch.triu(out, 1)
    return out + out.T + torch.eye(m, dtype=torch.float64)


def mean_offdiagonal_interval(
    matrix: torch.Tensor, resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, tuple[float, float] | None]:
    """Mean of the off-diagonal entries and a percentile bootstrap interval resampling the volumes.

    Each bootstrap draw picks M volumes with replacement and averages the matrix over pairs of distinct
    draws (pairs of a volume with its own copy are left out). No interval for fewer than 3 volumes.
    """
    a = matrix.numpy()
    m: int = a.shape[0]
    off = ~np.eye(m, dtype=bool)
    mean = float(a[off].mean())
    if m < 3:
        return mean, None
    rng = np.random.default_rng(seed)
    stats = np.empty(resamples)
    for b in range(resamples):
        idx = rng.integers(0, m, m)
        sub = a[np.ix_(idx, idx)]
        distinct = idx[:, None] != idx[None, :]
        stats[b] = sub[distinct].mean() if distinct.any() else mean
    lo, hi = np.percentile(stats, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return mean, (float(lo), float(hi))


def diversity_value(volumes: torch.Tensor, note: str | None = None, scales: int = DEFAULT_SCALES) -> MetricValue:
    """Mean pairwise MS-SSIM of ``(M, 1, D, H, W)`` volumes in [-1, 1] as a :class:`MetricValue` (n = M).

    The extractor field and the note state the window, σ, scales and weights."""
    m = volumes.shape[0]
    definition = f"MONAI MultiScaleSSIMMetric definition; weights {', '.join(map(str, scale_weights(scales)))}"
    note = f"{note}; {definition}" if note else definition
    if m < 2:
        return MetricValue(None, n=m, metric_version=VERSION, note=f"needs at least 2 volumes; {definition}")
    mean, interval = mean_offdiagonal_interval(pairwise_ms_ssim(volumes, scales))
    return MetricValue(
        value=mean if math.isfinite(mean) else None,
        n=m,
        interval=interval,
        interval_method="bootstrap over volumes, 95%, 1000 resamples" if interval else None,
        extractor=f"ms-ssim-3d(window={WINDOW}, sigma={SIGMA}, scales={scales})",
        verified=True,
        metric_version=VERSION,
        note=note,
    )


class KeepChosen(Accumulator):
    """Keeps the volumes whose sample index is in ``chosen``, keyed by index."""

    def __init__(self, chosen: Sequence[int]):
        self.chosen = frozenset(int(i) for i in chosen)
        self.kept: dict[int, torch.Tensor] = {}

    def update(self, volumes: torch.Tensor, indices: Sequence[int], hu_ranges: Sequence[tuple[float, float]]) -> None:
        for k, i in enumerate(indices):
            if int(i) in self.chosen:
                self.kept[int(i)] = volumes[k].detach().clone()

    def merge(self, state: KeepChosen) -> None:
        self.kept.update(state.kept)

    def volumes(self) -> torch.Tensor:
        """The kept volumes ``(M, 1, D, H, W)`` in sample-index order."""
        return torch.stack([self.kept[i] for i in sorted(self.kept)])


def reference_subset(split_size: int, volumes: int, seed: int) -> list[int]:
    """Sorted indices (into the split's cases, ordered by id) of ``min(volumes, split_size)`` reference volumes drawn
    without replacement by ``numpy.random.default_rng(seed).choice``."""
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(split_size, min(volumes, split_size), replace=False))


class Diversity(Metric):
    """Mean pairwise 3D MS-SSIM of the first ``volumes`` generated volumes (independent samples), and of as many
    reference volumes drawn at random from the split (``reference_seed``); ``scales`` 1 to 5 (default 3)."""

    name = "diversity"
    version = VERSION
    summary = "diversity: mean pairwise 3D MS-SSIM of samples, read against the real volumes' value"
    keys = (
        Key("ms_ssim", description="mean pairwise 3D MS-SSIM of generated volumes; near ms_ssim_real is best, "
            "higher means less diverse"),
        Key("ms_ssim_real", description="the same for real reference volumes", real_of="ms_ssim"),
    )

    def __init__(self, volumes: int = 32, scales: int = DEFAULT_SCALES, reference_seed: int = DEFAULT_REFERENCE_SEED):
        if volumes < 2:
            raise ValueError(f"diversity needs at least 2 volumes per side, got {volumes}")
        scale_weights(scales)  # refuses a number of scales outside 1..5
        if reference_seed < 0:
            raise ValueError(f"reference_seed must be >= 0, got {reference_seed}")
        self.volumes = volumes
        self.scales = scales
        self.reference_seed = reference_seed

    def options(self) -> dict[str, Any]:
        return {"volumes": self.volumes, "window": WINDOW, "sigma": SIGMA, "scales": self.scales,
                "weights": list(scale_weights(self.scales)), "reference_seed": self.reference_seed}

    def accumulator(self, ctx: RunContext) -> KeepFirst:
        return KeepFirst(self.volumes)

    def reference_accumulator(self, ctx: RunContext) -> KeepChosen:
        return KeepChosen(reference_subset(len(ctx.manifest.select(ctx.split)), self.volumes, self.reference_seed))

    def reference(self, ctx: RunContext, real: Accumulator | None) -> torch.Tensor:
        assert isinstance(real, KeepChosen)
        return real.volumes()

    def score(self, fake: Accumulator, reference: torch.Tensor, ctx: RunContext) -> dict[str, MetricValue]:
        assert isinstance(fake, KeepFirst)
        n_split = len(ctx.manifest.select(ctx.split))
        drawn = (f"reference split {ctx.split!r}: {len(reference)} of {n_split} volumes drawn at random "
                 f"(numpy default_rng({self.reference_seed}).choice, cases ordered by id)")
        return {
            "ms_ssim": diversity_value(fake.volumes(), scales=self.scales),
            "ms_ssim_real": diversity_value(reference, note=drawn, scales=self.scales),
        }
