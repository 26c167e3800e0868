"""A seeded, shard-invariant sample of per-sample feature vectors, kept for the kernel metrics (KID, KVD).

Fréchet distances need only sufficient statistics (:mod:`ctbench.stats`); kernel distances need the feature
vectors themselves. A :class:`FeatureSample` keeps them in float16, at most ``capacity`` rows per stream: every
row gets a priority from a hash of ``(seed, stream, global volume index, position in the volume)`` and the
``capacity`` rows of lowest priority are kept (bottom-k sampling). The kept set therefore depends only on which
samples exist, never on batch order or on how the volumes were split between processes, and merging two
samples (other ranks, a resumed reference computation) gives exactly the sample of the union.

Disk and memory: ``capacity · dim · 2`` bytes per stream (float16), plus 16 bytes per row of index.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: a bijective, well-mixed map of uint64 values."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def priorities(seed: int, stream: str, volume: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Pseudo-random uint64 priority of each row, a pure function of its four inputs."""
    with np.errstate(over="ignore"):
        key = _mix(np.uint64(seed & 0xFFFFFFFF) << np.uint64(32) | np.uint64(zlib.crc32(stream.encode())))
        x = _mix(key ^ _mix(np.asarray(volume, np.uint64) & _MASK))
        return _mix(x ^ np.asarray(position, np.uint64))


class FeatureSample:
    """At most ``capacity`` rows of ``dim``-dimensional features, chosen by seeded priority (see module doc).

    ``features`` ``(M, dim)`` float16, ``volume`` ``(M,)`` global volume index of each row (the jackknife group
    is ``volume % K``), ``position`` ``(M,)`` the row's slice index within its volume (0 for one row per volume),
    ``priority`` ``(M,)`` uint64; ``seen`` counts every row offered, kept or not.
    """

    def __init__(self, dim: int, capacity: int, seed: int = 0):
        if capacity < 1:
            raise ValueError(f"a feature sample needs capacity >= 1, got {capacity}")
        self.dim, self.capacity, self.seed = int(dim), int(capacity), int(seed)
        self.features = np.zeros((0, dim), np.float16)
        self.volume = np.zeros(0, np.int64)
        self.position = np.zeros(0, np.int64)
        self.priority = np.zeros(0, np.uint64)
        self.seen = 0

    def __len__(self) -> int:
        return len(self.volume)

    def update(
        self, stream: str, features: np.ndarray | torch.Tensor, volume: np.ndarray, position: np.ndarray
    ) -> None:
        """Offer rows ``features`` ``(M, dim)`` with their global volume indices and positions ``(M,)``."""
        if isinstance(features, torch.Tensor):
            features = features.detach().float().cpu().numpy()
        f = np.asarray(features)
        if f.ndim != 2 or f.shape[1] != self.dim:
            raise ValueError(f"features must be (M, {self.dim}), got {f.shape}")
        volume = np.asarray(volume, np.int64)
        position = np.asarray(position, np.int64)
        self.seen += len(f)
        self._keep(
            np.concatenate([self.features, f.astype(np.float16)]),
            np.concatenate([self.volume, volume]),
            np.concatenate([self.position, position]),
            np.concatenate([self.priority, priorities(self.seed, stream, volume, position)]),
        )

    def _keep(self, features: np.ndarray, volume: np.ndarray, position: np.ndarray, priority: np.ndarray) -> None:
        """Keep the ``capacity`` rows of lowest priority, in (volume, position) order."""
        if len(priority) > self.capacity:
            keep = np.argpartition(priority, self.capacity - 1)[: self.capacity]
            features, volume, position, priority = features[keep], volume[keep], position[keep], priority[keep]
        order = np.lexsort((position, volume))
        self.features, self.volume = features[order], volume[order]
        self.position, self.priority = position[order], priority[order]

    def merge(self, other: FeatureSample) -> FeatureSample:
        """The sample of both sets together (a new object); both must have the same dim, capacity and seed."""
        if (other.dim, other.capacity, other.seed) != (self.dim, self.capacity, self.seed):
            raise ValueError(
                f"cannot merge feature samples (dim, capacity, seed) {(self.dim, self.capacity, self.seed)} "
                f"and {(other.dim, other.capacity, other.seed)}"
            )
        out = FeatureSample(self.dim, self.capacity, self.seed)
        out.seen = self.seen + other.seen
        out._keep(
            np.concatenate([self.features, other.features]),
            np.concatenate([self.volume, other.volume]),
            np.concatenate([self.position, other.position]),
            np.concatenate([self.priority, other.priority]),
        )
        return out

    @property
    def subsampled(self) -> bool:
        """True when rows were dropped (more were offered than ``capacity``)."""
        return self.seen > len(self)

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {
            f"{prefix}/sample_features": self.features,
            f"{prefix}/sample_volume": self.volume,
            f"{prefix}/sample_position": self.position,
            f"{prefix}/sample_priority": self.priority,
            f"{prefix}/sample_meta": np.array([self.capacity, self.seed, self.seen], np.int64),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> FeatureSample:
        capacity, seed, seen = (int(v) for v in arrays[f"{prefix}/sample_meta"])
        features = arrays[f"{prefix}/sample_features"]
        out = cls(features.shape[1], capacity, seed)
        out.features = np.asarray(features, np.float16)
        out.volume = np.asarray(arrays[f"{prefix}/sample_volume"], np.int64)
        out.position = np.asarray(arrays[f"{prefix}/sample_position"], np.int64)
        out.priority = np.asarray(arrays[f"{prefix}/sample_priority"], np.uint64)
        out.seen = seen
        return out
