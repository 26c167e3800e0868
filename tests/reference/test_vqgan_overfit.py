"""Real learning: a tiny VQGAN overfits one volume, a tiny denoiser overfits one latent."""

from __future__ import annotations

import copy

import torch

from ctbench_generators.vqgan_ddpm.build import build_diffusion, build_discriminators, build_unet, build_vqgan
from ctbench_generators.vqgan_ddpm.runtime import Runtime
from ctbench_generators.vqgan_ddpm.steps import ddpm_step, vqgan_step


def test_tiny_vqgan_overfits_one_volume(tiny_config, toy_volumes):
    cfg = tiny_config("full", vqgan={"discriminator": {"start_step": 40}})
    torch.manual_seed(0)
    model, discs = build_vqgan(cfg).train(), build_discriminators(cfg).train()
    opt_g = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(discs.parameters(), lr=2e-4, betas=(0.5, 0.9))
    x = toy_volumes(1)[0][None]
    rt = Runtime()
    errors = []
    for step in range(60):
        logs = vqgan_step(model, discs, opt_g, opt_d, [x], step, cfg, torch.Generator().manual_seed(step), rt)
        errors.append(logs["rec"])
    assert "g_adv" in logs and "d" in logs  # the adversarial terms ran after the warm-up
    model.eval()
    with torch.no_grad():
        final = (model(x).reconstruction - x).abs().mean().item()
    assert final < 0.35 * errors[0], (errors[0], final)


def test_tiny_denoiser_overfits_one_latent(tiny_config):
    cfg = tiny_config()
    torch.manual_seed(0)
    unet = build_unet(cfg)
    ema = copy.deepcopy(unet)
    diffusion = build_diffusion(cfg)
    opt = torch.optim.AdamW(unet.parameters(), lr=2e-3)
    z = torch.randn(1, 8, 4, 8, 8, generator=torch.Generator().manual_seed(0)).repeat(4, 1, 1, 1, 1)
    g = torch.Generator().manual_seed(1)
    t_eval = torch.randint(20, 100, (16,), generator=g)
    noise_eval = torch.randn((16, 8, 4, 8, 8), generator=g)

    def held_out_mse() -> float:
        with torch.no_grad():
            terms = diffusion.training_losses(unet, z[:1].repeat(16, 1, 1, 1, 1), t_eval, noise_eval)
        return terms["mse"].mean().item()

    start = held_out_mse()
    for step in range(80):
        ddpm_step(diffusion, unet, ema, opt, [z], cfg, torch.Generator().manual_seed(step), Runtime())
    assert held_out_mse() < 0.5 * start
    assert any(not torch.equal(a, b) for a, b in zip(ema.parameters(), unet.parameters(), strict=True))
