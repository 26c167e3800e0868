"""Third-party metrics through the ``ctbench.metrics`` entry points: listed, run, recorded, ranked; broken ones
are listed with the reason and never break the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ctbench.metrics import METRICS, BrokenMetricError, Key, Metric
from ctbench.metrics.registry import contract_problems

CTBENCH = Path(sys.executable).with_name("ctbench")
TOY_METRIC = Path(__file__).resolve().parents[1] / "plugins" / "ctbench-toy-metric"


@pytest.fixture(scope="module")
def toy_metric_path(tmp_path_factory: pytest.TempPathFactory, build_wheel_site) -> Path:
    return build_wheel_site(tmp_path_factory, TOY_METRIC)


def _run(args: list[str], site: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([str(CTBENCH), *args], capture_output=True, text=True, env=env, timeout=300)


def test_contract_problems_name_each_breach():
    class NoKeys(Metric):
        name, version, keys = "no-keys", "1", ()

        def accumulator(self, ctx): ...
        def reference(self, ctx, real): ...
        def score(self, fake, reference, ctx): ...

    class Twice(NoKeys):
        name, keys = "twice", (Key("a"), Key("a"))

    class Abstract(Metric):
        name, version, keys = "abstract", "1", (Key("b"),)

    assert contract_problems(object, "x") == [f"{object!r} is not a subclass of ctbench.metrics.contract.Metric"]
    assert contract_problems(NoKeys, "no-keys") == ["keys must be a non-empty tuple of ctbench.metrics.contract.Key"]
    assert contract_problems(Twice, "twice") == ["declares the same key twice"]
    assert contract_problems(Abstract, "other") == [
        "does not implement accumulator, reference, score",
        "its name attribute is 'abstract', registered as 'other'",
    ]
    with pytest.raises(BrokenMetricError, match="declares the same key twice"):
        METRICS.register(Twice)


def test_third_party_metric_listed_run_recorded_and_ranked(toy_metric_path, prepared_dir, tmp_path):
    ls = _run(["ls", "--json"], toy_metric_path)
    assert ls.returncode == 0, ls.stderr
    listing = json.loads(ls.stdout)
    metrics = {m["name"]: m for m in listing["metrics"]}
    assert list(metrics)[:7] == [
        "fid", "fvd", "fid3d-medicalnet", "fid-radimagenet", "intensity", "diversity", "memorisation"
    ]
    toy = metrics["toy-mean-hu"]
    assert toy["status"] == "ready (needs no weights)" and toy["keys"] == ["toy_mean_hu_gap"]
    assert toy["package"] == "ctbench-toy-metric" and toy["version"] == "0.2.0"
    assert metrics["toy-broken"]["status"].startswith("broken: ModuleNotFoundError")
    assert metrics["toy-plain"]["status"] == (
        "broken: breaks the Metric contract: <class 'ctbench_toy_metric.metric.PlainClass'> is not a subclass of "
        "ctbench.metrics.contract.Metric"
    )
    assert listing["shadowed_metrics"] == ["fid (ctbench_toy_metric.metric:MeanHUGap)"]
    assert metrics["fid"]["target"] == "ctbench.metrics.fid:TriPlanarFID"  # a plugin cannot take a built-in name
    text = _run(["ls"], toy_metric_path)
    assert text.returncode == 0 and "Traceback" not in text.stderr
    assert "takes a built-in metric's name" in text.stderr

    out = tmp_path / "results"
    args = ["evaluate", "-g", "noise", "--data", str(prepared_dir), "--n", "3", "--out", str(out)]
    ev = _run([*args, "--metrics", "toy-mean-hu,intensity", "--montage-volumes", "0"], toy_metric_path)
    assert ev.returncode == 0, ev.stderr
    (path,) = out.glob("noise-*.json")
    rec = json.loads(path.read_text())
    gap = rec["metrics"]["toy_mean_hu_gap"]["value"]
    assert gap > 0 and rec["metrics"]["intensity_w1"]["value"] > 0
    spec = rec["metric_specs"]["toy-mean-hu"]
    assert spec["plugin_package"] == "ctbench-toy-metric" and spec["plugin_version"] == "0.2.0"
    assert spec["keys"] == ["toy_mean_hu_gap"] and rec["metric_specs"]["intensity"]["plugin_package"] is None

    board = _run(["leaderboard", "build", str(out), "-o", str(tmp_path / "lb")], toy_metric_path)
    assert board.returncode == 0, board.stderr
    assert "toy_mean_hu_gap ↓" in (tmp_path / "lb" / "README.md").read_text()

    for name, reason in (("toy-broken", "ModuleNotFoundError"), ("toy-plain", "breaks the Metric contract")):
        bad = _run([*args, "--metrics", name], toy_metric_path)
        assert bad.returncode == 1 and "Traceback" not in bad.stderr
        (line,) = [x for x in bad.stderr.splitlines() if x.startswith("Error:")]
        assert f"metric '{name}' was requested but cannot run" in line and reason in line
