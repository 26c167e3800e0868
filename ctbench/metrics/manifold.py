"""k-nearest-neighbour manifold metrics: precision, recall (Kynkäänniemi et al. 2019), density, coverage (Naeem
et al. 2020), with grouped-jackknife replicates.

For generated rows X (m) and real rows Y (n), with ``r_k(z; S)`` the distance from ``z`` to its k-th nearest
neighbour in S other than itself and ``B(z, r)`` the closed ball ``{u : |u − z| ≤ r}``::

    precision = (1/m) Σ_j 1[∃ i: X_j ∈ B(Y_i, r_3(Y_i; Y))]
    recall    = (1/n) Σ_i 1[∃ j: Y_i ∈ B(X_j, r_3(X_j; X))]
    density   = (1/(5m)) Σ_j Σ_i 1[X_j ∈ B(Y_i, r_5(Y_i; Y))]
    coverage  = (1/n) Σ_i 1[∃ j: X_j ∈ B(Y_i, r_5(Y_i; Y))]

(k = 3 for precision and recall as torch-fidelity's ``metric_prc``; k = 5 for density and coverage as Naeem et
al.). Euclidean distances in float64 on the caller's device, from ``|a|² + |b|² − 2a·b`` in row chunks of
:data:`CHUNK_ROWS` (a 10,000 × 10,000 problem never holds more than one ``CHUNK_ROWS × 10,000`` block); squared
distances within round-off of 0 (below ``1e-10 · (|a|² + |b|²)``) are exactly 0, so duplicated rows (blank slices
all give the same features) are at distance 0 and lie inside each other's balls, as the closed ball says.

Replicates: the generated rows fall into K groups by volume (``volume % K``); each replicate recomputes all four
values without one group, exactly (the generated k-NN radii of recall are recomputed without the group: per row
the k+1 nearest neighbours within each group are kept, so no extra distances are needed). The real side is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ctbench.metrics.frechet import Z95, jackknife_se

K_PRECISION_RECALL = 3
"""Neighbourhood size of precision and recall (torch-fidelity's ``prc_neighborhood``, Kynkäänniemi et al.)."""

K_DENSITY_COVERAGE = 5
"""Neighbourhood size of density and coverage (Naeem et al. 2020)."""

CHUNK_ROWS = 1024
"""Rows per block of the distance matrices (float64: 80 MB per block against 10,000 rows)."""

NAMES = ("precision", "recall", "density", "coverage")

MANIFOLD_METHOD = (
    "grouped jackknife over generated volumes (K groups, i % K; each replicate recomputes the k-NN radii without "
    "the group), 95% normal, clipped to the statistic's range; real side fixed"
)

_ZERO = 1e-10
"""Squared distances below this fraction of ``|a|² + |b|²`` are round-off: set to exactly 0."""


class ManifoldSizeError(ValueError):
    """A side with too few rows for its k-nearest-neighbour radius: the message names the side and both numbers."""


@dataclass
class ManifoldEstimate:
    """One of the four values with its grouped-jackknife replicates (empty when fewer than 2 groups hold data).

    ``n``: generated rows; ``sizes``: rows on the (generated, real) side; ``upper``: the largest value the
    statistic can take (1 for precision, recall and coverage; infinity for density), where the interval is clipped.
    """

    value: float
    n: int
    replicates: list[float]
    sizes: tuple[int, int]
    upper: float = 1.0

    def interval(self, z: float = Z95) -> tuple[float, float] | None:
        """Normal 95% interval ``value ± z·se_jackknife``, clipped to ``[0, upper]``."""
        se = jackknife_se(self.replicates)
        if se is None:
            return None
        return max(self.value - z * se, 0.0), min(self.value + z * se, self.upper)


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``(m, n)`` between rows ``a`` ``(m, d)`` and ``b`` ``(n, d)``, round-off zeroed."""
    a2, b2 = (a * a).sum(1)[:, None], (b * b).sum(1)[None, :]
    d2 = (a2 + b2 - 2 * a @ b.T).clamp_min_(0)
    return d2.masked_fill_(d2 <= _ZERO * (a2 + b2), 0.0)


def _chunks(m: int, size: int) -> list[slice]:
    return [slice(s, min(s + size, m)) for s in range(0, m, size)]


def grouped_knn_radii(x: torch.Tensor, group: torch.Tensor, groups: int, k: int, chunk: int = CHUNK_ROWS
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """k-NN squared radii of the rows of ``x`` ``(m, d)`` within ``x``, and within ``x`` without each group.

    Returns ``(radii (m,), radii_without (groups, m))``: ``radii_without[g, j]`` is row j's radius among the rows
    not in group g (inf where fewer than k+1 rows remain; meaningless for rows of group g, which the caller drops).
    """
    m = len(x)
    near = torch.full((m, groups, k + 1), torch.inf, dtype=x.dtype, device=x.device)  # k+1 nearest per group
    for s in _chunks(m, chunk):
        d2 = squared_distances(x[s], x)
        for g in range(groups):
            cols = d2[:, group == g]
            take = min(k + 1, cols.shape[1])
            if take:
                near[s, g, :take] = cols.topk(take, dim=1, largest=False).values
    radii = near.reshape(m, -1).kthvalue(k + 1, dim=1).values
    without = torch.empty((groups, m), dtype=x.dtype, device=x.device)
    for g in range(groups):
        others = torch.cat([near[:, :g], near[:, g + 1:]], dim=1).reshape(m, -1)
        without[g] = others.kthvalue(k + 1, dim=1).values if others.shape[1] > k else torch.inf
    return radii, without


def prdc(
    fake: np.ndarray,
    fake_volume: np.ndarray,
    real: np.ndarray,
    groups: int,
    device: str | torch.device = "cpu",
    k_pr: int = K_PRECISION_RECALL,
    k_dc: int = K_DENSITY_COVERAGE,
    chunk: int = CHUNK_ROWS,
    label: str = "prdc",
) -> dict[str, ManifoldEstimate]:
    """Precision, recall, density and coverage of generated rows ``fake`` ``(m, d)`` (from volumes ``fake_volume``
    ``(m,)``) against ``real`` ``(n, d)``, each with its leave-one-group-out replicates (``volume % groups``).

    Raises :class:`ManifoldSizeError` (``label`` names the values) when a side has too few rows for its radii.
    """
    m, n = len(fake), len(real)
    for side, rows, least in (("generated", m, k_pr + 1), ("real", n, max(k_pr, k_dc) + 1)):
        if rows < least:
            raise ManifoldSizeError(f"{label}: the {side} side has {rows} feature rows; precision, recall, density "
                                    f"and coverage need at least {least}")
    x = torch.as_tensor(np.asarray(fake, np.float64), device=device)
    y = torch.as_tensor(np.asarray(real, np.float64), device=device)
    group = torch.as_tensor(np.asarray(fake_volume, np.int64) % groups, device=device)
    real_radii = torch.cat([squared_distances(y[s], y).topk(max(k_pr, k_dc) + 1, dim=1, largest=False).values
                            for s in _chunks(n, chunk)])
    r_pr, r_dc = real_radii[:, k_pr], real_radii[:, k_dc]
    fake_radii, fake_radii_without = grouped_knn_radii(x, group, groups, k_pr, chunk)

    in_real = torch.empty(m, dtype=torch.bool, device=device)  # precision: inside some real ball
    count = torch.empty(m, dtype=x.dtype, device=device)  # density: real balls holding it
    recalled = torch.zeros(n, dtype=torch.bool, device=device)
    recalled_without = torch.zeros((groups, n), dtype=torch.bool, device=device)
    nearest = torch.full((groups, n), torch.inf, dtype=x.dtype, device=device)  # per group: nearest generated row
    for s in _chunks(m, chunk):
        d2, g = squared_distances(x[s], y), group[s]
        in_real[s] = (d2 <= r_pr).any(1)
        count[s] = (d2 <= r_dc).sum(1).to(x.dtype)
        recalled |= (d2 <= fake_radii[s, None]).any(0)
        for h in range(groups):
            mine = g == h
            if mine.any():
                nearest[h] = torch.minimum(nearest[h], d2[mine].amin(0))
            recalled_without[h] |= ((d2 <= fake_radii_without[h, s, None]) & ~mine[:, None]).any(0)
    covered = nearest.amin(0) <= r_dc

    counts = torch.bincount(group, minlength=groups).cpu().numpy()
    kept = m - counts
    in_real_g = _group_sums(in_real.to(x.dtype), group, groups)
    count_g = _group_sums(count, group, groups)
    nearest_without = torch.stack([torch.cat([nearest[:h], nearest[h + 1:]]).amin(0) if groups > 1 else
                                   torch.full((n,), torch.inf, dtype=x.dtype, device=device) for h in range(groups)])
    with np.errstate(divide="ignore", invalid="ignore"):
        reps = {
            "precision": (float(in_real.sum()) - in_real_g) / kept,
            "recall": recalled_without.to(x.dtype).mean(1).cpu().numpy(),
            "density": (float(count.sum()) - count_g) / (k_dc * kept),
            "coverage": (nearest_without <= r_dc).to(x.dtype).mean(1).cpu().numpy(),
        }
    values = {
        "precision": float(in_real.to(x.dtype).mean()),
        "recall": float(recalled.to(x.dtype).mean()),
        "density": float(count.sum()) / (k_dc * m),
        "coverage": float(covered.to(x.dtype).mean()),
    }
    usable = (counts > 0) & (kept >= k_pr + 1)
    out = {}
    for name in NAMES:
        r = np.asarray(reps[name], np.float64)
        ok = usable & np.isfinite(r)
        out[name] = ManifoldEstimate(values[name], m, [float(v) for v in r[ok]] if ok.sum() >= 2 else [], (m, n),
                                     np.inf if name == "density" else 1.0)
    return out


def _group_sums(v: torch.Tensor, group: torch.Tensor, groups: int) -> np.ndarray:
    return torch.zeros(groups, dtype=v.dtype, device=v.device).index_add_(0, group, v).cpu().numpy()
