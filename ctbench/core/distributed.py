"""``torch.distributed`` in the few forms ctbench needs: who am I, join a ``torchrun`` group, gather, share work.

Outside a process group every helper behaves as a world of one (rank 0), so callers need no special case.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the default process group; ``(0, 1)`` when none is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed() -> tuple[int, int]:
    """Join the default process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1); returns (rank, world).

    The backend is NCCL when CUDA is available, else gloo. A group that is already initialised is kept.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return rank_and_world()


def local_rank() -> int:
    """This process's index on its machine (``LOCAL_RANK`` set by ``torchrun``; 0 otherwise): its GPU."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank; ``[obj]`` outside a process group."""
    _, world = rank_and_world()
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def shard(n: int, rank: int, world: int) -> range:
    """Contiguous share of ``range(n)`` for ``rank`` of ``world`` (the first ``n % world`` ranks get one more).

    The shares of ranks 0 … world-1 are disjoint, in order, and together cover ``range(n)`` exactly.
    """
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, world) with world >= 1, got rank {rank} of {world}")
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))
