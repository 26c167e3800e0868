"""PatchGAN discriminators of the VQGAN: a 2D one on random axial slices and a 3D one on whole volumes.

Each maps its input to a grid of real/fake logits (one per receptive-field patch). Inputs are
``(N, 1, H, W)`` slices or ``(N, 1, D, H, W)`` volumes in [-1, 1].
"""

from __future__ import annotations

import torch
from torch import nn


def _patchgan(conv: type[nn.Module], norm: type[nn.Module], channels: int, n_layers: int) -> nn.Sequential:
    layers: list[nn.Module] = [conv(1, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
    ch = channels
    for i in range(1, n_layers + 1):
        out = channels * min(2**i, 8)
        stride = 2 if i < n_layers else 1
        layers += [conv(ch, out, 4, stride=stride, padding=1, bias=False), norm(out), nn.LeakyReLU(0.2)]
        ch = out
    layers.append(conv(ch, 1, 4, stride=1, padding=1))
    return nn.Sequential(*layers)


class SliceDiscriminator(nn.Module):
    """2D PatchGAN: ``(N, 1, H, W)`` → logits ``(N, 1, h, w)``."""

    def __init__(self, channels: int = 64, n_layers: int = 3):
        super().__init__()
        self.net = _patchgan(nn.Conv2d, nn.BatchNorm2d, channels, n_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class VolumeDiscriminator(nn.Module):
    """3D PatchGAN: ``(N, 1, D, H, W)`` → logits ``(N, 1, d, h, w)``."""

    def __init__(self, channels: int = 64, n_layers: int = 3):
        super().__init__()
        self.net = _patchgan(nn.Conv3d, nn.BatchNorm3d, channels, n_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def random_axial_slices(volumes: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One random axial slice per volume: ``(N, 1, D, H, W)`` → ``(N, 1, H, W)`` (indices drawn on the CPU)."""
    n, _, d = volumes.shape[:3]
    idx = torch.randint(0, d, (n,), generator=generator).to(volumes.device)
    return volumes[torch.arange(n, device=volumes.device), :, idx]
