"""benchmarks/bench_bias.py --quick runs in seconds and shows the bias of plain FID and its correction."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_bias.py"


def test_quick_bias_table(capsys):
    spec = importlib.util.spec_from_file_location("bench_bias", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--quick"])
    out = capsys.readouterr().out
    assert out.count("| real-vs-") == len(rows) == 6 and "corrected 95% cover" in out
    for row in rows:
        if row["n"] == 512:  # 32 x d: plain FID's interval misses, the corrected one holds the exact distance
            assert row["plain_mean"] - row["exact"] > 3 * row["plain_sd"]
            assert abs(row["corrected_mean"] - row["exact"]) < row["corrected_sd"]
            assert row["corrected_coverage"] >= 0.8 > row["plain_coverage"]
        # KID is unbiased at every n, even n = d: its mean over draws is on the closed-form population value
        assert abs(row["kid_mean"] - row["kid_exact"]) < 3 * row["kid_sd"] / 20**0.5 + 0.1 * row["kid_exact"]


def test_population_mmd2_matches_a_large_sample():
    import numpy as np
    import torch

    from ctbench.metrics.kernel import mmd2_with_replicates

    spec = importlib.util.spec_from_file_location("bench_bias", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rng = np.random.default_rng(1)
    d = 4
    mu1, mu2 = np.array([0.5, 0.0, -0.3, 0.2]), np.zeros(d)
    a = rng.normal(size=(d, d))
    s1, s2 = a @ a.T / d + np.eye(d) * 0.5, np.eye(d)
    exact = bench.population_mmd2(mu1, s1, mu2, s2)
    x = rng.multivariate_normal(mu1, s1, 4000)
    y = rng.multivariate_normal(mu2, s2, 4000)
    value, _, _ = mmd2_with_replicates(torch.from_numpy(x), torch.zeros(4000, dtype=torch.long), 1,
                                       torch.from_numpy(y))
    assert exact > 0.05 and value == pytest.approx(exact, rel=0.1)
    assert bench.population_mmd2(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-12)
