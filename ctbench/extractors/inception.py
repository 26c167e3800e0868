"""InceptionV3 pool3 features (2048-d) of 8-bit grey slices, exactly as torch-fidelity computes them.

The network, its weights format and its TensorFlow-1-exact bilinear resize are torch-fidelity's
(``FeatureExtractorInceptionV3``), loaded from a local weights file. One change of order, not of result:
torch-fidelity repeats grey to RGB first and resizes three identical channels; here the one grey channel is
resized, normalised ``(x - 128) / 128`` and then repeated, and the network runs from its first convolution
to pool3 (torch-fidelity's own layers, in its order). The features are bit-identical (tested) and the resize
costs a third. Batches run on the chosen device, optionally compiled (``torch.compile``), channels-last, or
under bf16 autocast (speed options; fp32 is the reference). bf16 features stay within
:data:`BF16_FEATURE_TOLERANCE` of fp32 (tested on the CPU, where torch's autocast also runs in bf16); it is a
separate provenance option, so bf16 statistics are never compared with fp32 ones. TF32 is off while the
network runs unless ``tf32`` is set (:mod:`ctbench.extractors.tf32`; also a provenance option).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from ctbench.core.errors import first_line
from ctbench.extractors.batching import FeatureNetwork
from ctbench.extractors.slicing import resize_like_tf1

INPUT_SIZE = 299
PREPROCESSING = (
    "uint8=clamp(round((v+1)*127.5),0,255); grey->RGB by repetition; "
    "TF1 bilinear resize to 299x299 (align_corners=False, torch-fidelity); (x-128)/128; pool3 2048-d"
)
"""Every step between a voxel value and a feature; part of the reference-statistics cache key."""

BF16_FEATURE_TOLERANCE = 0.02
"""Largest relative error ``|f_bf16 - f_fp32| / |f_fp32|`` of one slice's features under bf16 autocast (bf16 keeps 8
significand bits, 0.4% per rounding; measured 0.5% on the CPU with random weights)."""


class Pool3(nn.Module):
    """torch-fidelity's InceptionV3 layers from the normalised ``(B, 3, 299, 299)`` input to pool3 ``(B, 2048)``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        # registration order is forward order in torch-fidelity's module; fc (logits) is not needed for FID
        self.layers = nn.Sequential(*[m for name, m in net.named_children() if name != "fc"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.layers(x), 1)


def preprocess(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 grey ``(B, 1, h, w)`` → ``(B, 3, 299, 299)`` float32 network input: TF1 resize, ``(x - 128) / 128``."""
    x = resize_like_tf1(images_u8.float(), INPUT_SIZE)
    return ((x - 128) / 128).expand(-1, 3, -1, -1)


class InceptionFeatures(FeatureNetwork):
    """Callable: uint8 slices ``(M, 1, h, w)`` → pool3 features ``(M, 2048)`` float32 on the CPU.

    ``weights_path`` must hold an InceptionV3 state dict in torch-fidelity's format (the pinned file is
    ``weights-inception-2015-12-05-6726825d.pth``); any other architecture fails with a clear error. Slices per
    forward pass: 32 on CPU, 256 on CUDA (about 10 GiB in fp32); the batch size halves on device out-of-memory and
    stays halved.
    """

    name = "inception-v3-compat"
    dim = 2048
    unit = "slices"
    batch_sizes = {"cpu": 32, "cuda": 256}

    def load(self, weights_path: Path) -> nn.Module:
        return load_pool3(weights_path)

    def check(self, batch: torch.Tensor) -> None:
        if batch.dtype != torch.uint8 or batch.ndim != 4 or batch.shape[1] != 1:
            raise ValueError(f"expected uint8 (M, 1, h, w) slices, got {batch.dtype} {tuple(batch.shape)}")

    def preprocess(self, chunk: torch.Tensor) -> torch.Tensor:
        return preprocess(chunk)


def load_pool3(weights_path: str | Path) -> Pool3:
    """torch-fidelity's InceptionV3 with the weights of ``weights_path``, up to pool3; ``ValueError`` naming the file
    when they do not load into it."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    try:
        net = FeatureExtractorInceptionV3(
            InceptionFeatures.name, ["2048"], feature_extractor_weights_path=str(weights_path)
        )
    except (RuntimeError, KeyError, OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise ValueError(f"{weights_path}: not usable as InceptionV3 FID weights ({first_line(exc)})") from exc
    return Pool3(net)


def check_weights(path: str | Path) -> None:
    """Raise ``ValueError`` naming ``path`` unless it loads into InceptionV3 (the ``ctbench weights`` check)."""
    load_pool3(path)


def write_random_weights(path: str | Path, seed: int = 1234, calibration: torch.Tensor | None = None) -> Path:
    """Write an InceptionV3 state dict in torch-fidelity's layout with seeded random weights to ``path``.

    For tests and statistical studies that need the network's shape and a realistic activation range, not its
    training: torchvision's Inception3 (1008 classes, no auxiliary head) has the same parameter names; BatchNorm
    running statistics are set from one calibration batch so activations stay in range. ``calibration``: uint8
    slices ``(M, 1, h, w)`` of the images to be scored (default: 4 images of uniform noise). Calibrated on the kind of
    image it will see, pool3 features keep an order-one scale, which kernel distances (KID's cubic kernel) need;
    calibrated on noise, smooth CT slices drive them far out. Values computed with such weights are unverified and
    compare with nothing published.
    """
    import torchvision

    torch.manual_seed(seed)
    net = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=True)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # cumulative average: the one calibration batch sets the running statistics
    net.train()
    batch = torch.rand(4, 3, 299, 299) * 2 - 1 if calibration is None else preprocess(calibration)
    with torch.no_grad():
        net(batch)
    torch.save(net.state_dict(), path)
    return Path(path)
