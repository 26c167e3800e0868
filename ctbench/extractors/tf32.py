"""TF32 (TensorFloat-32: float32 range, 10-bit significand) for the feature networks: off unless asked for.

On NVIDIA GPUs since Ampere, torch runs cuDNN convolutions in TF32 by default
(``torch.backends.cudnn.allow_tf32``) and TensorFlow runs matmuls and convolutions in TF32 by default, which
changes features in their fourth significant digit. ctbench's fp32 reference path therefore turns TF32 off
while a feature network runs and restores the caller's settings after; the ``tf32`` option of FID/FVD turns
it on instead, and is recorded in the metric's options (so TF32 statistics are never compared with fp32 ones).
The switches do nothing on the CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


@contextmanager
def torch_tf32(enabled: bool) -> Iterator[None]:
    """Set torch's CUDA matmul and cuDNN TF32 switches to ``enabled`` inside the block; restore them after."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@contextmanager
def tensorflow_tf32(tf: Any, enabled: bool) -> Iterator[None]:
    """Set TensorFlow's TF32 execution to ``enabled`` inside the block (``tf``: the imported module); restore after."""
    saved = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(enabled)
    try:
        yield
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(saved)
