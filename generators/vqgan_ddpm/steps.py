"""One optimiser step of each stage, and what the DDPM stage measures or updates around it.

The VQGAN step (paper eq. (1)–(3) plus medicaldiffusion's terms):
``rec_weight · L1 + L_cm + perceptual_weight · LPIPS(slices)`` from the first step, and after the
discriminators' warm-up ``slice_weight · (L_adv + feature_weight · L_fm)`` for the 2D discriminator and the
same with ``volume_weight`` for the 3D one. Gradients are clipped to ``train.grad_clip`` (L2 norm over all
parameters of the network updated; None = no clipping) before every optimiser step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .data import VolumeBatches, step_generator
from .diffusion import GaussianDiffusion
from .discriminators import axial_indices, axial_slices
from .losses import discriminator_loss, feature_matching_loss, generator_adversarial_loss, reconstruction_loss
from .runtime import Runtime, frozen, maybe_no_sync, unwrap
from .vqgan import VQGAN


def clip_and_step(opt: torch.optim.Optimizer, max_norm: float | None) -> None:
    """Clip the gradients of ``opt``'s parameters to L2 norm ``max_norm`` (None: do not), then step."""
    if max_norm:
        params = [p for group in opt.param_groups for p in group["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, max_norm)
    opt.step()


def vqgan_step(
    model: nn.Module,
    discriminators: nn.Module | None,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer | None,
    micro_batches: Sequence[torch.Tensor],
    step: int,
    config: dict[str, Any],
    generator: torch.Generator,
    rt: Runtime,
    *,
    perceptual: nn.Module | None = None,
) -> dict[str, float]:
    """One generator update, then (after the warm-up) one discriminator update on the same reconstructions.

    The discriminator step reuses the generator pass's reconstructions (detached) instead of running
    the autoencoder again. ``micro_batches``: ``grad_accum`` tensors ``(B, 1, D, H, W)`` on the device.
    ``perceptual``: the LPIPS slice loss (:mod:`.perceptual`), or None when ``perceptual_weight`` is 0. The
    perceptual and feature-matching terms compare the same random axial slice of input and reconstruction.
    Returns the mean losses of the step.
    """
    v = config["vqgan"]
    dcfg = v["discriminator"]
    adversarial = discriminators is not None and step >= dcfg["start_step"]
    fm_weight = dcfg["feature_weight"]
    k = len(micro_batches)
    logs: dict[str, float] = {}

    def log(name: str, value: torch.Tensor) -> None:
        logs[name] = logs.get(name, 0.0) + float(value.detach()) / k

    opt_g.zero_grad(set_to_none=True)
    reconstructions = []
    for i, x in enumerate(micro_batches):
        with maybe_no_sync(model, i == k - 1):
            with rt.autocast():
                out = model(x, generator)
                rec = reconstruction_loss(x, out.reconstruction)
                loss = v["rec_weight"] * rec + out.quantized.commitment_loss
                idx = axial_indices(x, generator)
                real_s, fake_s = axial_slices(x, idx), axial_slices(out.reconstruction, idx)
                if perceptual is not None:
                    perc = perceptual(real_s, fake_s)
                    loss = loss + v["perceptual_weight"] * perc
                    log("perc", perc)
                if adversarial:
                    with frozen(discriminators) as d:
                        fake_fs, fake_fv = d.slice.features(fake_s), d.volume.features(out.reconstruction)
                        g_adv = dcfg["slice_weight"] * generator_adversarial_loss(fake_fs[-1]) + dcfg[
                            "volume_weight"
                        ] * generator_adversarial_loss(fake_fv[-1])
                        loss = loss + g_adv
                        log("g_adv", g_adv)
                        if fm_weight:
                            with torch.no_grad():
                                real_fs, real_fv = d.slice.features(real_s), d.volume.features(x)
                            fm = dcfg["slice_weight"] * feature_matching_loss(fake_fs, real_fs) + dcfg[
                                "volume_weight"
                            ] * feature_matching_loss(fake_fv, real_fv)
                            loss = loss + fm_weight * fm
                            log("fm", fm)
            rt.backward(loss / k)
        reconstructions.append(out.reconstruction.detach())
        log("rec", rec)
        log("commit", out.quantized.commitment_loss)
        log("perplexity", out.quantized.perplexity)
    clip_and_step(opt_g, v["train"]["grad_clip"])

    if adversarial:
        opt_d.zero_grad(set_to_none=True)
        for i, (x, x_rec) in enumerate(zip(micro_batches, reconstructions, strict=True)):
            with maybe_no_sync(discriminators, i == k - 1):
                with rt.autocast():
                    both = torch.cat([x, x_rec])
                    idx = axial_indices(x, generator).repeat(2)  # the real and the fake slice at the same height
                    logits_s, logits_v = discriminators(axial_slices(both, idx), both)
                    n = x.shape[0]
                    d_loss = dcfg["slice_weight"] * discriminator_loss(logits_s[:n], logits_s[n:]) + dcfg[
                        "volume_weight"
                    ] * discriminator_loss(logits_v[:n], logits_v[n:])
                rt.backward(d_loss / k)
            log("d", d_loss)
        clip_and_step(opt_d, v["train"]["grad_clip"])
    return logs


def ddpm_step(
    diffusion: GaussianDiffusion,
    unet: nn.Module,
    ema: nn.Module,
    opt: torch.optim.Optimizer,
    latents: Sequence[torch.Tensor],
    config: dict[str, Any],
    generator: torch.Generator,
    rt: Runtime,
) -> dict[str, float]:
    """One denoiser update with the hybrid loss on scaled latents ``(B, C, d, h, w)``, then the EMA update."""
    d = config["ddpm"]
    k = len(latents)
    logs = {"loss": 0.0, "mse": 0.0, "vlb": 0.0}
    opt.zero_grad(set_to_none=True)
    for i, z in enumerate(latents):
        t = torch.randint(0, diffusion.num_timesteps, (z.shape[0],), generator=generator).to(z.device)
        noise = torch.randn(z.shape, generator=generator).to(z.device)
        with maybe_no_sync(unet, i == k - 1):
            with rt.autocast():
                terms = diffusion.training_losses(unet, z, t, noise, d["diffusion"]["vlb_weight"])
            rt.backward(terms["loss"].mean() / k)
        for name in logs:
            logs[name] += float(terms[name].mean().detach()) / k
    clip_and_step(opt, d["train"]["grad_clip"])
    update_ema(ema, unwrap(unet), d["train"]["ema_decay"])
    return logs


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema ← decay · ema + (1 - decay) · model`` for parameters; buffers are copied."""
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p, 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers(), strict=True):
        e.copy_(b)


@torch.no_grad()
def measure_latents(
    vqgan: VQGAN, batches: VolumeBatches, n_batches: int, rt: Runtime, center: bool
) -> tuple[float, torch.Tensor | None]:
    """``(scale, mean)`` of the quantised latents over ``n_batches`` batches (all ranks).

    ``center``: ``mean`` is the per-position mean latent ``(C, d, h, w)`` and ``scale`` 1 / std of the latents
    minus it; otherwise ``mean`` is None and ``scale`` 1 / std of the latents. Either way
    ``(z - mean) · scale`` has unit variance.
    """
    z = torch.cat([
        vqgan.encode(rt.to_device(batches.batch(i, step_generator(0, "scale", rt.rank, i)))).z_q.double().cpu()
        for i in range(n_batches)
    ])
    count = torch.tensor([float(z.shape[0])], dtype=torch.float64)
    total = z.sum(0)
    if rt.world_size > 1:
        dist.all_reduce(count)
        dist.all_reduce(total)
    mean = total / count if center else torch.full_like(total, float(total.mean() / count))
    moments = torch.stack([((z - mean) ** 2).sum(), torch.tensor(float(z.numel()), dtype=torch.float64)])
    if rt.world_size > 1:
        dist.all_reduce(moments)
    std = (moments[0] / moments[1]).clamp_min(1e-12).sqrt()
    return float(1.0 / std), (mean.float() if center else None)
