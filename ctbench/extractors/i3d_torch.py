"""I3D logits of volumes with the PyTorch port (:mod:`ctbench.extractors.i3d_net`) and converted weights; no
TensorFlow.

The converted-weights file (written by :mod:`ctbench.extractors.i3d_convert`) is a ``torch.save`` of
``{"format": FORMAT, "source_sha256": <content hash of the SavedModel it was read from>, "state_dict": {...}}``,
byte-identical for the same module. Preprocessing is :mod:`ctbench.extractors.i3d`'s, run on the chosen device;
the grey frames go into the network as one channel (the first convolution's kernels summed over RGB: the same
logits as the RGB repetition, to float rounding), and batch norms are folded into the convolutions. Speed options
as for InceptionV3: ``compile`` (``torch.compile``), ``channels_last`` (3D), ``bf16`` (autocast; a provenance
option) and ``tf32`` (off unless asked; a provenance option).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ctbench.extractors.batching import FeatureNetwork
from ctbench.extractors.i3d import preprocess_frames
from ctbench.extractors.i3d_net import InceptionI3D
from ctbench.extractors.tensor_file import load_tensor_file

FORMAT = "ctbench-i3d-kinetics-400-torch/1"
"""Tag of the converted-weights file format."""

BF16_LOGIT_TOLERANCE = 0.02
"""Stated bound on ``max|l_bf16 - l_fp32| / max|l_fp32|`` over a video's 400 logits under bf16 autocast (8 significand
bits through 58 layers; measured 0.55% on the CPU with random weights, one 10-frame video; bf16 3D convolutions
take minutes on the CPU, so no test holds it there)."""


def read_converted(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """The contents of a converted-weights file; ``ValueError`` naming ``path`` when it is not one."""
    payload = load_tensor_file(path, "a converted I3D weights file", mmap=mmap)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a converted I3D weights file (expected format {FORMAT!r}; "
                         "make one with `ctbench weights convert i3d-kinetics-400`)")
    return payload


def converted_source_sha256(path: str | Path) -> str:
    """The SavedModel hash recorded in a converted-weights file (read without loading the tensors)."""
    return str(read_converted(path, mmap=True)["source_sha256"])


def load_network(path: str | Path) -> InceptionI3D:
    """:class:`InceptionI3D` in eval mode with the weights of a converted file, on the CPU."""
    net = InceptionI3D()
    try:
        net.load_state_dict(read_converted(path)["state_dict"])
    except RuntimeError as exc:  # missing / unexpected keys, wrong shapes
        raise ValueError(f"{path}: converted I3D weights do not fit the network ({exc})") from exc
    return net.eval()


class I3DTorchFeatures(FeatureNetwork):
    """Callable: volumes ``(N, 1, D, H, W)`` in [-1, 1] → I3D logits ``(N, 400)`` float32 on the CPU.

    ``weights_path``: a converted-weights file. Videos (64 frames of 224×224) per forward pass: 2 on CPU, 16 on CUDA;
    the batch size halves on device out-of-memory and stays halved.
    """

    name = "i3d-kinetics-400"
    dim = 400
    unit = "videos"
    batch_sizes = {"cpu": 2, "cuda": 16}
    spatial_dims = 3

    def load(self, weights_path: Path) -> nn.Module:
        return load_network(weights_path).fold_batch_norm()

    def preprocess(self, chunk: torch.Tensor) -> torch.Tensor:
        return preprocess_frames(chunk)  # (n, 1, D, 224, 224)
