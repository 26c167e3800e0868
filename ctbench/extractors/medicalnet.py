"""MedicalNet (Med3D) ResNet-50 features of whole volumes: 2048-d, global-average-pooled, built with MONAI.

The network is MONAI's ``monai.networks.nets.resnet50`` in the MedicalNet layout (3D, one input channel, a 7×7×7
first convolution with stride 2, shortcut type B without bias, no classifier), with layer3 and layer4 dilated as
MedicalNet's own ``models/resnet.py`` builds them: stride 1 and dilation 2 (layer3) and 4 (layer4) in their 3×3×3
convolutions, stride 1 in their first block's shortcut. MONAI's ResNet keeps strides 2 and no dilation there; the
weights fit either (same tensors), but the features of the published network, the ones HA-GAN's and WDM-3D's FID
compute, need the dilation (:func:`dilate_like_medicalnet`). Global average pooling over the last feature map
gives the 2048-d vector, as the anchors' ``AdaptiveAvgPool3d(1)`` + flatten does.

The published weights file (``resnet_50_23dataset.pth``) is a ``torch.save`` of ``{"state_dict": {...}}`` whose keys
carry DataParallel's ``module.`` prefix; it holds the backbone only. monai is an optional extra
(``pip install 'ctbench[medicalnet]'``); without it the metric reports itself unavailable.

Input: the volume as it is, ``(N, 1, D, H, W)`` with depth the axial axis (z), no resizing. ``input_range`` says
how [-1, 1] is mapped before the network: ``"unit"`` (WDM-3D: ``(v + 1) / 2`` in [0, 1]) or ``"signed"``
(HA-GAN: ``v`` unchanged).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ctbench.core.errors import MetricUnavailable
from ctbench.extractors.batching import FeatureNetwork
from ctbench.extractors.tensor_file import load_tensor_file

INPUT_RANGES = ("unit", "signed")
"""``unit``: ``(v + 1) / 2`` in [0, 1] (WDM-3D); ``signed``: ``v`` in [-1, 1] (HA-GAN)."""

DILATIONS = {"layer3": 2, "layer4": 4}
"""MedicalNet's dilated stages: stride 1 and this dilation instead of stride 2."""

INSTALL = "pip install 'ctbench[medicalnet]'"


def preprocessing(input_range: str) -> str:
    """The provenance string of the preprocessing for ``input_range``."""
    scale = "(v+1)/2 in [0,1]" if input_range == "unit" else "v in [-1,1] unchanged"
    return (f"whole volume (N,1,D,H,W), depth = axial z, no resize; {scale}; MONAI resnet50 MedicalNet layout "
            "(conv1 7x7x7 stride 2, shortcut B no bias, layer3/layer4 stride 1 dilation 2/4); global average pool "
            "-> 2048-d")


def require_monai() -> None:
    """:class:`MetricUnavailable` with the install command when monai is not installed (without importing it)."""
    if importlib.util.find_spec("monai") is None:
        raise MetricUnavailable(f"MedicalNet 3D FID needs monai, which is not installed; install it with `{INSTALL}`")


def import_monai() -> Any:
    """``monai.networks.nets``; :class:`MetricUnavailable` with the install command when monai is missing."""
    try:
        from monai.networks import nets
    except ImportError as exc:
        raise MetricUnavailable(f"MedicalNet 3D FID needs monai ({exc}); install it with `{INSTALL}`") from exc
    return nets


def dilate_like_medicalnet(net: nn.Module) -> nn.Module:
    """Give a MONAI bottleneck ResNet MedicalNet's layer3/layer4: stride 1, 3×3×3 convolutions dilated (padding =
    dilation, so sizes are kept). Changes ``net`` in place and returns it; the parameters are untouched."""
    for stage, dilation in DILATIONS.items():
        for conv in getattr(net, stage).modules():
            if isinstance(conv, nn.Conv3d):
                conv.stride = (1, 1, 1)
                if conv.kernel_size == (3, 3, 3):
                    conv.dilation = (dilation,) * 3
                    conv.padding = (dilation,) * 3
    return net


