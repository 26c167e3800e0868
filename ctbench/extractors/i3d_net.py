"""The I3D network (Inflated Inception-v1, Carreira & Zisserman 2017) in PyTorch, layer for layer as the TF-Hub
module ``deepmind/i3d-kinetics-400/1`` computes it (DeepMind's Sonnet graph), for converted weights
(:mod:`ctbench.extractors.i3d_convert`).

What makes it that graph and not merely "an I3D":

* TensorFlow ``"SAME"`` padding on every convolution and max-pool: the output has ``ceil(n / stride)`` positions
  and the padding ``max((out - 1)·stride + kernel - n, 0)`` is split with the smaller half first, so strided layers
  pad unevenly (one more after than before). Max-pools pad with -inf (padding never wins), convolutions with 0.
* Batch norm at inference with moving statistics, an offset ``beta`` and no scale (Sonnet's default),
  ``eps = 1e-3``: ``(x - mean) / sqrt(var + eps) + beta``.
* Head: 2×7×7 average pool without padding, a 1×1×1 convolution with bias to 400 logits per remaining time step,
  and the mean over time (the module's ``RGB/inception_i3d/Mean``, its ``default`` output).

Parameter names follow the module's variable scopes (``Mixed_4b.Branch_1.Conv3d_0b_3x3.conv.weight`` is
``RGB/inception_i3d/Mixed_4b/Branch_1/Conv3d_0b_3x3/conv_3d/w``; :func:`tf_variable_name` maps every one).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3
NUM_CLASSES = 400

MIXED = (
    # name, (branch 0 1x1, branch 1 1x1 -> 3x3, branch 2 1x1 -> 3x3, branch 3 pool -> 1x1) output channels
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
)
"""The nine Inception blocks in forward order, with their branch widths."""

POOL_BEFORE = {
    "Mixed_3b": ((1, 3, 3), (1, 2, 2)),
    "Mixed_4b": ((3, 3, 3), (2, 2, 2)),
    "Mixed_5b": ((2, 2, 2), (2, 2, 2)),
}
"""Max-pools (kernel, stride) in front of a block: ``MaxPool3d_3a_3x3``, ``MaxPool3d_4a_3x3``, ``MaxPool3d_5a_2x2``."""

Triple = tuple[int, int, int]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's ``"SAME"`` padding ``(before, after)`` of one dimension of ``size`` positions."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: Triple, stride: Triple, value: float = 0.0) -> tuple[torch.Tensor, Triple]:
    """``"SAME"`` padding of ``(N, C, T, H, W)`` for a window of ``kernel`` and ``stride`` over T, H, W.

    Returns ``(x, padding)``: when every dimension pads evenly, ``x`` unchanged and the per-side ``padding`` for the
    convolution or pool to apply itself (no copy); otherwise ``x`` padded with ``value`` and ``padding`` zero.
    """
    pads = [same_padding(size, k, s) for size, k, s in zip(x.shape[2:], kernel, stride, strict=True)]
    if all(before == after for before, after in pads):
        return x, (pads[0][0], pads[1][0], pads[2][0])
    flat = [p for before_after in reversed(pads) for p in before_after]  # F.pad takes the last dimension first
    return F.pad(x, flat, value=value), (0, 0, 0)


class MaxPoolSame(nn.Module):
    """``tf.nn.max_pool3d(..., padding="SAME")``: padded positions never win."""

    def __init__(self, kernel: Triple, stride: Triple):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, padding = pad_same(x, self.kernel, self.stride, float("-inf"))  # max_pool3d's own padding is -inf too
        return F.max_pool3d(x, self.kernel, self.stride, padding)


class BatchNormOffset(nn.Module):
    """Inference batch norm with moving statistics and an offset but no scale (Sonnet's default), over channels."""

    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, None, self.bias, False, 0.0, BN_EPS)


class Unit3D(nn.Module):
    """Convolution with ``"SAME"`` padding, then batch norm and ReLU (Sonnet's ``Unit3D``); the logits layer has a
    bias and neither.

    A one-channel input to a three-channel convolution is taken as grey repeated to RGB: the kernels are summed over
    the input channels, which is the same convolution for a third of the work.
    """

    def __init__(self, cin: int, cout: int, kernel: Triple = (1, 1, 1), stride: Triple = (1, 1, 1), head: bool = False):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv3d(cin, cout, kernel, stride, bias=head)
        self.bn: BatchNormOffset | None = None if head else BatchNormOffset(cout)
        self.relu = not head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.conv.weight
        if x.shape[1] == 1 and weight.shape[1] == 3:
            weight = weight.sum(1, keepdim=True)
        x, padding = pad_same(x, self.kernel, self.stride)
        x = F.conv3d(x, weight, self.conv.bias, self.stride, padding)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x, inplace=True) if self.relu else x

    @torch.no_grad()
    def fold_batch_norm(self) -> None:
        """Fold the batch norm into the convolution (kernels scaled by ``1/sqrt(var + eps)``, bias
        ``beta - mean/sqrt(var + eps)``): the same function with one pass less over the activations."""
        if self.bn is None:
            return
        scale = torch.rsqrt(self.bn.running_var + BN_EPS)
        self.conv.weight.mul_(scale.view(-1, 1, 1, 1, 1))
        self.conv.bias = nn.Parameter(self.bn.bias - self.bn.running_mean * scale)
        self.bn = None


