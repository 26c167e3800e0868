"""Throughput of tri-planar InceptionV3 feature extraction, and of the Fréchet distance, against naive baselines.

Extraction: slices per second for the three planes of a batch of volumes,

* ``naive``: what a user would write: one plane at a time, each slice resized on its own with
  ``F.interpolate`` to 299×299, scaled to [0, 1] → [-1, 1], through torchvision's InceptionV3 in batches;
* ``ctbench``: :class:`ctbench.metrics.fid.TriPlanarFID`'s path (uint8 quantisation, all slices of a plane
  batched, torch-fidelity's network with its TF1 resize), fp32;
* ``ctbench compile`` (``torch.compile``) and ``ctbench [compile] bf16`` (bf16 autocast): on CUDA by default
  (channels-last), on the CPU with ``--compile`` / ``--bf16``; for each, the largest relative feature error against
  fp32 and the FID between the two halves of the slices from its features against the same from fp32 features.

Throughput does not depend on the weights' values: the pinned weights are used when present, random ones
otherwise. Fréchet: the eigenvalue method of :mod:`ctbench.metrics.frechet` against pytorch-fid's
``scipy.linalg.sqrtm`` recipe on the same covariances.

    python benchmarks/bench_metrics.py                 # CPU: 1 volume, every 8th slice, 2 alternating repeats
    python benchmarks/bench_metrics.py --compile --bf16    # CPU, with the compiled and bf16 paths
    python benchmarks/bench_metrics.py --device cuda --volumes 16 --slice-step 1 --json metrics.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def random_weights(path: Path) -> Path:
    """A random InceptionV3 state dict in torch-fidelity's format (torchvision's Inception3 has the same names).

    BatchNorm running statistics are set from one batch of random images, so activations (and the bf16 error)
    stay in a realistic range instead of growing layer after layer.
    """
    import torchvision

    torch.manual_seed(1234)
    net = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=True)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the calibration batch
    net.train()
    with torch.no_grad():
        net(torch.rand(4, 3, 299, 299) * 2 - 1)
    torch.save(net.state_dict(), path)
    return path


def weights_path(tmp: Path) -> tuple[Path, str]:
    from ctbench.weights import locate

    found = locate("inception-v3-compat")
    return (found, "pinned file") if found else (random_weights(tmp / "random.pth"), "random")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def naive_loop(volumes: torch.Tensor, step: int, device: torch.device, batch: int) -> torch.Tensor:
    """One plane at a time, one resize per slice, torchvision InceptionV3 (random weights; speed only)."""
    import torchvision

    net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False).eval().to(device)
    net.fc = torch.nn.Identity()
    feats = []
    with torch.inference_mode():
        for plane_dim in (2, 3, 4):  # xy, xz, yz
            for v in volumes:
                slices = [s for s in v[0].movedim(plane_dim - 2, 0)[::step]]
                resized = [F.interpolate(((s + 1) / 2)[None, None], size=(299, 299), mode="bilinear") for s in slices]
                x = torch.cat(resized).repeat(1, 3, 1, 1) * 2 - 1
                for chunk in x.split(batch):
                    feats.append(net(chunk.to(device)).cpu())
    return torch.cat(feats)


def ours(volumes: torch.Tensor, step: int, extractor) -> torch.Tensor:
    from ctbench.extractors.slicing import PLANES, plane_slices, quantise_uint8

    u8 = quantise_uint8(volumes)
    return torch.cat([extractor(plane_slices(u8, p, step)[0]) for p in PLANES])


def timed(fn, device: torch.device) -> tuple[float, torch.Tensor]:
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t, out


def fid_gap(fp32: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    """How far ``other`` features are from ``fp32`` ones of the same slices ``(M, 2048)``.

    ``max_rel``: largest per-slice relative error; ``fid_fp32`` / ``fid_other``: the Fréchet distance between the
    first and the second half of the slices computed from each; ``fid_rel_gap``: their relative difference.
    """
    from ctbench.metrics.frechet import frechet_distance

    def fd(f: torch.Tensor) -> float:
        a, b = f[: len(f) // 2].double().numpy(), f[len(f) // 2 :].double().numpy()
        return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))

    a, b = fp32.double(), other.double()
    ref, val = fd(fp32), fd(other)
    return {"max_rel": float(((a - b).norm(dim=1) / a.norm(dim=1)).max()), "fid_fp32": ref, "fid_other": val,
            "fid_rel_gap": abs(val - ref) / ref}


def bench_extraction(args: argparse.Namespace) -> dict:
    """Time every method on the same volumes (alternating, best of ``--repeats``); print and return the table."""
    from ctbench.extractors.inception import InceptionFeatures

    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    vols = F.interpolate(torch.rand(args.volumes, 1, 8, 16, 16, generator=g), size=(64, 128, 128)) * 2 - 1
    n_slices = args.volumes * (len(range(0, 64, args.slice_step)) + 2 * len(range(0, 128, args.slice_step)))
    cl = device.type == "cuda"  # channels-last, as TriPlanarFID uses it on CUDA
    with tempfile.TemporaryDirectory() as tmp:
        path, kind = weights_path(Path(tmp))
        runs = [("naive (per-slice resize, torchvision)", lambda: naive_loop(vols, args.slice_step, device, 32))]
        fp32 = InceptionFeatures(path, device, args.batch_size, channels_last=cl)
        runs.append(("ctbench fp32", lambda: ours(vols, args.slice_step, fp32)))
        if args.compile:
            comp = InceptionFeatures(path, device, args.batch_size, compile=True, channels_last=cl)
            runs.append(("ctbench compile", lambda: ours(vols, args.slice_step, comp)))
        if args.bf16:
            bf16 = InceptionFeatures(path, device, args.batch_size, compile=args.compile, channels_last=cl, bf16=True)
            label = f"ctbench {'compile ' if args.compile else ''}bf16"
            runs.append((label, lambda: ours(vols, args.slice_step, bf16)))
        print(f"device {device}, {args.volumes} volume(s), slice step {args.slice_step}: {n_slices} slices; "
              f"weights: {kind}; torch {torch.__version__}, threads {torch.get_num_threads()}", flush=True)
        results: dict[str, tuple[float, torch.Tensor]] = {}
        for _ in range(args.repeats):  # methods alternate, each keeps its best time (shared machines are noisy)
            for name, fn in runs:
                if args.warmup and name not in results:
                    timed(fn, device)  # compilation, cuDNN autotuning, allocator
                sec, out = timed(fn, device)
                if name not in results or sec < results[name][0]:
                    results[name] = (sec, out)
    base = n_slices / results[runs[0][0]][0]
    rows = [{"method": name, "seconds": sec, "slices_per_s": n_slices / sec, "vs_naive": n_slices / sec / base}
            for name, (sec, _) in results.items()]
    print(f"| {'method':40s} | {'seconds':>8s} | {'slices/s':>9s} | {'vs naive':>8s} |")
    print(f"|{'-' * 42}|{'-' * 10}|{'-' * 11}|{'-' * 10}|")
    for r in rows:
        print(f"| {r['method']:40s} | {r['seconds']:8.2f} | {r['slices_per_s']:9.1f} | {r['vs_naive']:7.2f}x |")
    report: dict = {"device": str(device), "weights": kind, "slices": n_slices, "rows": rows, "gaps": {}}
    fp32_feats = results["ctbench fp32"][1]
    for name, (_, feats) in results.items():
        if name.startswith("ctbench") and name != "ctbench fp32":
            gap = report["gaps"][name] = fid_gap(fp32_feats, feats)
            print(f"{name} vs fp32: max relative feature error {gap['max_rel']:.2e}; FID between the two halves of the "
                  f"slices {gap['fid_other']:.4f} vs {gap['fid_fp32']:.4f} in fp32 (relative gap "
                  f"{gap['fid_rel_gap']:.2e})")
    return report


def bench_frechet(dim: int) -> dict:
    from pytorch_fid.fid_score import calculate_frechet_distance

    from ctbench.metrics.frechet import frechet_distance

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(dim + 500, dim)), rng.normal(size=(dim + 500, dim)) * 1.1 + 0.1
    mu1, s1, mu2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    t = time.perf_counter()
    ref = calculate_frechet_distance(mu1, s1, mu2, s2)
    t_ref = time.perf_counter() - t
    t = time.perf_counter()
    val = frechet_distance(mu1, s1, mu2, s2)
    t_ours = time.perf_counter() - t
    print(f"\nFréchet distance at {dim}-d (float64):")
    print(f"| {'method':32s} | {'seconds':>8s} | {'value':>12s} | {'speed-up':>8s} |")
    print(f"|{'-' * 34}|{'-' * 10}|{'-' * 14}|{'-' * 10}|")
    print(f"| {'pytorch-fid (scipy sqrtm)':32s} | {t_ref:8.2f} | {ref:12.6f} | {1.0:7.2f}x |")
    print(f"| {'ctbench (eigendecompositions)':32s} | {t_ours:8.2f} | {val:12.6f} | {t_ref / t_ours:7.2f}x |")
    return {"dim": dim, "scipy_s": t_ref, "ctbench_s": t_ours, "scipy_value": ref, "ctbench_value": val}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--volumes", type=int, default=None, help="default: 1 on CPU, 16 on CUDA")
    p.add_argument("--slice-step", type=int, default=None, help="every k-th slice (default: 8 on CPU, 1 on CUDA)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="also time torch.compile (default: on CUDA only; on the CPU it needs gcc)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="also time bf16 autocast and report its FID gap to fp32 (default: on CUDA only)")
    p.add_argument("--no-warmup", dest="warmup", action="store_false")
    p.add_argument("--repeats", type=int, default=2, help="alternating timed runs per method; the best is kept")
    p.add_argument("--frechet-dim", type=int, default=2048, help="0 skips the Fréchet comparison")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = p.parse_args()
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is visible to torch")
    args.volumes = args.volumes or (16 if cuda else 1)
    args.slice_step = args.slice_step or (1 if cuda else 8)
    args.compile = cuda if args.compile is None else args.compile
    args.bf16 = cuda if args.bf16 is None else args.bf16
    report = {"extraction": bench_extraction(args)}
    if args.frechet_dim:
        report["frechet"] = bench_frechet(args.frechet_dim)
    if args.json:
        from ctbench.core.atomic import write_text_atomic

        write_text_atomic(args.json, json.dumps(report, indent=2))

if __name__ == "__main__":
    main()
