"""Small-sample drift of FID, its jackknife correction and KID on phantom CT volumes, through the real FID path.

The second half of the bias study (docs/benchmarks.md; the first, ``bench_bias.py``, has Gaussian features with a
known distance). Procedural phantoms (:mod:`ctbench.data.synth`, NOT FLARE22) go through the FLARE22 protocol and
the tri-planar InceptionV3 features of ``fid`` (seeded random weights unless ``--weights``: the statistics do not
depend on the training), every ``--slice-step``-th slice per plane. Three pools with disjoint seeds: the real
reference, a generated pool from the same phantom law (``real-vs-real``) and a degraded pool (Gaussian blur of 1.5
voxels plus noise of sd 0.05 in [-1, 1]: ``real-vs-degraded``). Features are extracted once per volume; each draw
takes n volumes of a generated pool without replacement (seeded) and scores them against the whole reference pool
with ctbench's own :class:`~ctbench.stats.GroupedStats`, :func:`~ctbench.metrics.frechet.frechet_with_jackknife` and
:func:`~ctbench.metrics.kernel.kid` (K = 8, volume i → group i % K): ``fid_mean``, ``fid_mean_unbiased`` and
``kid_mean``, the means over the three planes. No exact value is known for phantoms: the last row of each case
scores the whole pool, and the table shows how each mean moves with n.

    python benchmarks/bench_bias_phantoms.py            # reference 128, pools 160, step 32, n 16-128, 8 draws
    python benchmarks/bench_bias_phantoms.py --device cuda --slice-step 1 --pool 512 --draws 50   # a GPU run
    python benchmarks/bench_bias_phantoms.py --tiny     # a few volumes, seconds (run by the tests)
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from ctbench.core.progress import progress_bar
from ctbench.data.pipeline import prepare_scan
from ctbench.data.scan_io import Scan
from ctbench.data.synth import phantom
from ctbench.extractors.inception import InceptionFeatures, write_random_weights
from ctbench.extractors.slicing import PLANES, plane_slices, quantise_uint8
from ctbench.metrics.feature import DEFAULT_GROUPS
from ctbench.metrics.fid import TriPlanarFID
from ctbench.metrics.frechet import FrechetReference, frechet_with_jackknife
from ctbench.metrics.kernel import kid
from ctbench.stats import GroupedStats

Features = dict[str, np.ndarray]
"""One volume's features per plane: ``(slices, 2048)`` float32."""


def phantom_volume(seed: int, degraded: bool) -> torch.Tensor:
    """A small phantom through the protocol: ``(1, D, H, W)`` float32 in [-1, 1]; degraded: blurred and noisy."""
    ph = phantom(seed, small=True)
    spacing = tuple(float(s) for s in np.abs(np.diag(ph.affine))[:3])
    scan = Scan(Path(f"phantom-{seed}"), ph.hu, ph.affine, ph.hu.shape, spacing, "RAS")
    v = prepare_scan(scan).volume
    if degraded:
        rng = np.random.default_rng([seed, 1])
        v = np.clip(ndimage.gaussian_filter(v, 1.5) + rng.normal(0, 0.05, v.shape), -1, 1).astype(np.float32)
    return torch.from_numpy(v)[None]


def calibration_slices(metric: TriPlanarFID, seeds: range) -> torch.Tensor:
    """uint8 slices ``(M, 1, h, w)`` of every plane of the phantoms ``seeds`` (seeds outside every pool), resized to
    a common 128×128 so they stack: the batch that sets the random network's BatchNorm statistics."""
    vols = quantise_uint8(torch.stack([phantom_volume(s, False) for s in seeds]))
    slices = [plane_slices(vols, plane, metric.slice_step)[0] for plane in PLANES]
    return torch.cat([torch.nn.functional.interpolate(x.float(), size=(128, 128)).round().to(torch.uint8)
                      for x in slices])


def pool_features(metric: TriPlanarFID, extractor: InceptionFeatures, seeds: range, degraded: bool,
                  label: str) -> list[Features]:
    """Per-volume features of the phantoms ``seeds``, extracted in batches of 4 volumes."""
    out: list[Features] = []
    for start in progress_bar(range(0, len(seeds), 4), desc=label, unit="batch"):
        vols = torch.stack([phantom_volume(s, degraded) for s in seeds[start : start + 4]])
        per_volume: list[Features] = [{} for _ in range(len(vols))]
        for rows in metric.features(extractor, vols):
            feats = rows.features.numpy()
            for i in range(len(vols)):
                per_volume[i][rows.stream] = feats[rows.volume.numpy() == i]
        out.extend(per_volume)
    return out