class Mixed(nn.Module):
    """An Inception block: four branches (1×1; 1×1 → 3×3; 1×1 → 3×3; 3×3 max-pool → 1×1) concatenated on channels."""

    def __init__(self, cin: int, widths: tuple[int, int, int, int, int, int]):
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3 = widths
        k3 = (3, 3, 3)
        self.Branch_0 = nn.Sequential(OrderedDict(Conv3d_0a_1x1=Unit3D(cin, b0)))
        self.Branch_1 = nn.Sequential(OrderedDict(Conv3d_0a_1x1=Unit3D(cin, b1a), Conv3d_0b_3x3=Unit3D(b1a, b1b, k3)))
        self.Branch_2 = nn.Sequential(OrderedDict(Conv3d_0a_1x1=Unit3D(cin, b2a), Conv3d_0b_3x3=Unit3D(b2a, b2b, k3)))
        self.Branch_3 = nn.Sequential(
            OrderedDict(MaxPool3d_0a_3x3=MaxPoolSame(k3, (1, 1, 1)), Conv3d_0b_1x1=Unit3D(cin, b3))
        )
        self.out_channels = b0 + b1b + b2b + b3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.Branch_0(x), self.Branch_1(x), self.Branch_2(x), self.Branch_3(x)], 1)


class InceptionI3D(nn.Module):
    """Videos ``(N, 3, T, H, W)`` RGB in [-1, 1] (or ``(N, 1, T, H, W)``: grey, the same as its RGB repetition)
    → Kinetics-400 logits averaged over time ``(N, 400)``.

    The head's 2×7×7 average pool needs ``H, W >= 193`` and ``T >= 9`` (224×224 frames: 7×7 after the stem).
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.pools = nn.ModuleDict({name: MaxPoolSame(k, s) for name, (k, s) in POOL_BEFORE.items()})
        blocks, cin = {}, 192
        for name, widths in MIXED:
            blocks[name] = Mixed(cin, widths)
            cin = blocks[name].out_channels
        self.blocks = nn.ModuleDict(blocks)
        self.Logits = nn.Sequential(OrderedDict(Conv3d_0c_1x1=Unit3D(cin, NUM_CLASSES, head=True)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(self.MaxPool3d_2a_3x3(self.Conv3d_1a_7x7(x))))
        for name, block in self.blocks.items():
            if name in self.pools:
                x = self.pools[name](x)
            x = block(x)
        x = F.avg_pool3d(x, (2, 7, 7), 1)  # (N, 1024, T', 1, 1); dropout is the identity at inference
        return self.Logits(x).flatten(2).mean(2)  # (N, 400, T') -> mean over time

    def fold_batch_norm(self) -> InceptionI3D:
        """Fold every batch norm into its convolution, for inference (the state dict then no longer converts back)."""
        for module in self.modules():
            if isinstance(module, Unit3D):
                module.fold_batch_norm()
        return self


def tf_variable_name(key: str) -> str:
    """The module's variable (below ``RGB/inception_i3d/``) behind a state-dict key of :class:`InceptionI3D`.

    ``blocks.Mixed_4b.Branch_1.Conv3d_0b_3x3.bn.running_var`` →
    ``Mixed_4b/Branch_1/Conv3d_0b_3x3/batch_norm/moving_variance``. DeepMind's graph names one layer
    ``Mixed_5b/Branch_2/Conv3d_0a_3x3`` where its siblings say ``0b``; that name is kept.
    """
    parts = key.removeprefix("blocks.").split(".")
    layer, leaf = parts[:-2], ".".join(parts[-2:])
    suffix = {
        "conv.weight": "conv_3d/w",
        "conv.bias": "conv_3d/b",
        "bn.bias": "batch_norm/beta",
        "bn.running_mean": "batch_norm/moving_mean",
        "bn.running_var": "batch_norm/moving_variance",
    }[leaf]
    name = "/".join(layer)
    if name == "Mixed_5b/Branch_2/Conv3d_0b_3x3":
        name = "Mixed_5b/Branch_2/Conv3d_0a_3x3"
    return f"{name}/{suffix}"
