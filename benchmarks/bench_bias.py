"""Small-sample bias of the Fréchet distance, its grouped-jackknife correction, and KID, on Gaussian features.

The real side is a fixed Gaussian given by its population statistics (as ctbench holds the reference statistics
fixed); the generated side is a set of n seeded draws from a second Gaussian, accumulated in ctbench's own
:class:`~ctbench.stats.GroupedStats` (K = 8 groups, sample i → group i % K) and scored by
:func:`~ctbench.metrics.frechet.frechet_with_jackknife`, so every number goes through the code that scores FID and
FVD. Two cases, with the exact distance known in closed form:

* ``real-vs-real``: the generated law is the real one (exact distance 0);
* ``real-vs-degraded``: a mean shift and a mixed-in covariance (exact distance 0.91 at d = 64).

For each n the script repeats ``--draws`` seeded draws and prints, for plain FID and the bias-corrected value
(``K·θ − (K−1)·mean θ_−k``), the mean, the standard deviation over draws, and how often the 95% interval holds the
exact distance. KID (:func:`~ctbench.metrics.kernel.kid`, the same grouped jackknife) is scored against a fixed
real *sample* of ``--real`` rows drawn once per case (a kernel distance needs rows, not statistics); its exact
value is the population MMD² of the two Gaussians under the cubic kernel, in closed form
(:func:`population_mmd2`). Above 1000 rows a side KID averages ``--kid-subsets`` seeded subsets of 1000.
Features: d = 64 by default (``--dim``); at FID's d = 2048 the same pattern needs ~32× the N.
The warning for sets smaller than d is silenced here: those rows show what it warns of.

    python benchmarks/bench_bias.py               # d = 64, n = 16 … 2048, 200 draws per cell (2-3 minutes on a CPU)
    python benchmarks/bench_bias.py --quick       # d = 16, 3 sizes, 20 draws (seconds; run by the tests)
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings

import numpy as np
import torch

from ctbench.metrics.feature import DEFAULT_GROUPS
from ctbench.metrics.frechet import FrechetReference, frechet_with_jackknife
from ctbench.metrics.kernel import kid
from ctbench.stats import GroupedStats

SIZES = (16, 32, 64, 128, 512, 2048)
QUICK_SIZES = (16, 128, 512)


def gaussian_case(
    dim: int, degraded: bool, rng: np.random.Generator
) -> tuple[FrechetReference, np.ndarray, np.ndarray]:
    """(fixed real side, generated mean ``(dim,)``, generated covariance ``(dim, dim)``); eigenvalues in [0.5, 2]."""
    q = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
    s_real = q @ np.diag(rng.uniform(0.5, 2.0, dim)) @ q.T
    ref = FrechetReference(np.zeros(dim), s_real)
    if not degraded:
        return ref, np.zeros(dim), s_real
    q2 = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
    s_other = q2 @ np.diag(rng.uniform(0.5, 2.0, dim)) @ q2.T
    return ref, np.full(dim, 0.08), 0.7 * s_real + 0.3 * s_other


def _cubic_moment(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """``E[k(x, y)]`` for independent ``x ~ N(mu1, s1)``, ``y ~ N(mu2, s2)`` and ``k = (x·y/d + 1)³``.

    With ``t = x·y``: ``E t = mu1·mu2``, ``E t² = tr(M1 M2)`` (``M = S + mu muᵀ``), and, given y, t is normal with
    mean ``mu1·y`` and variance ``yᵀ S1 y``, so ``E t³ = E[(mu1·y)³] + 3 E[(mu1·y)(yᵀ S1 y)]``, both Gaussian moments.
    """
    d = mu1.size
    a_mu = mu1 @ mu2
    t1 = a_mu
    t2 = np.trace((s1 + np.outer(mu1, mu1)) @ (s2 + np.outer(mu2, mu2)))
    t3 = a_mu**3 + 3 * a_mu * (mu1 @ s2 @ mu1) + 3 * (a_mu * (mu2 @ s1 @ mu2 + np.trace(s1 @ s2))
                                                     + 2 * mu1 @ s2 @ s1 @ mu2)
    return float(t3 / d**3 + 3 * t2 / d**2 + 3 * t1 / d + 1)


def population_mmd2(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """Squared MMD of N(mu1, s1) and N(mu2, s2) under the cubic polynomial kernel: the value KID estimates."""
    return (_cubic_moment(mu1, s1, mu1, s1) + _cubic_moment(mu2, s2, mu2, s2)
            - 2 * _cubic_moment(mu1, s1, mu2, s2))


def measure(
    ref, mu, sigma, real_rows: np.ndarray, n: int, draws: int, groups: int, kid_subsets: int,
    rng: np.random.Generator,
) -> dict[str, float]:
    """Mean, sd and 95%-interval coverage of plain FID, corrected FID and KID over ``draws`` sets of n samples."""
    exact = ref.distance(mu, sigma)
    exact_kid = population_mmd2(mu, sigma, ref.mu, ref.sigma)
    chol = np.linalg.cholesky(sigma)
    plain, corrected, kernel, plain_in, corrected_in, kernel_in = [], [], [], [], [], []
    for _ in range(draws):
        rows = mu + rng.normal(size=(n, mu.size)) @ chol.T
        fake = GroupedStats(mu.size, groups)
        fake.update(rows, np.arange(n))
        k = kid(rows, np.arange(n), real_rows, groups, subsets=kid_subsets)
        kernel.append(k.value)
        lo, hi = k.interval()
        kernel_in.append(lo <= exact_kid <= hi)
        est = frechet_with_jackknife(fake, ref)
        plain.append(est.value)
        corrected.append(est.unbiased())
        lo, hi = est.interval()
        plain_in.append(lo <= exact <= hi)
        lo, hi = est.unbiased_interval()
        corrected_in.append(lo <= exact <= hi)
    return {
        "exact": exact,
        "plain_mean": float(np.mean(plain)),
        "plain_sd": float(np.std(plain, ddof=1)),
        "plain_coverage": float(np.mean(plain_in)),
        "corrected_mean": float(np.mean(corrected)),
        "corrected_sd": float(np.std(corrected, ddof=1)),
        "corrected_coverage": float(np.mean(corrected_in)),
        "kid_exact": exact_kid,
        "kid_mean": float(np.mean(kernel)),
        "kid_sd": float(np.std(kernel, ddof=1)),
        "kid_coverage": float(np.mean(kernel_in)),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, default=None, help="feature dimension (default 64; --quick: 16)")
    parser.add_argument("--draws", type=int, default=None, help="seeded draws per cell (default 200; --quick: 20)")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help=f"set sizes n (default {SIZES})")
    parser.add_argument("--groups", type=int, default=DEFAULT_GROUPS, help="jackknife groups K (ctbench's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real", type=int, default=None,
                        help="rows of the fixed real sample KID is scored against (default 1000; --quick: 256)")
    parser.add_argument("--kid-subsets", type=int, default=10, help="KID subsets averaged above 1000 rows a side")
    parser.add_argument("--quick", action="store_true", help="d = 16, n = 16, 128, 512, 20 draws: seconds")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    dim = args.dim or (16 if args.quick else 64)
    draws = args.draws or (20 if args.quick else 200)
    sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)
    args.real = args.real or (256 if args.quick else 1000)

    warnings.filterwarnings("ignore", message="only .* samples for .*-d features")
    t0 = time.perf_counter()
    rows = []
    for case, degraded in (("real-vs-real", False), ("real-vs-degraded", True)):
        rng = np.random.default_rng([args.seed, int(degraded)])
        ref, mu, sigma = gaussian_case(dim, degraded, rng)
        real_rows = rng.normal(size=(args.real, dim)) @ np.linalg.cholesky(ref.sigma).T + ref.mu
        for n in sizes:
            cell = measure(ref, mu, sigma, real_rows, n, draws, args.groups, args.kid_subsets, rng)
            rows.append({"case": case, "dim": dim, "n": n, **cell})
    print(f"# bench_bias: Gaussian features d={dim}, K={args.groups} groups, {draws} seeded draws per row, "
          f"real side exact (KID: {args.real} real rows); {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, numpy {np.__version__}, {time.perf_counter() - t0:.1f} s")  # fmt: skip
    print()
    print("| case | n | exact | FID mean | FID sd | FID 95% cover "
          "| corrected mean | corrected sd | corrected 95% cover "
          "| KID exact | KID mean | KID sd | KID 95% cover |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['case']} | {r['n']} | {r['exact']:.3f} | {r['plain_mean']:.3f} | {r['plain_sd']:.3f} | "
              f"{r['plain_coverage']:.0%} | {r['corrected_mean']:.3f} | {r['corrected_sd']:.3f} | "
              f"{r['corrected_coverage']:.0%} | {r['kid_exact']:.4f} | {r['kid_mean']:.4f} | {r['kid_sd']:.4f} | "
              f"{r['kid_coverage']:.0%} |")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
