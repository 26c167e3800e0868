"""The perceptual loss of the VQGAN: LPIPS (VGG16 trunk) on 2D axial slices, as medicaldiffusion uses it.

LPIPS comes from the ``lpips`` package (BSD-2), whose wheel ships the learned linear heads; the VGG16
trunk is torchvision's ImageNet checkpoint ``vgg16-397923af.pth``, a pinned ``ctbench weights`` entry
(``vgg16-imagenet``: ``ctbench weights fetch vgg16-imagenet``, or ``ctbench weights import FILE --name
vgg16-imagenet`` offline). Only its convolutional ``features.*`` are used. Slices ``(N, 1, H, W)`` in
[-1, 1] are repeated to 3 channels, LPIPS's own input range.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

VGG_WEIGHTS = "vgg16-imagenet"
"""The ``ctbench weights`` name of the VGG16 ImageNet checkpoint."""


class SlicePerceptualLoss(nn.Module):
    """LPIPS between real and reconstructed slices, averaged over the batch; frozen, always in eval mode.

    ``vgg_state``: a torchvision VGG16 state dict (its ``features.*`` entries are used; others ignored).
    """

    def __init__(self, vgg_state: dict[str, torch.Tensor]):
        super().__init__()
        import lpips

        # built on the meta device: lpips would otherwise initialise a whole random VGG16 (classifier included),
        # seconds of work for weights that are replaced right away
        with torch.device("meta"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")  # its deprecated argument
            self.lpips = lpips.LPIPS(net="vgg", pnet_rand=True, pretrained=False, verbose=False)
        own = self.lpips.state_dict()
        # lpips keeps torchvision's layer numbers inside five slices: net.slice3.10.weight is features.10.weight
        trunk = {key: "features." + key.split(".", 2)[2] for key in own if key.startswith("net.")}
        missing = sorted(s for s in trunk.values() if s not in vgg_state)
        if missing:
            raise ValueError(f"not a torchvision VGG16 state dict: no {', '.join(missing[:3])}")
        heads = torch.load(Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth", map_location="cpu",
                           weights_only=True)  # the linear heads the lpips wheel ships
        state = {key: vgg_state[s] for key, s in trunk.items()}
        state.update({key: heads[key.replace("lins.", "lin", 1)] if key.startswith("lins.") else heads[key]
                      for key in own if key.startswith("lin")})
        state.update({key: own[key] for key in own if key.startswith("scaling_layer.")})
        self.lpips.load_state_dict(state, assign=True)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> SlicePerceptualLoss:
        """Stays in eval mode (no dropout in the linear heads) whatever the caller asks."""
        return super().train(False)

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Mean LPIPS distance between slices ``(N, 1, H, W)`` in [-1, 1]; gradients flow into ``fake``."""
        return self.lpips(fake.float().expand(-1, 3, -1, -1), real.float().expand(-1, 3, -1, -1)).mean()


def load_perceptual(config: dict[str, Any]) -> tuple[SlicePerceptualLoss | None, str | None]:
    """The loss of ``config`` and the sha256 of its VGG16 weights; ``(None, None)`` when ``perceptual_weight`` is 0.

    Raises ``ValueError`` (one line: how to get the weights, or how to train without) when they are missing
    or are not the pinned file.
    """
    weight = config["vqgan"]["perceptual_weight"]
    if not weight:
        return None, None
    from ctbench.core.errors import MetricUnavailable
    from ctbench.weights import resolve

    try:
        found = resolve(VGG_WEIGHTS)
    except MetricUnavailable as exc:
        raise ValueError(
            f"vqgan.perceptual_weight is {weight} (LPIPS needs VGG16 ImageNet weights): {exc} Or set "
            "vqgan.perceptual_weight: 0 to train without the perceptual loss."
        ) from None
    state = torch.load(found.path, map_location="cpu", weights_only=True)
    return SlicePerceptualLoss(state), found.sha256
