"""The Fréchet distance between two Gaussians, in float64, and its grouped-jackknife interval.

``d² = |mu1 - mu2|² + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2})``.

``tr((S1 S2)^{1/2})`` is the sum of square roots of the eigenvalues of ``S1 S2``, which equal those of the
symmetric positive semi-definite ``Pᵀ S1 P`` with ``S2 = P Pᵀ`` (``S2 = V diag(w) Vᵀ``, ``P = V_r diag(√w_r)``
over the r non-zero eigenvalues). So one symmetric eigendecomposition of the fixed side and one of an r×r
matrix per distance replace the iterative ``scipy.linalg.sqrtm`` of the reference implementations, and
singular covariances (N < dim) need no ``eps`` offset: round-off eigenvalues (below ``d · eps · max``) are set
to zero. When the fixed side's rank is known to be small (a covariance of n samples has rank at most n − 1), its
factor comes from the ``(n + 8)``-dimensional subspace ``Σ Ω`` spans (a seeded Gaussian ``Ω``): that subspace holds the
whole range of ``Σ``, so the factor is the same to round-off, for ``O(d² n)`` instead of ``O(d³)`` operations.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ctbench.stats import FeatureStats, GroupedStats


def _clip_eigenvalues(w: np.ndarray, dim: int | None = None) -> np.ndarray:
    """Eigenvalues of a PSD matrix with round-off removed: those below ``d · eps · max|w|`` become 0.

    ``dim``: the matrix size d (default ``w.size``; give it when ``w`` holds only some of the eigenvalues). Without
    this, the ~1e-14 round-off eigenvalues of a singular matrix each add ~1e-7 after the square root.
    """
    tol = (dim or w.size) * np.finfo(np.float64).eps * max(float(np.abs(w).max(initial=0.0)), 1e-300)
    return np.where(w > tol, w, 0.0)


OVERSAMPLING = 8
"""Extra directions of the subspace search in :func:`psd_factor` beyond the stated rank bound."""


def psd_factor(sigma: np.ndarray, rank: int | None = None) -> np.ndarray:
    """``P`` ``(d, r)`` with ``P Pᵀ = sigma`` for a PSD ``sigma`` ``(d, d)`` of rank r: ``P = V_r diag(√w_r)``.

    Only eigenvectors with non-zero (after round-off clipping) eigenvalues are kept, so ``Pᵀ S P`` is r×r.
    ``rank``: an upper bound on r (n − 1 for the covariance of n samples). When ``rank + 8`` is below a quarter of
    d, the eigendecomposition runs on ``Qᵀ sigma Q`` with ``Q`` an orthonormal basis of ``sigma Ω`` (``Ω`` d×(rank+8),
    seeded Gaussian), which contains the range of ``sigma``.
    """
    sigma = np.asarray(sigma, np.float64)
    sigma = (sigma + sigma.T) / 2
    d = sigma.shape[0]
    if rank is not None and rank + OVERSAMPLING < d // 4:
        omega = np.random.default_rng(0).standard_normal((d, max(rank, 0) + OVERSAMPLING))
        q, _ = np.linalg.qr(sigma @ omega)
        b = q.T @ sigma @ q
        w, u = np.linalg.eigh((b + b.T) / 2)
        v = q @ u
    else:
        w, v = np.linalg.eigh(sigma)
    w = _clip_eigenvalues(w, d)
    keep = w > 0
    return v[:, keep] * np.sqrt(w[keep])


def trace_sqrt_product(sigma1: np.ndarray, factor2: np.ndarray) -> float:
    """``tr((S1 S2)^{1/2})`` given ``S1`` and a factor ``P`` of ``S2 = P Pᵀ``.

    The eigenvalues of ``S1 S2`` are those of ``Pᵀ S1 P`` (r×r, symmetric PSD), plus zeros.
    """
    m = factor2.T @ np.asarray(sigma1, np.float64) @ factor2
    w = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(_clip_eigenvalues(w)).sum())


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, rank2: int | None = None
) -> float:
    """Squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2); means ``(d,)``, covariances ``(d, d)``.

    ``rank2``: an upper bound on the rank of ``sigma2`` if known (n − 1 for n samples; see :func:`psd_factor`).
    """
    return FrechetReference(mu2, sigma2, rank2).distance(mu1, sigma1)


class FrechetReference:
    """One fixed side (the real set) with its covariance factor computed once, for repeated distances.

    ``rank``: an upper bound on the rank of ``sigma`` if known (n − 1 for n samples; see :func:`psd_factor`).
    """

    def __init__(self, mu: np.ndarray, sigma: np.ndarray, rank: int | None = None):
        self.mu = np.asarray(mu, np.float64)
        self.sigma = np.asarray(sigma, np.float64)
        if self.mu.ndim != 1 or self.sigma.shape != (self.mu.size, self.mu.size):
            raise ValueError(f"mean must be (d,) and covariance (d, d); got {self.mu.shape} and {self.sigma.shape}")
        self.factor = psd_factor(self.sigma, rank)
        self.trace = float(np.trace(self.sigma))

    def distance(self, mu: np.ndarray, sigma: np.ndarray) -> float:
        mu = np.asarray(mu, np.float64)
        sigma = np.asarray(sigma, np.float64)
        if mu.shape != self.mu.shape or sigma.shape != self.sigma.shape:
            raise ValueError(f"shapes differ: {mu.shape}/{sigma.shape} vs {self.mu.shape}/{self.sigma.shape}")
        diff = mu - self.mu
        d = diff @ diff + np.trace(sigma) + self.trace - 2 * trace_sqrt_product(sigma, self.factor)
        return float(max(d, 0.0))

    def distance_stats(self, stats: FeatureStats) -> float:
        return self.distance(stats.mean, stats.cov)


Z95 = 1.959964
"""Two-sided 95% quantile of the standard normal distribution."""


@dataclass
class FrechetEstimate:
    """A Fréchet distance with its grouped-jackknife replicates (empty when fewer than 2 groups hold data)."""

    value: float
    n: int
    replicates: list[float]

    def interval(self, z: float = Z95) -> tuple[float, float] | None:
        """Normal 95% interval ``value ± z·se`` with the delete-a-group jackknife standard error."""
        se = jackknife_se(self.replicates)
        return None if se is None else (max(self.value - z * se, 0.0), self.value + z * se)

    def unbiased(self) -> float | None:
        """Jackknife bias-corrected distance ``K·θ − (K−1)·mean(θ_−k)`` over the K replicates; None for K < 2.

        The plug-in distance is biased upwards by a term close to ``a / n`` for a set of n samples; a replicate
        (n·(K−1)/K samples with equal groups) carries ``a·K / ((K−1)·n)``, so the combination cancels the
        ``1/n`` term. It removes the generated side's bias only (the real side is held fixed) and is not
        clipped: a value below 0 means the sets are indistinguishable at this N.
        """
        k = len(self.replicates)
        if k < 2:
            return None
        return float(k * self.value - (k - 1) * np.mean(self.replicates))

    def unbiased_interval(self, z: float = Z95) -> tuple[float, float] | None:
        """Normal 95% interval ``unbiased ± z·se`` (the same jackknife standard error), not clipped at 0."""
        centre, se = self.unbiased(), jackknife_se(self.replicates)
        return None if centre is None or se is None else (centre - z * se, centre + z * se)


def jackknife_se(replicates: list[float]) -> float | None:
    """Delete-a-group jackknife standard error ``sqrt((K-1)/K · Σ(θ_i - θ̄)²)``; None for K < 2."""
    k = len(replicates)
    if k < 2:
        return None
    r = np.asarray(replicates, np.float64)
    return float(np.sqrt((k - 1) / k * ((r - r.mean()) ** 2).sum()))


def frechet_with_jackknife(fake: GroupedStats, real: FrechetReference) -> FrechetEstimate:
    """Fréchet distance of the fake set's total to ``real``, plus one replicate per non-empty fake group left out.

    The real side is held fixed (its sampling error is not in the interval). Warns when the fake set has
    fewer samples than feature dimensions (its covariance is then singular and the estimate strongly biased).
    """
    total = fake.total()
    if total.count < total.dim:
        warnings.warn(
            f"only {total.count} samples for {total.dim}-d features: covariance is rank-deficient and the "
            "Fréchet distance is biased upwards; compare values only at equal N",
            stacklevel=2,
        )
    value = real.distance_stats(total)
    filled = [g for g in fake.groups if g.count > 0]
    replicates = []
    if len(filled) >= 2:
        replicates = [real.distance_stats(total.subtract(g)) for g in filled]
    return FrechetEstimate(value, total.count, replicates)
