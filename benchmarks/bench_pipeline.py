"""End-to-end feature extraction from prepared volumes on disk against the network alone, measured in the same run.

N prepared volumes (gzip NIfTI, 64×128×128, written here from smooth noise) go through the real-statistics path of
an evaluation: :func:`ctbench.data.streaming.case_batches` reads and decodes them (0 or ``--workers`` threads
reading ahead), and every batch goes through the FID (and with ``--fvd``, FVD on the PyTorch I3D) accumulators:
quantisation, slicing, resizing, the networks, float64 statistics. Network-only is the same accumulators fed the
same volumes already in memory. The ratio end-to-end / network-only is the share of the time the networks are
busy (goal: ≥ 0.8).

Weights: the installed ones when present, random ones otherwise (throughput does not depend on the values).

    python benchmarks/bench_pipeline.py                              # CPU: 4 volumes, FID every 8th slice
    python benchmarks/bench_pipeline.py --volumes 8 --fvd
    python benchmarks/bench_pipeline.py --device cuda --volumes 256 --slice-step 1 --fvd --json pipeline.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def install_weights(tmp: Path, fvd: bool) -> None:
    """Random weights into a private cache unless the pinned ones are present."""
    sys.path.insert(0, str(HERE))
    from bench_i3d import random_converted
    from bench_metrics import random_weights

    from ctbench.weights import import_weights, locate

    if locate("inception-v3-compat") is None:
        import_weights(random_weights(tmp / "inception.pth"), "inception-v3-compat", unverified_ok=True)
    if fvd and locate("i3d-kinetics-400-torch") is None:
        import_weights(random_converted(tmp / "i3d.pt"), "i3d-kinetics-400-torch", unverified_ok=True)


def write_cases(folder: Path, n: int) -> list:
    from ctbench.data.prepared import PreparedCase, write_volume

    cases = []
    for i in range(n):
        coarse = torch.rand(1, 1, 8, 16, 16, generator=torch.Generator().manual_seed(i)) * 2 - 1
        volume = torch.nn.functional.interpolate(coarse, size=(64, 128, 128), mode="trilinear")[0, 0]
        path = write_volume(folder / f"case_{i:04d}.nii.gz", volume, hu_range=(-1000.0, 1000.0))
        cases.append(PreparedCase(f"case_{i:04d}", path, "test", (-1000.0, 1000.0)))
    return cases


def run(metrics: dict, batches, device: torch.device) -> float:
    """Seconds to feed ``batches`` of ``(indices, volumes)`` through fresh accumulators of every metric."""
    accumulators = {name: m.statistics_accumulator(device, unverified_ok=True) for name, m in metrics.items()}
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for idx, volumes in batches:
        for acc in accumulators.values():
            acc.update(volumes, indices=idx)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--volumes", type=int, default=4)
    parser.add_argument("--slice-step", type=int, default=None, help="FID: every k-th slice (default 8 CPU, 1 CUDA)")
    parser.add_argument("--fvd", action="store_true", help="also FVD on the PyTorch I3D")
    parser.add_argument("--workers", type=int, default=2, help="reading threads of the threaded variant")
    parser.add_argument("--batch", type=int, default=4, help="volumes per read batch")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from ctbench.data.streaming import case_batches
    from ctbench.metrics import get_metric

    device = torch.device(args.device)
    step = args.slice_step or (1 if device.type == "cuda" else 8)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("CTBENCH_CACHE", str(Path(tmp) / "cache"))
        install_weights(Path(tmp), args.fvd)
        cases = write_cases(Path(tmp) / "cases", args.volumes)
        metrics = {"fid": get_metric("fid", groups=1, slice_step=step)}
        if args.fvd:
            metrics["fvd"] = get_metric("fvd", groups=1, backend="torch")
        in_memory = [(idx, v) for idx, _, v in case_batches(cases, args.batch, workers=0)]
        run(metrics, in_memory[:1], device)  # warm-up: weights loaded, kernels chosen
        network = run(metrics, in_memory, device)
        rows = [{"variant": "network only (volumes in memory)", "seconds": network}]
        pin = device.type == "cuda"
        for workers in (0, args.workers):
            batches = ((idx, v) for idx, _, v in case_batches(cases, args.batch, workers=workers, pin_memory=pin))
            rows.append({"variant": f"end to end, {workers} reading threads", "seconds": run(metrics, batches, device)})
    print(f"device {device}, torch {torch.__version__}, {args.volumes} volumes, metrics {', '.join(metrics)}, "
          f"FID slice step {step}")
    print("| variant | volumes/s | ratio to network only |")
    print("|---|---:|---:|")
    for r in rows:
        r["volumes_per_s"] = args.volumes / r["seconds"]
        r["ratio"] = network / r["seconds"]
        print(f"| {r['variant']} | {r['volumes_per_s']:.2f} | {r['ratio']:.2f} |")
    if args.json:
        info = {"device": str(device), "torch": torch.__version__, "volumes": args.volumes, "slice_step": step}
        args.json.write_text(json.dumps({**info, "metrics": list(metrics), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
