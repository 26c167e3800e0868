"""Kernel distances (KID, KVD): the unbiased squared MMD with the cubic polynomial kernel, and its interval.

``k(x, y) = (x·y / d + 1)³`` on ``d``-dimensional features (Bińkowski et al. 2018, as torch-fidelity's
``metric_kid``). For generated features X (m rows) and real features Y (n rows)::

    MMD²_u = Σ_{i≠j} k(xᵢ, xⱼ) / (m(m−1)) + Σ_{i≠j} k(yᵢ, yⱼ) / (n(n−1)) − 2 Σ_{i,j} k(xᵢ, yⱼ) / (mn)

is unbiased for every m, n ≥ 2, so unlike the Fréchet distance its value does not drift with N.

Subsets: with at most ``subset_size`` rows on each side the estimate uses every row (deterministic). Above it,
the value is the mean over ``subsets`` seeded draws: each draw takes ``subset_size`` rows without replacement
from each side larger than that (``numpy.random.RandomState(seed)``, generated side first, as torch-fidelity),
and a side that fits enters whole. An explicit ``subset_size`` larger than a side is refused (as torch-fidelity).

Interval: the grouped jackknife of :mod:`ctbench.metrics.frechet` — the generated rows fall into K groups by
volume (``volume % K``); each replicate recomputes every subset's MMD² without one group, from block sums of the
same kernel matrices (no extra kernel evaluations); 95% normal interval, not clipped at 0. The real side is held
fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ctbench.core.progress import progress_bar
from ctbench.metrics.frechet import Z95, jackknife_se

DEFAULT_SUBSET_SIZE = 1000
"""Rows per side per subset (torch-fidelity's default ``kid_subset_size``)."""

DEFAULT_SUBSETS = 100
"""Number of subsets averaged when a side exceeds the subset size (torch-fidelity's ``kid_subsets``)."""

DEFAULT_SEED = 2020
"""Seed of the subset draws (torch-fidelity's default ``rng_seed``)."""


class KernelSizeError(ValueError):
    """An explicit subset size larger than a side: the message names the side and both numbers."""


@dataclass
class KernelEstimate:
    """An MMD² value with its grouped-jackknife replicates (empty when fewer than 2 groups hold data).

    ``n``: generated rows; ``subsets``: draws averaged (1: every row used, deterministic);
    ``sizes``: rows per draw on the (generated, real) side.
    """

    value: float
    n: int
    replicates: list[float]
    subsets: int
    sizes: tuple[int, int]

    def interval(self, z: float = Z95) -> tuple[float, float] | None:
        """Normal 95% interval ``value ± z·se_jackknife``, not clipped (MMD²_u may be below 0)."""
        se = jackknife_se(self.replicates)
        return None if se is None else (self.value - z * se, self.value + z * se)


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(x yᵀ / d + 1)³`` for rows ``x`` ``(m, d)`` and ``y`` ``(n, d)`` → ``(m, n)``."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def _off_diagonal_sum(k: torch.Tensor) -> torch.Tensor:
    return k.sum() - k.diagonal().sum()


def mmd2_with_replicates(
    x: torch.Tensor, group: torch.Tensor, groups: int, y: torch.Tensor
) -> tuple[float, np.ndarray, np.ndarray]:
    """Unbiased MMD² of generated ``x`` ``(m, d)`` vs real ``y`` ``(n, d)`` (float64), and per group g of
    ``groups`` the value with the rows ``group == g`` left out (NaN where fewer than 2 rows would remain).

    Returns ``(value, replicates (groups,), rows per group (groups,))``.
    """
    m, n = len(x), len(y)
    k_xx, k_xy = polynomial_kernel(x, x), polynomial_kernel(x, y)
    k_xx.fill_diagonal_(0)
    yy = float(_off_diagonal_sum(polynomial_kernel(y, y))) / (n * (n - 1))
    onehot = torch.nn.functional.one_hot(group, groups).to(x.dtype)  # (m, K)
    row_xx = k_xx.sum(1)
    block = onehot.T @ k_xx @ onehot  # (K, K): sums of k over pairs of groups
    per_group_xx = (onehot.T @ row_xx).cpu().numpy()
    per_group_xy = (onehot.T @ k_xy.sum(1)).cpu().numpy()
    counts = onehot.sum(0).cpu().numpy()
    s_xx, s_xy = float(row_xx.sum()), float(k_xy.sum())
    value = s_xx / (m * (m - 1)) + yy - 2 * s_xy / (m * n)
    kept = m - counts
    with np.errstate(divide="ignore", invalid="ignore"):
        xx = (s_xx - 2 * per_group_xx + block.diagonal().cpu().numpy()) / (kept * (kept - 1))
        replicates = xx + yy - 2 * (s_xy - per_group_xy) / (kept * n)
    replicates[kept < 2] = np.nan
    return value, replicates, counts


def _draw(rng: np.random.RandomState, side: int, size: int) -> np.ndarray:
    return rng.choice(side, size, replace=False) if side > size else np.arange(side)


def kid(
    fake: np.ndarray,
    fake_volume: np.ndarray,
    real: np.ndarray,
    groups: int,
    subset_size: int | None = None,
    subsets: int = DEFAULT_SUBSETS,
    seed: int = DEFAULT_SEED,
    device: str | torch.device = "cpu",
    label: str = "kid",
) -> KernelEstimate:
    """KID of generated rows ``fake`` ``(m, d)`` (from volumes ``fake_volume`` ``(m,)``) vs ``real`` ``(n, d)``.

    ``subset_size`` None: :data:`DEFAULT_SUBSET_SIZE`, a side smaller than it entering whole; an explicit value
    larger than a side raises :class:`KernelSizeError` (``label`` names the value in the message).
    """
    m, n = len(fake), len(real)
    for side, rows in (("generated", m), ("real", n)):
        if rows < 2:
            raise KernelSizeError(f"{label}: the {side} side has {rows} feature rows; KID needs at least 2 per side")
        if subset_size is not None and subset_size > rows:
            raise KernelSizeError(
                f"{label}: KID subset size {subset_size} is larger than the {side} side's {rows} rows; "
                f"use a subset size of at most {min(m, n)}, or leave it unset (default {DEFAULT_SUBSET_SIZE}, "
                "a smaller side then enters whole)"
            )
    size = DEFAULT_SUBSET_SIZE if subset_size is None else subset_size
    draws = 1 if m <= size and n <= size else subsets
    x_all = torch.as_tensor(np.asarray(fake, np.float64), device=device)
    y_all = torch.as_tensor(np.asarray(real, np.float64), device=device)
    group_all = torch.as_tensor(np.asarray(fake_volume, np.int64) % groups, device=device)
    rng = np.random.RandomState(seed)
    values, replicates, present = [], [], np.zeros(groups, bool)
    for _ in progress_bar(range(draws), desc=label, unit="subset", enabled=draws > 1):
        i, j = _draw(rng, m, size), _draw(rng, n, size)
        value, reps, counts = mmd2_with_replicates(x_all[i], group_all[i], groups, y_all[j])
        values.append(value)
        replicates.append(reps)  # a group absent from a draw gets the draw's own value (nothing left out)
        present |= counts > 0
    reps_mean = np.mean(replicates, axis=0)
    usable = present & np.isfinite(reps_mean)
    reps_out = [float(r) for r in reps_mean[usable]] if usable.sum() >= 2 else []
    return KernelEstimate(float(np.mean(values)), m, reps_out, draws, (min(m, size), min(n, size)))
