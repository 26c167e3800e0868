"""The VQGAN's loss terms (paper eq. (1)–(3)).

* L_rec: L1 between the volume and its reconstruction.
* L_adv: the non-saturating GAN objective of eq. (2)–(3), applied by both the slice (2D) and the
  volume (3D) discriminator: D maximises ``log D(x) + log(1 - D(x̂))``, G maximises ``log D(x̂)``. Written
  with ``softplus`` on logits, which is the same function in a numerically stable form.
* L_cm (commitment) lives in the quantiser; L_cb is replaced by the EMA codebook update.
* L_fm (discriminator feature matching, as medicaldiffusion): L1 between the discriminator's activations on
  the real volume (or slice) and on its reconstruction, per layer weighted 4 / (layers), summed.
* L_perc (LPIPS on 2D slices) lives in :mod:`.perceptual`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reconstruction_loss(x: torch.Tensor, x_rec: torch.Tensor) -> torch.Tensor:
    """Mean absolute error between volumes ``(N, 1, D, H, W)``."""
    return F.l1_loss(x_rec.float(), x.float())


def discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """``-log D(x) - log(1 - D(x̂))``, averaged over patches: ``softplus(-l_real) + softplus(l_fake)``."""
    return F.softplus(-logits_real.float()).mean() + F.softplus(logits_fake.float()).mean()


def generator_adversarial_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss ``-log D(x̂)`` = ``softplus(-l_fake)``, averaged over patches."""
    return F.softplus(-logits_fake.float()).mean()


def feature_matching_loss(fake: list[torch.Tensor], real: list[torch.Tensor]) -> torch.Tensor:
    """``Σ_l 4/L · mean |f_l(x̂) - sg(f_l(x))|`` over the L activations before the logits (the last entry).

    ``fake`` and ``real``: :meth:`~.discriminators.PatchGAN.features` of the reconstruction and of the input;
    gradients flow into ``fake`` only.
    """
    layers = len(fake) - 1
    return sum(
        (4.0 / layers * F.l1_loss(f.float(), r.detach().float()) for f, r in zip(fake[:-1], real[:-1], strict=True)),
        torch.zeros((), device=fake[0].device),
    )
