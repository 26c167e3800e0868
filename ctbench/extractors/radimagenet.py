"""RadImageNet ResNet-50 features (2048-d) of CT slices, computed as MAISI's 2.5D FID computes them.

The network is the one MAISI's ``compute_fid_2-5d_ct.py`` loads through ``torch.hub`` (``Warvito/radimagenet-models``,
``radimagenet_resnet50``): RadImageNet's Keras ResNet50 without its top, ported to PyTorch. Its parameter names are
torchvision's ResNet-50 names, but the layout is Keras': every convolution has a bias, a bottleneck's stride sits
on its first 1×1 convolution (torchvision: on the 3×3 one) and BatchNorm's epsilon is 1.001e-5. :func:`resnet50_keras`
builds that network from torchvision's ResNet-50; the features are the last stage's maps averaged over the slice
(global average pooling), 2048-d.

MAISI's recipe, step by step, and what ctbench does at each step (:func:`plane_stack`, :func:`minmax`,
:meth:`RadImageNetFeatures.preprocess`):

1. Volume: NIfTI in RAS, HU clipped to [-1000, 1000] (``ScaleIntensityRanged`` with equal in/out ranges). ctbench's
   volumes are already the protocol's per-volume window (HU clipped at the 0.2/99.8 percentiles, scaled to
   [-1, 1]); they enter as they are (see step 4 for why the window only changes where it differs).
2. Planes: axial slices along z, each an ``(x, y)`` image; sagittal along x, ``(y, z)``; coronal along y,
   ``(x, z)``; array order as stored in RAS, no display flip and no resize (slices enter at their own size:
   128×128 axial, 128×64 coronal and sagittal).
3. Slices: all of them by default; with a centre ratio r only ``int((1-r)/2·n)`` to ``int((1+r)/2·n)`` (MAISI's
   ``--enable_center_slices_ratio``).
4. Intensity: min-max over the plane's stack of slices of one volume, ``(v - min) / (max - min + 1e-10)``. Min-max
   is affine-invariant, so on a volume whose HU lie in [-1000, 1000] ctbench's [-1, 1] values and MAISI's HU give
   the same [0, 1] image (tested); they differ only where the protocol's percentile window and MAISI's fixed window
   clip differently.
5. Channels: grey repeated to three (MAISI then reorders RGB → BGR, a no-op on equal channels) and the means
   ``(0.406, 0.456, 0.485)`` subtracted from channels 0, 1, 2; no division by a standard deviation.
6. Network: ResNet-50 to the last stage, averaged over height and width: 2048-d per slice.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ctbench.extractors.batching import FeatureNetwork
from ctbench.extractors.tensor_file import load_tensor_file

BN_EPS = 1.001e-5
"""Keras' BatchNormalization epsilon in ResNet50, kept by the PyTorch port."""

CHANNEL_MEANS = (0.406, 0.456, 0.485)
"""Subtracted from channels 0, 1, 2 of the [0, 1] image (ImageNet's means in BGR order, as MAISI subtracts them)."""

MINMAX_EPS = 1e-10

PREPROCESSING = (
    "maisi-2.5d: volume in [-1,1] as is (protocol percentile window, not MAISI's [-1000,1000] HU clip); RAS slices "
    "xy=(x,y) along z, xz=(x,z) along y, yz=(y,z) along x, no flip, no resize; per volume and plane "
    "(v-min)/(max-min+1e-10) over the stack; grey->3 channels; minus (0.406,0.456,0.485); "
    "ResNet-50 (Keras layout) last stage, spatial mean 2048-d"
)
"""Every step between a voxel value and a feature; part of the reference-statistics cache key."""


def _biased(conv: nn.Conv2d, stride: int | tuple[int, ...] | None = None) -> nn.Conv2d:
    """A convolution of ``conv``'s shape with a bias, and ``stride`` instead of its own if given."""
    return nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride or conv.stride,  # type: ignore[arg-type]
                     conv.padding, bias=True)  # type: ignore[arg-type]


def resnet50_keras() -> nn.Module:
    """torchvision's ResNet-50 rebuilt in Keras' layout (biased convolutions, stride on each stage's first 1×1
    convolution, BatchNorm epsilon 1.001e-5), without ``fc``: ``(B, 3, h, w)`` → ``(B, 2048)`` spatial mean."""
    import torchvision

    net = torchvision.models.resnet50(weights=None)
    net.conv1 = _biased(net.conv1)
    for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
        for block in stage:
            block.conv1 = _biased(block.conv1, stride=block.conv2.stride)
            block.conv2 = _biased(block.conv2, stride=1)
            block.conv3 = _biased(block.conv3)
            if block.downsample is not None:
                block.downsample[0] = _biased(block.downsample[0])
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = BN_EPS
    net.fc = nn.Identity()  # no parameters: the state dict is the port's, which has no top
    return net


