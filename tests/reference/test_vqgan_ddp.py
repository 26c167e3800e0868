"""DistributedDataParallel training with 2 CPU processes on gloo: every rank ends with the same parameters."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ctbench_generators.vqgan_ddpm.checkpoint import load_checkpoint
from ctbench_generators.vqgan_ddpm.trainer import train


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, config: dict, volumes: list[torch.Tensor], out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    try:
        result = train(config, volumes, Path(out) / "run", progress=False)
        torch.save({k: m.state_dict() for k, m in result.models.items()}, Path(out) / f"rank{rank}.pt")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_two_process_gloo_training_keeps_ranks_identical(tiny_config, toy_volumes, tmp_path):
    config = tiny_config(
        "full",
        vqgan={"train": {"steps": 2, "batch_size": 1}, "discriminator": {"start_step": 1}},
        ddpm={"train": {"steps": 2, "batch_size": 2}, "scale_batches": 1},
        checkpoint={"sample_every": 0},
    )
    # the data travel as arguments: a spawned child cannot tell this folder's conftest from tests/conftest.py
    mp.spawn(_worker, args=(2, _free_port(), config, toy_volumes(4), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0.keys() == r1.keys() == {"vqgan", "unet", "ema"}
    for model in r0:
        for name, tensor in r0[model].items():
            # batch-norm running statistics are per rank (DDP re-broadcasts rank 0's before each forward)
            assert torch.equal(tensor, r1[model][name]) or "running_" in name, f"{model}.{name} differs across ranks"
    # the codebook (a buffer) is kept identical by summing its EMA statistics over ranks
    assert torch.equal(r0["vqgan"]["quantizer.embedding"], r1["vqgan"]["quantizer.embedding"])
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["vqgan"]["step"] == state["ddpm"]["step"] == 2
    for name, tensor in state["vqgan"]["model"].items():  # rank 0 wrote the checkpoint
        assert torch.equal(tensor, r0["vqgan"][name])
