"""Under torchrun each rank samples its share; the gathered record equals the single-process one, values and
intervals alike (the FID run checks that jackknife groups follow the global sample index, not a rank's count)."""

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
TORCHRUN = str(BIN / "torchrun") if (BIN / "torchrun").exists() else shutil.which("torchrun")


@pytest.mark.slow
@pytest.mark.skipif(TORCHRUN is None, reason="torchrun not installed")
def test_two_ranks_match_one_process(prepared_dir, tmp_path):
    metrics = "diversity,intensity,memorisation"
    args = ["-g", "noise", "--data", str(prepared_dir), "--num-samples", "5", "--seed", "2", "--metrics", metrics]
    res = subprocess.run(
        [TORCHRUN, "--standalone", "--nproc-per-node", "2", str(BIN / "ctbench"), "evaluate", *args,
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


FID_RUN = """
import sys
from ctbench.evaluate import EvalOptions, evaluate
evaluate(EvalOptions(**eval(sys.argv[1])))
"""


@pytest.fixture
def installed_inception(inception_weights, tmp_path, monkeypatch):
    """Random InceptionV3 weights imported (unverified) into this test's own cache, seen by subprocesses too."""
    from ctbench.weights import import_weights

    root = tmp_path / "ctbench-cache"
    monkeypatch.setenv("CTBENCH_CACHE", str(root))
    monkeypatch.setenv("TORCH_HOME", str(root / "torch"))
    return import_weights(inception_weights, "inception-v3-compat", unverified_ok=True)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.skipif(TORCHRUN is None, reason="torchrun not installed")
def test_two_ranks_fid_values_and_intervals_match_one_process(prepared_dir, tmp_path, installed_inception):
    """FID (random weights, every 32nd slice) of 3 noise volumes on 2 ranks (samples 0-1 and 2) and on one.

    The single-process run computes the reference statistics and caches them; the torchrun run reads them (sharded
    reference statistics are tested in tests/metrics/test_metrics_fid.py). Were jackknife groups taken from a
    rank's own count, rank 1's volume 2 would join the group of volume 0: fewer replicates, another interval.
    """
    opts = dict(
        data=str(prepared_dir), generator="noise", n=3, seed=2, metrics=["fid"], split="train", batch_size=2,
        unverified_weights=True, metric_options={"fid": {"slice_step": 32}}, montage_volumes=0,
    )  # fmt: skip
    single = read_record(evaluate(EvalOptions(**opts, out=str(tmp_path / "one"))))
    script = tmp_path / "fid_run.py"
    script.write_text(FID_RUN)
    ddp_opts = repr({**opts, "out": str(tmp_path / "ddp")})
    res = subprocess.run(
        [TORCHRUN, "--standalone", "--nproc-per-node", "2", str(script), ddp_opts],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    (path,) = (tmp_path / "ddp").glob("*.json")
    ddp = json.loads(path.read_text())
    assert ddp["sampling"]["world_size"] == 2
    assert ddp["run_id"] == single["run_id"]
    planes = ("mean", "xy", "xz", "yz")
    assert set(single["metrics"]) == {f"{m}_{k}{s}" for k in planes for m, s in
                                      (("fid", ""), ("fid", "_unbiased"), ("kid", ""), ("precision", ""),
                                       ("recall", ""), ("density", ""), ("coverage", ""))}
    # features differ in the last float32 bits with the batch composition and thread count, hence rel=1e-6; KID
    # sees them through float16 rows (the stored feature sample), where such a difference can flip a rounding
    for key, value in single["metrics"].items():
        rel = 1e-5 if key.startswith("kid") else 1e-6
        assert "replicates=3" in value["note"] or key.endswith("_mean") or key == "fid_mean_unbiased", key
        for field in ("value", "interval", "n", "note", "interval_method", "padding"):
            want, got = value[field], ddp["metrics"][key][field]
            if field in ("value", "interval"):
                assert want is not None and got == pytest.approx(want, rel=rel), (key, field, got, want)
            else:
                assert got == want, (key, field)
