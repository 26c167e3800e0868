"""Feature networks run over a batch in chunks on a device, halving the chunk size when the device runs out of memory.

:class:`FeatureNetwork` is what every torch feature extractor shares: the device, the speed options
(``torch.compile``, channels-last, bf16 autocast, TF32; the last two are provenance options that change the values),
chunked inference with :func:`halving_on_oom`, features returned as float32 on the CPU. A subclass says how its
weights file becomes a network (:meth:`FeatureNetwork.load`), how a chunk becomes network input
(:meth:`FeatureNetwork.preprocess`) and, if it wants, what input it accepts (:meth:`FeatureNetwork.check`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ctbench.extractors.tf32 import torch_tf32


def halving_on_oom(
    run: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor, size: int, network: str, unit: str
) -> tuple[list[torch.Tensor], int]:
    """``run`` over ``batch`` in chunks of ``size`` along the first dimension.

    On device out-of-memory (:class:`torch.OutOfMemoryError`) the chunk size halves, down to 1, and the failed chunk
    is retried; one warning names ``network`` and the size in ``unit``. Returns the outputs in order and the chunk
    size that worked (callers keep it for their next batches).
    """
    out, start, first = [], 0, size
    while start < batch.shape[0]:
        try:
            out.append(run(batch[start : start + size]))
        except torch.OutOfMemoryError:
            if size == 1:
                raise
            if size == first:
                warnings.warn(f"{network}: out of device memory with {size} {unit} per batch; halving the batch size "
                              "until it fits, and the run continues", stacklevel=3)
            size //= 2
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        start += size
    return out, size


class FeatureNetwork:
    """Callable: a batch (first dimension = items) → features ``(N, dim)`` float32 on the CPU.

    Subclasses set ``name``, ``dim``, ``unit`` (what one item is, for messages), ``batch_sizes`` (items per forward
    pass on ``{"cpu": n, "cuda": m}``) and ``spatial_dims`` (2 or 3: which channels-last layout applies), and
    implement :meth:`load` and :meth:`preprocess`. ``weights_path``: the network's weights file; one that does not
    fit the network raises ``ValueError`` naming it. The batch size halves on device out-of-memory and stays halved.
    """

    name: str
    dim: int
    unit: str
    batch_sizes: dict[str, int]
    spatial_dims: int = 2

    def __init__(
        self,
        weights_path: str | Path,
        device: str | torch.device = "cpu",
        batch_size: int | None = None,
        compile: bool = False,
        channels_last: bool = False,
        bf16: bool = False,
        tf32: bool = False,
    ):
        self.device = torch.device(device)
        self.batch_size = batch_size or self.batch_sizes["cuda" if self.device.type == "cuda" else "cpu"]
        self.bf16, self.tf32, self.channels_last = bf16, tf32, channels_last
        self._memory_format = torch.channels_last if self.spatial_dims == 2 else torch.channels_last_3d
        self.net = self.load(Path(weights_path)).eval().to(self.device)
        if channels_last:
            self.net = self.net.to(memory_format=self._memory_format)
        self._forward = torch.compile(self.net) if compile else self.net

    def load(self, weights_path: Path) -> nn.Module:
        """The network with the weights of ``weights_path``, on the CPU; ``ValueError`` naming the file if they do
        not fit it."""
        raise NotImplementedError

    def preprocess(self, chunk: torch.Tensor) -> torch.Tensor:
        """One chunk of the input, already on the device → the network's input."""
        raise NotImplementedError

    def check(self, batch: torch.Tensor) -> None:
        """Raise ``ValueError`` when ``batch`` is not what this network reads (default: accept anything)."""

    def _run(self, chunk: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(chunk.to(self.device, non_blocking=True))
        if self.channels_last:
            x = x.contiguous(memory_format=self._memory_format)
        with torch_tf32(self.tf32), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self._forward(x).float().cpu()

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.check(batch)
        out, self.batch_size = halving_on_oom(self._run, batch, self.batch_size, self.name, self.unit)
        return torch.cat(out) if out else torch.zeros(0, self.dim)
