"""Pairwise 3D MS-SSIM among M volumes of 64×128×128: ctbench's implementation vs a conv3d baseline.

Baseline (same numbers, measured in the same run): per pair, the textbook computation with the separable
Gaussian applied as three thin ``conv3d`` calls and every moment filtered again for every pair. ctbench:
banded-matmul filtering and per-volume moments filtered once. Prints seconds and the speed-up.

    python benchmarks/bench_msssim.py [M]
"""

from __future__ import annotations

import sys
import time

import torch
import torch.nn.functional as F

from ctbench.metrics.diversity import (
    DATA_RANGE,
    DEFAULT_SCALES,
    K1,
    K2,
    gaussian_window,
    pairwise_ms_ssim,
    scale_weights,
)


def conv_filter(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    k = w.numel()
    x = F.conv3d(x, w.view(1, 1, k, 1, 1))
    x = F.conv3d(x, w.view(1, 1, 1, k, 1))
    return F.conv3d(x, w.view(1, 1, 1, 1, k))


def baseline_pair(x: torch.Tensor, y: torch.Tensor) -> float:
    w = gaussian_window()
    weights = torch.tensor(scale_weights(DEFAULT_SCALES), dtype=torch.float64)
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    out = 1.0
    for s, wt in enumerate(weights):
        mx, my = conv_filter(x, w), conv_filter(y, w)
        vx, vy = conv_filter(x * x, w) - mx**2, conv_filter(y * y, w) - my**2
        cxy = conv_filter(x * y, w) - mx * my
        m = (2 * cxy + c2) / (vx + vy + c2)
        if s == len(weights) - 1:
            m = m * (2 * mx * my + c1) / (mx**2 + my**2 + c1)
        out *= float(m.mean().clamp_min(0)) ** float(wt)
        x, y = F.avg_pool3d(x, 2), F.avg_pool3d(y, 2)
    return out


def main(m: int = 8) -> None:
    torch.manual_seed(0)
    vols = (F.interpolate(torch.rand(m, 1, 16, 32, 32), size=(64, 128, 128), mode="trilinear") * 2 - 1).contiguous()
    t = time.perf_counter()
    ours = pairwise_ms_ssim(vols)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    base = [[baseline_pair(vols[i : i + 1], vols[j : j + 1]) for j in range(i + 1, m)] for i in range(m - 1)]
    t_base = time.perf_counter() - t
    err = max(abs(base[i][j - i - 1] - float(ours[i, j])) for i in range(m - 1) for j in range(i + 1, m))
    pairs = m * (m - 1) // 2
    print(f"pairwise 3D MS-SSIM, {m} volumes of 64x128x128 ({pairs} pairs), {torch.get_num_threads()} threads")
    print(f"{'method':<34} {'seconds':>8} {'ms/pair':>8} {'speed-up':>8}")
    print(f"{'conv3d per pair (baseline)':<34} {t_base:8.2f} {1e3 * t_base / pairs:8.1f} {1.0:8.1f}")
    print(f"{'ctbench banded matmul, shared':<34} {t_ours:8.2f} {1e3 * t_ours / pairs:8.1f} {t_base / t_ours:8.1f}")
    print(f"max |difference| = {err:.2e}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 8)
