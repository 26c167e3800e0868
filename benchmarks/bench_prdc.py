"""Precision, recall, density, coverage: the grouped-jackknife interval against the spread over independent sets,
and the cost of one plane.

Calibration: ``SETS`` independent generated sets (``ROWS`` 16-d rows in volumes of ``PER_VOLUME`` correlated rows,
as slices of one volume are) scored against one fixed real set with K = 8 groups. Prints, per value, the spread of
the values over the sets, the mean jackknife standard error, their ratio (1 = calibrated, above 1 = conservative)
and how often the 95% interval held the mean value. Cost: one plane at ``--rows`` rows a side of 2048-d features
(10,000: the default cap, what every evaluation from about 160 volumes on computes per plane).

    python benchmarks/bench_prdc.py [--sets 150] [--rows 10000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ctbench.metrics.manifold import NAMES, prdc

DIM, ROWS, PER_VOLUME, GROUPS = 16, 480, 8, 8


def calibration(sets: int) -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(ROWS, DIM))
    volume = np.repeat(np.arange(ROWS // PER_VOLUME), PER_VOLUME)
    values: dict[str, list[float]] = {k: [] for k in NAMES}
    ses: dict[str, list[float]] = {k: [] for k in NAMES}
    intervals: dict[str, list[tuple[float, float]]] = {k: [] for k in NAMES}
    for _ in range(sets):
        offsets = 0.3 * rng.normal(size=(ROWS // PER_VOLUME, DIM))[volume]  # rows of one volume share an offset
        fake = rng.normal(size=(ROWS, DIM)) * 1.1 + 0.25 + offsets
        for name, e in prdc(fake, volume, real, GROUPS).items():
            r = np.asarray(e.replicates)
            values[name].append(e.value)
            ses[name].append(float(np.sqrt((len(r) - 1) / len(r) * ((r - r.mean()) ** 2).sum())))
            interval = e.interval()
            assert interval is not None
            intervals[name].append(interval)
    print(f"jackknife calibration: {sets} generated sets of {ROWS} {DIM}-d rows ({PER_VOLUME} per volume), K = "
          f"{GROUPS}, one real set of {ROWS}")
    print(f"{'value':<10} {'mean':>7} {'sd over sets':>13} {'jackknife se':>13} {'ratio':>6} {'interval holds':>15}")
    for name in NAMES:
        v = np.asarray(values[name])
        held = np.mean([lo <= v.mean() <= hi for lo, hi in intervals[name]])
        print(f"{name:<10} {v.mean():7.4f} {v.std(ddof=1):13.4f} {np.mean(ses[name]):13.4f} "
              f"{np.mean(ses[name]) / v.std(ddof=1):6.2f} {held:15.0%}")


def cost(rows: int) -> None:
    rng = np.random.default_rng(1)
    fake = rng.normal(size=(rows, 2048)).astype(np.float16)
    real = (rng.normal(size=(rows, 2048)) + 0.1).astype(np.float16)
    t = time.perf_counter()
    prdc(fake, np.arange(rows) // 64, real, GROUPS)
    s = time.perf_counter() - t
    print(f"one plane, {rows} rows a side, 2048-d, float64 on the CPU ({torch.get_num_threads()} threads): {s:.1f} s; "
          f"three planes {3 * s / 60:.1f} min")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=150)
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    calibration(args.sets)
    cost(args.rows)