def load_network(weights_path: str | Path) -> nn.Module:
    """:func:`resnet50_keras` with the state dict at ``weights_path``; ``ValueError`` naming the file unless it holds
    exactly that network (BatchNorm's ``num_batches_tracked`` counters may be absent)."""
    state = load_tensor_file(weights_path, "a PyTorch state dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{weights_path}: not a PyTorch state dict of tensors")
    net = resnet50_keras()
    expected = net.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        parts = [f"{what} {len(keys)} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
                 for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise ValueError(f"{weights_path}: not RadImageNet ResNet-50 weights (the Keras-layout ResNet-50 of "
                         f"Warvito/radimagenet-models): parameters {'; '.join(parts)}")
    net.load_state_dict(state, strict=False)
    return net


def check_weights(path: str | Path) -> None:
    """Raise ``ValueError`` unless ``path`` holds RadImageNet ResNet-50 weights (the ``ctbench weights`` check)."""
    load_network(path)


def plane_stack(
    volumes: torch.Tensor, plane: str, center: float = 1.0, step: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """MAISI's slices of one plane: volumes ``(N, 1, D, H, W)`` = ``(z, y, x)`` → ``(N, S, a, b)`` and the indices
    ``(S,)`` of the S slices taken along the plane's axis.

    ``xy``: along z, each slice ``(x, y)``; ``xz``: along y, ``(x, z)``; ``yz``: along x, ``(y, z)`` (the RAS array
    order MAISI slices, not the display orientation). ``center`` < 1 keeps the centre slices
    ``int((1-center)/2·n)`` to ``int((1+center)/2·n)``; ``step`` > 1 every step-th of those (tests only).
    """
    v = volumes[:, 0]
    if plane == "xy":
        s = v.permute(0, 1, 3, 2)
    elif plane == "xz":
        s = v.permute(0, 2, 3, 1)
    elif plane == "yz":
        s = v.permute(0, 3, 2, 1)
    else:
        raise ValueError(f"unknown plane {plane!r}; planes are xy, xz, yz")
    n = s.shape[1]
    index = torch.arange(int((1.0 - center) / 2.0 * n), int((1.0 + center) / 2.0 * n), step)
    return s[:, index], index


def minmax(stack: torch.Tensor) -> torch.Tensor:
    """``(N, S, a, b)`` → each volume's stack scaled to [0, 1] by its own min and max (float32)."""
    x = stack.float()
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo + MINMAX_EPS)


class RadImageNetFeatures(FeatureNetwork):
    """Callable: slices ``(M, 1, h, w)`` float in [0, 1] (after :func:`minmax`) → features ``(M, 2048)`` float32.

    ``weights_path`` must hold the RadImageNet ResNet-50 state dict (``RadImageNet-ResNet50_notop.pth``); any other
    network fails with a clear error. Slices per forward pass: 32 on CPU, 256 on CUDA; halved on out-of-memory.
    """

    name = "radimagenet-resnet50"
    dim = 2048
    unit = "slices"
    batch_sizes = {"cpu": 32, "cuda": 256}

    def load(self, weights_path: Path) -> nn.Module:
        return load_network(weights_path)

    def check(self, batch: torch.Tensor) -> None:
        if not torch.is_floating_point(batch) or batch.ndim != 4 or batch.shape[1] != 1:
            raise ValueError(f"expected float (M, 1, h, w) slices in [0, 1], got {batch.dtype} {tuple(batch.shape)}")

    def preprocess(self, chunk: torch.Tensor) -> torch.Tensor:
        means = torch.tensor(CHANNEL_MEANS, device=chunk.device).view(1, 3, 1, 1)
        return chunk.float().expand(-1, 3, -1, -1) - means


def write_random_weights(path: str | Path, seed: int = 1234) -> Path:
    """Write a state dict of :func:`resnet50_keras` with seeded random weights to ``path``.

    For tests: the network's shape and a realistic activation range, not its training (convolution biases random,
    BatchNorm running statistics set from one batch of random images). Values computed with it compare with nothing.
    """
    torch.manual_seed(seed)
    net = resnet50_keras()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # cumulative average: the one calibration batch sets the running statistics
    net.train()
    with torch.no_grad():
        net(torch.rand(4, 3, 64, 64) - 0.45)
    torch.save(net.state_dict(), path)
    return Path(path)
