"""PatchGAN discriminators of the VQGAN: a 2D one on random axial slices and a 3D one on whole volumes.

Each maps its input to a grid of real/fake logits (one per receptive-field patch). Inputs are
``(N, 1, H, W)`` slices or ``(N, 1, D, H, W)`` volumes in [-1, 1]. :meth:`PatchGAN.features` also returns the
activations after each LeakyReLU, which the generator's feature-matching loss compares between real and fake.
"""

from __future__ import annotations

import torch
from torch import nn


class PatchGAN(nn.Module):
    """conv-LeakyReLU, then ``n_layers`` × conv-norm-LeakyReLU (channels ×2 up to ×8), then a conv to 1 logit."""

    def __init__(self, conv: type[nn.Module], norm: type[nn.Module], channels: int, n_layers: int):
        super().__init__()
        layers: list[nn.Module] = [conv(1, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        ch = channels
        for i in range(1, n_layers + 1):
            out = channels * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [conv(ch, out, 4, stride=stride, padding=1, bias=False), norm(out), nn.LeakyReLU(0.2)]
            ch = out
        layers.append(conv(ch, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The ``n_layers + 1`` activations after each LeakyReLU, then the logits (last)."""
        out = []
        for layer in self.net:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                out.append(x)
        return [*out, x]


class SliceDiscriminator(PatchGAN):
    """2D PatchGAN: ``(N, 1, H, W)`` → logits ``(N, 1, h, w)``."""

    def __init__(self, channels: int = 64, n_layers: int = 3):
        super().__init__(nn.Conv2d, nn.BatchNorm2d, channels, n_layers)


class VolumeDiscriminator(PatchGAN):
    """3D PatchGAN: ``(N, 1, D, H, W)`` → logits ``(N, 1, d, h, w)``."""

    def __init__(self, channels: int = 64, n_layers: int = 3):
        super().__init__(nn.Conv3d, nn.BatchNorm3d, channels, n_layers)


def axial_indices(volumes: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One random axial index per volume of ``(N, 1, D, H, W)``: ``(N,)`` int64, drawn on the CPU."""
    return torch.randint(0, volumes.shape[2], (volumes.shape[0],), generator=generator)


def axial_slices(volumes: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Slice ``indices[i]`` of volume i: ``(N, 1, D, H, W)`` → ``(N, 1, H, W)``."""
    n = volumes.shape[0]
    return volumes[torch.arange(n, device=volumes.device), :, indices.to(volumes.device)]


def random_axial_slices(volumes: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One random axial slice per volume: ``(N, 1, D, H, W)`` → ``(N, 1, H, W)`` (indices drawn on the CPU)."""
    return axial_slices(volumes, axial_indices(volumes, generator))
