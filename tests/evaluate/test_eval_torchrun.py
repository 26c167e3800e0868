"""Under torchrun each rank samples its share; the gathered record equals the single-process one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ctbench.evaluate import EvalOptions, evaluate
from ctbench.record import read_record

BIN = Path(sys.executable).parent


@pytest.mark.slow
@pytest.mark.skipif(not (BIN / "torchrun").exists() and not shutil.which("torchrun"), reason="torchrun not installed")
def test_two_ranks_match_one_process(prepared_dir, tmp_path):
    metrics = "diversity,intensity,memorisation"
    args = ["-g", "noise", "--data", str(prepared_dir), "--num-samples", "5", "--seed", "2", "--metrics", metrics]
    torchrun = str(BIN / "torchrun") if (BIN / "torchrun").exists() else shutil.which("torchrun")
    res = subprocess.run(
        [torchrun, "--standalone", "--nproc-per-node", "2", str(BIN / "ctbench"), "evaluate", *args,
         "--out", str(tmp_path / "ddp"), "--batch-size", "2"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    (path,) = (tmp_path / "ddp").glob("*.json")
    ddp = json.loads(path.read_text())
    assert ddp["sampling"]["world_size"] == 2
    single = read_record(
        evaluate(
            EvalOptions(
                data=str(prepared_dir),
                generator="noise",
                n=5,
                seed=2,
                metrics=metrics.split(","),
                out=str(tmp_path / "one"),
            )
        )
    )
    assert ddp["run_id"] == single["run_id"]
    # samples are bit-identical; metric arithmetic may differ in the last bits with the thread count (torchrun
    # sets OMP_NUM_THREADS=1), so values are compared to 1e-9 relative
    for key, value in single["metrics"].items():
        for field in ("value", "interval"):
            want = value[field]
            got = ddp["metrics"][key][field]
            assert got == (want if want is None else pytest.approx(want, rel=1e-9, abs=1e-12)), (key, field)
    worst = ddp["artifacts"]["memorisation_worst"]
    assert [(w["sample"], w["train_case"]) for w in worst] == [
        (w["sample"], w["train_case"]) for w in single["artifacts"]["memorisation_worst"]
    ]
