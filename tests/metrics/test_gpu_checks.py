"""benchmarks/gpu_checks.py runs end to end at toy size on the CPU, as a GPU session would run it at full size."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ctbench.extractors.inception import BF16_FEATURE_TOLERANCE

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_checks.py"


@pytest.mark.slow
@pytest.mark.timeout(840)
def test_gpu_checks_tiny_runs_every_step_and_reports(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "CTBENCH_GPU_CHECKS_TINY": "1"}  # the environment variable form of --tiny
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], env=env, capture_output=True, text=True,
                          timeout=780)  # fmt: skip (the steps' own limits: 360 + 180 + 180 s)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tiny"] is True
    assert [(s["name"], s["status"]) for s in summary["steps"]] == [("metrics", "ok"), ("train", "ok"),
                                                                    ("pipeline", "ok")]
    assert all(s["table"].count("|") > 10 for s in summary["steps"])  # each benchmark printed its table
    ext = json.loads((out / "metrics.json").read_text())["extraction"]
    methods = [r["method"] for r in ext["rows"]]
    assert methods == ["naive (per-slice resize, torchvision)", "ctbench fp32", "ctbench bf16"]
    assert ext["slices"] == 1 + 2 + 2  # one volume, every 64th slice: 64/64 xy, 128/64 xz and yz (FID needs 2 a half)
    assert all(r["slices_per_s"] > 0 and math.isfinite(r["slices_per_s"]) for r in ext["rows"])
    gap = ext["gaps"]["ctbench bf16"]
    assert 0 < gap["max_rel"] < BF16_FEATURE_TOLERANCE and gap["fid_fp32"] > 0
    pipe = json.loads((out / "pipeline.json").read_text())
    assert pipe["volumes"] == 2 and [r["variant"] for r in pipe["rows"]] == [
        "network only (volumes in memory)", "end to end, 0 reading threads", "end to end, 2 reading threads"]
    assert pipe["rows"][0]["ratio"] == 1.0 and all(r["volumes_per_s"] > 0 for r in pipe["rows"])
    final = proc.stdout[proc.stdout.rindex("| step"):]  # the final table and the headline figures
    assert "| metrics  | ok" in final and "| train    | ok" in final and "ctbench bf16 vs fp32" in final
    assert "of network only" in final
    assert all((out / f"{step}.log").read_text() for step in ("metrics", "train", "pipeline"))



def test_a_step_past_its_limit_is_killed_and_reported(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_checks", SCRIPT)
    gpu_checks = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_checks", gpu_checks)  # dataclasses look their module up there
    spec.loader.exec_module(gpu_checks)
    slow, bad = tmp_path / "slow.py", tmp_path / "bad.py"
    slow.write_text("import time\nprint('| started |', flush=True)\ntime.sleep(60)\n")
    bad.write_text("import sys\nprint('boom')\nsys.exit(3)\n")
    steps = [gpu_checks.Step("slow", [str(slow)], limit_s=2), gpu_checks.Step("bad", [str(bad)], limit_s=30)]
    for step in steps:
        gpu_checks.run_step(step, tmp_path)
    assert steps[0].status == "timed out after 2 s" and steps[0].seconds < 30 and steps[0].table == "| started |"
    assert steps[1].status == "failed (rc 3)" and (tmp_path / "bad.log").read_text() == "boom\n"
