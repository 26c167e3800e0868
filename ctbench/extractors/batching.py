"""Feature networks run over a batch in chunks, halving the chunk size when the device runs out of memory."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch


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