def build_network(dilated: bool = True) -> nn.Module:
    """MONAI's ResNet-50 in the MedicalNet layout (random weights), dilated as MedicalNet's unless ``dilated=False``.
    Its forward maps ``(N, 1, D, H, W)`` to pooled features ``(N, 2048)``."""
    nets = import_monai()
    net = nets.resnet50(spatial_dims=3, n_input_channels=1, conv1_t_size=7, conv1_t_stride=2, shortcut_type="B",
                        bias_downsample=False, feed_forward=False)
    return dilate_like_medicalnet(net) if dilated else net


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a weights file in the published layout, ``module.`` prefixes removed; ``ValueError`` naming
    ``path`` when it is not such a file."""
    payload = load_tensor_file(path, "a MedicalNet weights file")
    state = payload.get("state_dict") if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: not a MedicalNet weights file (expected a torch.save of {{'state_dict': {{...}}}}, "
                         "as resnet_50_23dataset.pth is)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_network(path: str | Path) -> nn.Module:
    """The dilated MedicalNet ResNet-50 with the weights of ``path``, in eval mode on the CPU. ``ValueError`` naming
    the file when it is not MedicalNet ResNet-50 weights (missing or unexpected tensors, wrong shapes)."""
    state = read_state_dict(path)
    net = build_network()
    expected = net.state_dict()
    # PyTorch < 0.4.1 files have no batch-norm counters; load_state_dict fills them in (they change nothing)
    missing = sorted(k for k in set(expected) - set(state) if not k.endswith(".num_batches_tracked"))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        found = (("missing tensors", missing), ("unexpected tensors", unexpected), ("wrong-shaped tensors", wrong))
        parts = [f"{len(names)} {what} (e.g. {names[0]})" for what, names in found if names]
        raise ValueError(f"{path}: not MedicalNet ResNet-50 weights: {', '.join(parts)}")
    net.load_state_dict(state)
    return net.eval()


def check_weights_file(path: str | Path) -> None:
    """Raise ``ValueError`` naming ``path`` unless it holds MedicalNet ResNet-50 weights (checking needs monai)."""
    try:
        load_network(path)
    except MetricUnavailable as exc:
        raise ValueError(f"{path}: cannot check it is MedicalNet ResNet-50 weights without monai ({INSTALL})") from exc


class MedicalNetFeatures(FeatureNetwork):
    """Callable: volumes ``(N, 1, D, H, W)`` in [-1, 1] → MedicalNet ResNet-50 features ``(N, 2048)`` float32 on the
    CPU.

    ``weights_path``: the published weights file. ``input_range``: ``unit`` or ``signed`` (module docstring).
    Volumes per forward pass: 2 on CPU, 16 on CUDA; the batch size halves on device out-of-memory and stays halved.
    """

    name = "medicalnet-resnet50-23"
    dim = 2048
    unit = "volumes"
    batch_sizes = {"cpu": 2, "cuda": 16}
    spatial_dims = 3

    def __init__(
        self,
        weights_path: str | Path,
        input_range: str = "unit",
        device: str | torch.device = "cpu",
        batch_size: int | None = None,
        compile: bool = False,
        channels_last: bool = False,
        bf16: bool = False,
        tf32: bool = False,
    ):
        if input_range not in INPUT_RANGES:
            raise ValueError(f"input_range must be one of {', '.join(INPUT_RANGES)}; got {input_range!r}")
        self.input_range = input_range
        super().__init__(weights_path, device, batch_size, compile, channels_last, bf16, tf32)

    def load(self, weights_path: Path) -> nn.Module:
        return load_network(weights_path)

    def preprocess(self, chunk: torch.Tensor) -> torch.Tensor:
        x = chunk.float()
        return (x + 1.0) / 2.0 if self.input_range == "unit" else x
