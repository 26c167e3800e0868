"""Gradient accumulation: k micro-batches give the mean of their gradients, with the same random draws."""

from __future__ import annotations

import copy

import torch

from ctbench_generators.vqgan_ddpm.build import build_diffusion, build_unet
from ctbench_generators.vqgan_ddpm.runtime import Runtime
from ctbench_generators.vqgan_ddpm.steps import ddpm_step


def test_ddpm_step_accumulates_the_mean_gradient(tiny_config):
    cfg = tiny_config(ddpm={"train": {"ema_decay": 0.5, "grad_clip": None}})
    torch.manual_seed(0)
    unet, diffusion = build_unet(cfg), build_diffusion(cfg)
    with torch.no_grad():  # move the zero-initialised output layers off zero, so every layer gets a gradient
        for p in unet.parameters():
            p.add_(0.02 * torch.randn(p.shape))
    start = copy.deepcopy(unet)
    ema = copy.deepcopy(unet)
    z = torch.randn(4, 8, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    micro = [z[:2], z[2:]]
    ddpm_step(diffusion, unet, ema, torch.optim.SGD(unet.parameters(), lr=1.0), micro, cfg,
              torch.Generator().manual_seed(5), Runtime())

    # by hand: the same draws in the same order (t then noise, per micro-batch), mean of the two losses
    ref = copy.deepcopy(start)
    g = torch.Generator().manual_seed(5)
    total = 0
    for m in micro:
        t = torch.randint(0, diffusion.num_timesteps, (2,), generator=g)
        noise = torch.randn(m.shape, generator=g)
        total = total + diffusion.training_losses(ref, m, t, noise, 0.001)["loss"].mean() / 2
    total.backward()
    for p_step, p0, p_ref in zip(unet.parameters(), start.parameters(), ref.parameters(), strict=True):
        assert p_ref.grad is not None and p_ref.grad.abs().max() > 0
        assert torch.allclose(p_step, p0 - p_ref.grad, atol=1e-5)  # SGD, lr 1
    for e, p0, p1 in zip(ema.parameters(), start.parameters(), unet.parameters(), strict=True):
        assert torch.allclose(e, 0.5 * p0 + 0.5 * p1, atol=1e-6)  # the EMA after one step, decay 0.5
