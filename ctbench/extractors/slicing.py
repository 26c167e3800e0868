"""From a batch of volumes to the 8-bit images the feature networks see.

Quantisation (stated once, used by FID and FVD): a voxel ``v`` in [-1, 1] becomes
``u = clamp(round((v + 1) · 127.5), 0, 255)`` as uint8 (round half to even, as ``torch.round``); -1 → 0,
1 → 255. Grey becomes RGB by repeating the one channel three times (done by the extractors).

Planes of a volume ``(1, D, H, W)`` = ``(z, y, x)`` (see :mod:`ctbench.protocol`), each slice shown in
radiological display orientation (:func:`ctbench.protocol.radiological`: rows and columns reversed):

* ``xy`` (axial): D slices of ``(H, W)`` = 64 slices of 128×128, anterior up, patient's right on the left.
* ``xz`` (coronal): H slices of ``(D, W)`` = 128 slices of 64×128, superior up.
* ``yz`` (sagittal): W slices of ``(D, H)`` = 128 slices of 64×128, superior up.
"""

from __future__ import annotations

import torch

from ctbench.protocol import radiological

PLANES: tuple[str, ...] = ("xy", "xz", "yz")


def quantise_uint8(volumes: torch.Tensor) -> torch.Tensor:
    """Values in [-1, 1] (any shape, float) → uint8 in [0, 255] by ``round((v + 1) · 127.5)``, clamped."""
    if not torch.is_floating_point(volumes):
        raise TypeError(f"expected a float tensor with values in [-1, 1], got {volumes.dtype}")
    return torch.round((volumes.float() + 1) * 127.5).clamp_(0, 255).to(torch.uint8)


def check_volumes(volumes: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``volumes`` is ``(N, 1, D, H, W)`` floating point."""
    if volumes.ndim != 5 or volumes.shape[1] != 1 or not torch.is_floating_point(volumes):
        raise ValueError(f"volumes must be float (N, 1, D, H, W) in [-1, 1];"
                         f" got {tuple(volumes.shape)} {volumes.dtype}")


def plane_slices(volumes_u8: torch.Tensor, plane: str, step: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Every ``step``-th slice of ``plane`` of each volume.

    ``volumes_u8``: ``(N, 1, D, H, W)`` uint8. Returns ``(images, volume_index)``: images ``(N·S, 1, h, w)``
    uint8 (S slices per volume, volume-major order) and the index ``(N·S,)`` of the volume each slice came from.
    ``step`` > 1 subsamples slices; it exists for fast tests and is recorded in every value it touches.
    """
    v = volumes_u8[:, 0]  # (N, D, H, W)
    if plane == "xy":
        s = radiological(v[:, ::step])  # (N, S, H, W)
    elif plane == "xz":
        s = radiological(v[:, :, ::step, :].permute(0, 2, 1, 3))  # (N, S, D, W)
    elif plane == "yz":
        s = radiological(v[:, :, :, ::step].permute(0, 3, 1, 2))  # (N, S, D, H)
    else:
        raise ValueError(f"unknown plane {plane!r}; planes are {PLANES}")
    n, n_slices = s.shape[:2]
    index = torch.arange(n).repeat_interleave(n_slices)
    return s.reshape(n * n_slices, 1, *s.shape[2:]).contiguous(), index


def axial_frames(volumes_u8: torch.Tensor) -> torch.Tensor:
    """Volumes ``(N, 1, D, H, W)`` uint8 as videos ``(N, D, H, W)``: time = z inferior → superior, frames as ``xy``."""
    return radiological(volumes_u8[:, 0])


def resize_like_tf1(images: torch.Tensor, size: int) -> torch.Tensor:
    """Float images ``(B, C, h, w)`` → ``(B, C, size, size)`` by TensorFlow 1's bilinear resize (align_corners=False),
    torch-fidelity's bit-exact port, which the TF-trained InceptionV3 and I3D were fed with."""
    # imported here: torch_fidelity's package import pulls torchvision and torch._dynamo (seconds), which listing
    # metrics or reading records never needs
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    return interpolate_bilinear_2d_like_tensorflow1x(images, size=(size, size), align_corners=False)
