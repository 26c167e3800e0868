"""InceptionV3 pool3 features (2048-d) of 8-bit grey slices, exactly as torch-fidelity computes them.

The network, its weights format and its TensorFlow-1-exact bilinear resize are torch-fidelity's
(``FeatureExtractorInceptionV3``), loaded from a local weights file; this module only feeds it: grey uint8
slices repeated to 3 channels, in batches, on the chosen device, optionally compiled (``torch.compile``),
channels-last, or under bf16 autocast (CUDA speed options; fp32 is the reference).
"""

from __future__ import annotations

from pathlib import Path

import torch

PREPROCESSING = (
    "uint8=clamp(round((v+1)*127.5),0,255); grey->RGB by repetition; "
    "TF1 bilinear resize to 299x299 (align_corners=False, torch-fidelity); (x-128)/128; pool3 2048-d"
)
"""Every step between a voxel value and a feature; part of the reference-statistics cache key."""


def default_batch_size(device: torch.device) -> int:
    """Slices per forward pass: 32 on CPU, 256 on CUDA (about 10 GiB in fp32)."""
    return 256 if device.type == "cuda" else 32


class InceptionFeatures:
    """Callable: uint8 slices ``(M, 1, h, w)`` → pool3 features ``(M, 2048)`` float32 on the CPU.

    ``weights_path`` must hold an InceptionV3 state dict in torch-fidelity's format (the pinned file is
    ``weights-inception-2015-12-05-6726825d.pth``); any other architecture fails with a clear error.
    """

    name = "inception-v3-compat"
    dim = 2048

    def __init__(
        self,
        weights_path: str | Path,
        device: str | torch.device = "cpu",
        batch_size: int | None = None,
        compile: bool = False,
        channels_last: bool = False,
        bf16: bool = False,
    ):
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        self.device = torch.device(device)
        self.batch_size = batch_size or default_batch_size(self.device)
        self.bf16 = bf16
        try:
            net = FeatureExtractorInceptionV3(self.name, ["2048"], feature_extractor_weights_path=str(weights_path))
        except (RuntimeError, KeyError, OSError) as exc:
            raise ValueError(f"{weights_path}: not usable as InceptionV3 FID weights ({exc})") from exc
        net = net.to(self.device)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net
        self._forward = torch.compile(net) if compile else net

    @torch.inference_mode()
    def __call__(self, images_u8: torch.Tensor) -> torch.Tensor:
        if images_u8.dtype != torch.uint8 or images_u8.ndim != 4 or images_u8.shape[1] != 1:
            raise ValueError(f"expected uint8 (M, 1, h, w) slices, got {images_u8.dtype} {tuple(images_u8.shape)}")
        out = []
        for chunk in images_u8.split(self.batch_size):
            x = chunk.to(self.device, non_blocking=True).expand(-1, 3, -1, -1)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                (features,) = self._forward(x)
            out.append(features.float().cpu())
        if not out:
            return torch.zeros(0, self.dim)
        return torch.cat(out)
