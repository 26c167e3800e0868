"""Training data: deterministic per-step random generators and the batches of each rank.

Every random draw of step s on rank r (batch order, flips, slice picks, diffusion t and noise, codebook
restarts) comes from a CPU generator seeded by (seed, stage, r, s), so a resumed run continues
bit-for-bit on the CPU.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def step_generator(seed: int, stage: str, rank: int, step: int) -> torch.Generator:
    """The CPU generator for every random draw of one optimiser step on one rank."""
    digest = hashlib.sha256(f"vqgan-ddpm:{seed}:{stage}:{rank}:{step}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


class VolumeBatches:
    """Deterministic training batches ``(B, 1, D, H, W)`` in [-1, 1] from a dataset of ``(1, D0, H0, W0)`` volumes.

    The stream of sample positions is cut into global batches of ``batch_size × world_size``; epoch e
    visits the dataset in a permutation seeded by (seed, e); rank r takes its own ``batch_size``
    slice. Volumes are resized (trilinear) to ``volume_shape`` once and kept in memory when the set
    fits in ``cache_bytes``; flips (left-right, i.e. along W) use the step's generator.
    """

    def __init__(
        self,
        dataset: Sequence[torch.Tensor],
        batch_size: int,
        volume_shape: Sequence[int],
        *,
        flip_probability: float = 0.0,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        cache_bytes: int = 2 << 30,
    ):
        if len(dataset) == 0:
            raise ValueError("the training set is empty")
        self.dataset, self.batch_size, self.volume_shape = dataset, batch_size, tuple(volume_shape)
        self.flip_probability, self.seed, self.rank, self.world_size = flip_probability, seed, rank, world_size
        per_volume = 4 * int(np.prod(self.volume_shape))
        self._cache: dict[int, torch.Tensor] | None = {} if per_volume * len(dataset) <= cache_bytes else None
        self._perms: dict[int, torch.Tensor] = {}

    def _volume(self, i: int) -> torch.Tensor:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        v = torch.as_tensor(self.dataset[i], dtype=torch.float32)
        if v.ndim != 4 or v.shape[0] != 1:
            raise ValueError(f"training item {i} has shape {tuple(v.shape)}, expected (1, D, H, W)")
        if tuple(v.shape[1:]) != self.volume_shape:
            v = F.interpolate(v[None], size=self.volume_shape, mode="trilinear", align_corners=False)[0]
        if self._cache is not None:
            self._cache[i] = v
        return v

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perms = {epoch: torch.randperm(len(self.dataset), generator=g)}
        return self._perms[epoch]

    def batch(self, index: int, generator: torch.Generator) -> torch.Tensor:
        """The ``index``-th batch of this rank (``index`` counts micro-batches over the whole run)."""
        n = len(self.dataset)
        start = (index * self.world_size + self.rank) * self.batch_size
        vols = []
        for k in range(start, start + self.batch_size):
            v = self._volume(int(self._perm(k // n)[k % n]))
            if self.flip_probability and float(torch.rand((), generator=generator)) < self.flip_probability:
                v = v.flip(-1)
            vols.append(v)
        return torch.stack(vols)


def open_dataset(data: str | os.PathLike | Sequence[torch.Tensor]) -> Sequence[torch.Tensor]:
    """A prepared folder (its ``train`` split, via ``ctbench.data.dataset.PreparedDataset``) or a sequence as is.

    Imported here, not at the top: the training code itself needs no NIfTI reader (a GPU box without
    nibabel can train from tensors and run ``benchmarks/bench_train.py``).
    """
    if isinstance(data, (str, os.PathLike)):
        from ctbench.data.dataset import PreparedDataset

        return PreparedDataset(Path(data), split="train")
    return data
