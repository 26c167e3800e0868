"""benchmarks/bench_bias.py --quick runs in seconds and shows the bias of plain FID and its correction."""

from __future__ import annotations

import importlib.util
from pathlib import Path

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
