"""Where a process runs (rank, device, precision) and the DDP helpers training wraps its modules with.

Sampling needs only :class:`Runtime` and :func:`precision_for`; training also joins the process group
(:func:`setup_runtime`) and wraps modules in ``DistributedDataParallel`` (:func:`wrap`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ctbench.core.distributed import init_distributed, local_rank


@dataclass
class Runtime:
    """Where this process runs: rank, world size, device, and its precision settings.

    ``bf16``: bf16 autocast (CUDA or CPU) around the networks' forward passes; ``channels_last``: the
    models' weights and the input batches use ``torch.channels_last_3d``. Both default to off, which
    keeps CPU runs bit-reproducible; :func:`setup_runtime` takes them from the config's ``bf16`` and
    ``channels_last`` entries for the device's type.
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    bf16: bool = False
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.device.type == "cpu" and self.bf16 and self.channels_last:
            raise ValueError(
                "bf16 with channels_last on the CPU: bf16 runs without oneDNN there (see autocast), where "
                "channels-last 3D convolutions gain nothing; enable one or the other on the CPU"
            )

    @property
    def main(self) -> bool:
        return self.rank == 0

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on this device's type around forward passes when ``bf16`` is on, else nothing."""
        if self.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, outside autocast; with bf16 on the CPU, without oneDNN.

        In torch 2.14 oneDNN's bf16 3D convolution weight gradient came out NaN in about 1 call of 10 for
        some shapes (e.g. 64 channels at 2×4×4); the native CPU kernels are slower but correct.
        """
        if self.bf16 and self.device.type == "cpu":
            with torch.backends.mkldnn.flags(enabled=False, deterministic=None, allow_tf32=None, fp32_precision=None):
                loss.backward()
        else:
            loss.backward()

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        """A batch ``(N, C, D, H, W)`` on the device, channels-last when enabled."""
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last_3d) if self.channels_last else x

    def prepare(self, module: nn.Module) -> nn.Module:
        """``module`` on the device (in place), its conv weights channels-last when enabled.

        Per layer: 3D convs get ``channels_last_3d`` and 2D convs (the slice discriminator) ``channels_last``;
        ``module.to(memory_format=channels_last_3d)`` would fail on the 2D weights.
        """
        module = module.to(self.device)
        if self.channels_last:
            for m in module.modules():
                if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
                    m.to(memory_format=torch.channels_last_3d)
                elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                    m.to(memory_format=torch.channels_last)
        return module

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def precision_for(config: dict[str, Any], device: torch.device) -> dict[str, bool]:
    """``{"bf16": ..., "channels_last": ...}`` of ``config`` for ``device``'s type (``cuda`` or ``cpu``)."""
    kind = "cuda" if device.type == "cuda" else "cpu"
    return {"bf16": bool(config["bf16"][kind]), "channels_last": bool(config["channels_last"][kind])}


def setup_runtime(config: dict[str, Any]) -> Runtime:
    """Join the process group if launched by ``torchrun`` (``WORLD_SIZE`` > 1); pick the device and precision."""
    rank, world = init_distributed()
    if torch.cuda.is_available():
        local = local_rank()
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
        torch.backends.cudnn.benchmark = True  # fixed volume shapes: let cuDNN pick the fastest 3D conv kernels
    else:
        device = torch.device("cpu")
    return Runtime(rank, world, device, **precision_for(config, device))


def wrap(module: nn.Module, rt: Runtime) -> nn.Module:
    """``module`` on the device, wrapped in ``DistributedDataParallel`` when there are several processes."""
    module = rt.prepare(module)
    if rt.world_size > 1:
        return DDP(module, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    return module


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper, or ``module`` itself."""
    return module.module if isinstance(module, DDP) else module


def maybe_no_sync(module: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """Skip the DDP gradient all-reduce on all but the last micro-batch of an accumulated step."""
    return module.no_sync() if isinstance(module, DDP) and not sync else contextlib.nullcontext()


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """The unwrapped module with ``requires_grad`` off, so gradients flow through it but not into it."""
    raw = unwrap(module)
    flags = [p.requires_grad for p in raw.parameters()]
    for p in raw.parameters():
        p.requires_grad_(False)
    try:
        yield raw
    finally:
        for p, f in zip(raw.parameters(), flags, strict=True):
            p.requires_grad_(f)
