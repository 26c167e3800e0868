"""The device checks, in one run: what a session with a lent H100/H200 runs as is (no internet, no weights needed).

Steps, each in its own process with a time limit (the whole run stays under ~13 minutes):

* ``metrics``: ``bench_metrics.py`` on CUDA: tri-planar InceptionV3 extraction, slices/s of the naive loop, fp32
  eager, ``torch.compile`` and compiled bf16 (random BatchNorm-calibrated weights when the pinned file is absent),
  the bf16-vs-fp32 and compile-vs-eager feature errors and FID gaps;
* ``train``: ``bench_train.py --device cuda``: training-step time, peak memory and sampling time of the
  reference generator;
* ``pipeline``: ``bench_pipeline.py --device cuda --fvd``: FID (every slice) and FVD (PyTorch I3D) reference
  statistics of 256 gzip NIfTI volumes read from disk (writing them is serial, so 1,000 would spend the step's time
  on set-up; the throughput is per volume), end to end against the networks alone on the same volumes in memory
  (random weights unless installed).

A step that runs past its limit is killed with its whole process group and reported as timed out; the others
still run. The exit status is 0 only when every step succeeded.

It writes ``<out>/<step>.log`` (full output), ``<out>/metrics.json`` and ``<out>/summary.json``, and prints a final
table. ``--tiny`` (or ``CTBENCH_GPU_CHECKS_TINY=1``) runs the same steps on the CPU at toy size in well under a
minute (no compile: it costs ~80 s on the CPU); the test suite runs that.

    python benchmarks/gpu_checks.py --out gpu-checks              # on the GPU machine
    python benchmarks/gpu_checks.py --site .venv/lib/python3.11/site-packages --out $OUT
        # the lent machines lack torch-fidelity: carry .venv/lib/python3.11/site-packages/torch_fidelity there
    python benchmarks/gpu_checks.py --tiny --out /tmp/gpu-checks  # CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
NEEDED = {
    "metrics": ("torch", "torchvision", "numpy", "scipy", "torch_fidelity", "tqdm"),
    "train": ("torch", "torchvision", "numpy", "einops", "yaml", "tqdm", "lpips"),
    "pipeline": ("torch", "torchvision", "numpy", "scipy", "torch_fidelity", "nibabel", "tqdm"),
}
"""Modules each benchmark imports; a step whose modules are missing is reported as skipped, the others run."""


@dataclass
class Step:
    name: str
    argv: list[str]
    limit_s: int
    status: str = "not run"
    seconds: float = 0.0
    table: str = ""


def plan(tiny: bool, out: Path) -> list[Step]:
    """The steps and their time limits: full size on CUDA, or toy size on the CPU (``tiny``)."""
    metrics_json, pipeline_json = str(out / "metrics.json"), str(out / "pipeline.json")
    if tiny:
        return [
            Step("metrics", ["bench_metrics.py", "--device", "cpu", "--volumes", "1", "--slice-step", "64",
                             "--no-compile", "--bf16", "--repeats", "1", "--no-warmup", "--frechet-dim", "64",
                             "--json", metrics_json], 360),
            Step("train", ["bench_train.py", "--device", "cpu", "--tiny", "--repeats", "1"], 180),
            Step("pipeline", ["bench_pipeline.py", "--device", "cpu", "--volumes", "2", "--slice-step", "64",
                              "--batch", "1", "--json", pipeline_json], 180),
        ]  # fmt: skip
    # the Fréchet timing runs on the CPU and is measured elsewhere; two compilations (fp32, bf16) take ~1-3 minutes
    return [
        Step("metrics", ["bench_metrics.py", "--device", "cuda", "--volumes", "16", "--slice-step", "1", "--compile",
                         "--bf16", "--repeats", "3", "--frechet-dim", "0", "--json", metrics_json], 270),
        Step("train", ["bench_train.py", "--device", "cuda", "--repeats", "1"], 180),
        Step("pipeline", ["bench_pipeline.py", "--device", "cuda", "--volumes", "256", "--slice-step", "1", "--fvd",
                          "--batch", "16", "--workers", "8", "--json", pipeline_json], 300),
    ]  # fmt: skip


def missing_modules(step: str) -> list[str]:
    """Which of the modules ``step`` needs (:data:`NEEDED`) this interpreter cannot import (``--site`` included)."""
    import importlib.util

    return [m for m in NEEDED[step] if importlib.util.find_spec(m) is None]


def run_step(step: Step, out: Path, site: Path | None = None) -> None:
    """Run one benchmark in a child process under its time limit; its output goes to ``<out>/<name>.log``."""
    names = Path(tempfile.mkdtemp())  # a checkout that is not installed: generators/ imports as ctbench_generators
    (names / "ctbench_generators").symlink_to(REPO / "generators", target_is_directory=True)
    path = [str(REPO), str(site) if site else None, os.environ.get("PYTHONPATH"), str(names)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
    log = out / f"{step.name}.log"
    print(f"== {step.name}: {' '.join(step.argv)} (limit {step.limit_s} s)", flush=True)
    t = time.perf_counter()
    # own process group: on timeout the benchmark's worker processes (bench_train spawns some) die with it
    proc = subprocess.Popen([sys.executable, str(BENCH / step.argv[0]), *step.argv[1:]], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        text = proc.communicate(timeout=step.limit_s)[0]
        step.status = "ok" if proc.returncode == 0 else f"failed (rc {proc.returncode})"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        text = proc.communicate()[0]
        step.status = f"timed out after {step.limit_s} s"
    step.seconds = time.perf_counter() - t
    shutil.rmtree(names)
    log.write_text(text)
    step.table = "\n".join(line for line in text.splitlines() if line.startswith(("|", "ctbench ", "device ",
                                                                                    "vqgan-ddpm on")))
    print(step.table or text[-2000:], flush=True)
    print(f"== {step.name}: {step.status} in {step.seconds:.0f} s (log: {log})", flush=True)


def headline(out: Path) -> list[str]:
    """The figures the issues ask for: slices/s per method and the fast paths' FID gaps (``metrics.json``), and the
    end-to-end share of network-only throughput (``pipeline.json``)."""
    lines = []
    path = out / "metrics.json"
    if path.is_file():
        ext = json.loads(path.read_text())["extraction"]
        lines += [f"{r['method']}: {r['slices_per_s']:.1f} slices/s ({r['vs_naive']:.2f}x naive)" for r in ext["rows"]]
        lines += [f"{name} vs fp32: max relative feature error {g['max_rel']:.2e}, FID relative gap "
                  f"{g['fid_rel_gap']:.2e}" for name, g in ext["gaps"].items()]
    path = out / "pipeline.json"
    if path.is_file():
        pipe = json.loads(path.read_text())
        lines += [f"pipeline ({', '.join(pipe['metrics'])}, {pipe['volumes']} volumes), {r['variant']}: "
                  f"{r['volumes_per_s']:.2f} volumes/s, {r['ratio']:.2f} of network only" for r in pipe["rows"]]
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", default=os.environ.get("CTBENCH_GPU_CHECKS_TINY") == "1",
                   help="toy size on the CPU (also: CTBENCH_GPU_CHECKS_TINY=1)")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "gpu-checks"),
                   help="folder for logs and JSON (default: $OUT, else ./gpu-checks)")
    p.add_argument("--site", type=Path, default=None,
                   help="extra folder of Python packages (e.g. a carried copy of torch_fidelity), put on the path")
    args = p.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    site = args.site.resolve() if args.site else None
    if site:
        sys.path.insert(0, str(site))
    import torch

    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"device {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu'}", flush=True)
    if not args.tiny and not torch.cuda.is_available():
        p.error("no CUDA device visible to torch; use --tiny for the CPU smoke run")
    steps = plan(args.tiny, out)
    for s in steps:
        missing = missing_modules(s.name)
        if missing:
            s.status = f"skipped: cannot import {', '.join(missing)}"
            print(f"== {s.name}: {s.status}", flush=True)
        else:
            run_step(s, out, site)
    summary = {"tiny": args.tiny, "steps": [asdict(s) for s in steps], "headline": headline(out)}
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, out / "summary.json")
    print(f"\n| {'step':8s} | {'status':40s} | {'seconds':>7s} |")
    print(f"|{'-' * 10}|{'-' * 42}|{'-' * 9}|")
    for s in steps:
        print(f"| {s.name:8s} | {s.status:40s} | {s.seconds:7.0f} |")
    for line in summary["headline"]:
        print(f"  {line}")
    return 0 if all(s.status == "ok" for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
