"""Per-sample random streams: sample i depends on (seed, i) only.

Every generator draws the randomness of sample ``i`` from ``sample_generator(seed, i)``, a CPU
``torch.Generator``; noise is drawn on the CPU and then moved to the device. Results therefore do not
change with batch size, device, or how many ranks share the work.
"""

from __future__ import annotations

import hashlib

import torch


def sample_seed(seed: int, index: int) -> int:
    """A 63-bit seed derived from (seed, index) by SHA-256; stable across platforms and versions."""
    digest = hashlib.sha256(f"ctbench:{int(seed)}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def sample_generator(seed: int, index: int) -> torch.Generator:
    """A fresh CPU generator for sample ``index`` of a run seeded with ``seed``."""
    return torch.Generator(device="cpu").manual_seed(sample_seed(seed, index))

