"""A torch ``Dataset`` over one split of a prepared folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ctbench.data.prepared import PreparedCase, load_manifest, read_volume
from ctbench.protocol import FLARE22_V1, Protocol


class PreparedDataset(Dataset):
    """Volumes of one split of a prepared folder, read one file per item (never the whole set).

    Items are ``torch.Tensor`` ``(1, D, H, W)`` = ``(1, 64, 128, 128)`` float32 in [-1, 1]. With
    ``flip_probability`` > 0 (a training augmentation; default none, as a flip mirrors anatomy) each item is
    flipped left-right (the W axis, patient x) with that probability, drawn from torch's global RNG, so
    ``torch.manual_seed`` and DataLoader worker seeding make it reproducible. Raises ``ValueError`` if the folder
    was prepared under other protocol parameters, if the split is empty, or if ``flip_probability`` is not in [0, 1].
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = "train",
        flip_probability: float = 0.0,
        protocol: Protocol = FLARE22_V1,
    ):
        self.root = Path(root)
        manifest = load_manifest(self.root)
        manifest.check_protocol(protocol)
        self.protocol = protocol
        self.split = split
        if not 0.0 <= flip_probability <= 1.0:
            raise ValueError(f"flip_probability must be in [0, 1], got {flip_probability}")
        self.flip_probability = flip_probability
        self.manifest_sha256 = manifest.sha256
        self.cases: list[PreparedCase] = manifest.select(split)
        if not self.cases:
            raise ValueError(f"{self.root}: split {split!r} has no prepared cases")

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> torch.Tensor:
        case = self.cases[index]
        volume = read_volume(case.path)
        if (1, *volume.shape) != self.protocol.tensor_shape:
            want = self.protocol.tensor_shape[1:]
            raise ValueError(f"{case.path}: shape {volume.shape}, {self.protocol.name} wants {want}")
        if self.flip_probability and torch.rand(()).item() < self.flip_probability:
            volume = np.ascontiguousarray(volume[:, :, ::-1])  # numpy's reversed copy is far cheaper than torch.flip
        return torch.from_numpy(volume)[None]