def score(volumes: list[Features], reference: dict[str, tuple[FrechetReference, np.ndarray]], groups: int,
          kid_subsets: int) -> dict[str, float]:
    """fid_mean, fid_mean_unbiased and kid_mean of ``volumes`` (volume i in group i % K) against the reference."""
    plain, corrected, kernel = [], [], []
    for plane in PLANES:
        stats = GroupedStats(volumes[0][plane].shape[1], groups)
        for i, v in enumerate(volumes):
            stats.update(v[plane], np.full(len(v[plane]), i))
        est = frechet_with_jackknife(stats, reference[plane][0])
        plain.append(est.value)
        corrected.append(est.unbiased() if est.unbiased() is not None else float("nan"))
        rows = np.concatenate([v[plane] for v in volumes]).astype(np.float16)
        index = np.concatenate([np.full(len(v[plane]), i) for i, v in enumerate(volumes)])
        kernel.append(kid(rows, index, reference[plane][1], groups, subsets=kid_subsets).value)
    return {"fid": float(np.mean(plain)), "corrected": float(np.mean(corrected)), "kid": float(np.mean(kernel))}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", type=int, default=None, help="real reference volumes (default 128; --tiny 4)")
    p.add_argument("--pool", type=int, default=None, help="volumes per generated pool (default 160; --tiny 4)")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="n per draw (default 16 32 64 128)")
    p.add_argument("--draws", type=int, default=None, help="seeded draws per n (default 8; --tiny 2)")
    p.add_argument("--slice-step", type=int, default=None, help="every k-th slice per plane (default 32)")
    p.add_argument("--groups", type=int, default=DEFAULT_GROUPS)
    p.add_argument("--kid-subsets", type=int, default=10, help="KID subsets averaged above 1000 rows a side")
    p.add_argument("--weights", help="an InceptionV3 .pth in torch-fidelity's layout (default: seeded random)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true", help="a few volumes: seconds, for the tests")
    p.add_argument("--json", help="also write the rows to this file")
    args = p.parse_args(argv)
    tiny = args.tiny
    n_ref, n_pool = args.reference or (4 if tiny else 128), args.pool or (4 if tiny else 160)
    sizes = args.sizes or ((2, 3) if tiny else (16, 32, 64, 128))
    draws, step = args.draws or (2 if tiny else 8), args.slice_step or 32
    if max(sizes) > n_pool:
        p.error(f"--sizes up to {max(sizes)} need --pool of at least that many volumes (got {n_pool})")

    warnings.filterwarnings("ignore", message="only .* samples for .*-d features")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        metric = TriPlanarFID(slice_step=step)
        base = 1_000_000 * (args.seed + 1)
        weights = Path(args.weights) if args.weights else write_random_weights(
            Path(tmp) / "inception.pth", calibration=calibration_slices(metric, range(base - 8, base)))
        extractor = InceptionFeatures(weights, torch.device(args.device))
        real = pool_features(metric, extractor, range(base, base + n_ref), False, "reference")
        like, degraded = base + n_ref, base + n_ref + n_pool  # first seeds of the two generated pools
        pools = {
            "real-vs-real": pool_features(metric, extractor, range(like, like + n_pool), False, "real-like pool"),
            "real-vs-degraded": pool_features(metric, extractor, range(degraded, degraded + n_pool), True,
                                              "degraded pool"),
        }
    reference = {}
    for plane in PLANES:
        stats = GroupedStats(real[0][plane].shape[1], 1)
        for v in real:
            stats.update(v[plane], np.zeros(len(v[plane]), int))
        total = stats.total()
        rows = np.concatenate([v[plane] for v in real]).astype(np.float16)
        reference[plane] = (FrechetReference(total.mean, total.cov, rank=total.count - 1), rows)
    extracted = time.perf_counter() - t0

    rows_out = []
    rng = np.random.default_rng(args.seed)
    for case, pool in pools.items():
        for n in (*sizes, len(pool)):
            picks = [np.arange(len(pool))] if n == len(pool) else [rng.choice(len(pool), n, replace=False)
                                                                   for _ in range(draws)]
            cells = [score([pool[i] for i in pick], reference, args.groups, args.kid_subsets) for pick in picks]
            row = {"case": case, "n": n, "draws": len(picks), "slices_per_volume": sum(
                len(v) for v in pool[0].values())}
            for key in ("fid", "corrected", "kid"):
                vals = np.array([c[key] for c in cells])
                row[f"{key}_mean"] = float(vals.mean())
                row[f"{key}_sd"] = float(vals.std(ddof=1)) if len(vals) > 1 else None
            rows_out.append(row)

    print(f"# bench_bias_phantoms: phantoms (NOT FLARE22), reference {n_ref} volumes, pools of {n_pool}, slice step "
          f"{step}, K={args.groups}, {draws} seeded draws per n (the last row of a case: the whole pool); weights "
          f"{'given' if args.weights else 'seeded random'}; {args.device}, "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}; features {extracted:.0f} s, "
          f"total {time.perf_counter() - t0:.0f} s")
    print()
    print("| case | n | fid_mean | sd | fid_mean_unbiased | sd | kid_mean | sd |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")

    def sd(v: float | None) -> str:
        return "—" if v is None else f"{v:.3g}"

    for r in rows_out:
        print(f"| {r['case']} | {r['n']}{' (pool)' if r['draws'] == 1 else ''} | {r['fid_mean']:.4g} | "
              f"{sd(r['fid_sd'])} | {r['corrected_mean']:.4g} | {sd(r['corrected_sd'])} | {r['kid_mean']:.4g} | "
              f"{sd(r['kid_sd'])} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows_out, indent=2))
    return rows_out


if __name__ == "__main__":
    main()
