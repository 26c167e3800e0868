"""bf16 autocast and channels-last, run on the CPU so the GPU path is alive before a GPU sees it.

The same step from the same weights, batch and random draws, once in fp32 and once with bf16 autocast
(and once with channels-last): the losses and updated weights must be finite and close to fp32's, and
the networks must really have run in bf16 (a forward hook sees bf16 conv outputs), so a silently
disabled path fails. bf16 and channels-last together are refused on the CPU (see ``Runtime``).
"""

from __future__ import annotations

import copy

import pytest
import torch

from ctbench_generators.vqgan_ddpm.build import build_diffusion, build_discriminators, build_unet, build_vqgan
from ctbench_generators.vqgan_ddpm.runtime import Runtime, precision_for
from ctbench_generators.vqgan_ddpm.samplers import DDIMSampler
from ctbench_generators.vqgan_ddpm.steps import ddpm_step, vqgan_step

FP32 = Runtime()
BF16 = Runtime(bf16=True)
CHANNELS_LAST = Runtime(channels_last=True)


def _conv_dtypes(module: torch.nn.Module) -> list[torch.dtype]:
    """Record the output dtype of every 3D convolution of ``module`` while it runs."""
    seen: list[torch.dtype] = []
    for m in module.modules():
        if isinstance(m, torch.nn.Conv3d):
            m.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    return seen


def _flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def _update_error(before: torch.Tensor, ref: torch.nn.Module, other: torch.nn.Module) -> float:
    """‖Δ_other − Δ_ref‖ / ‖Δ_ref‖ of one SGD step's weight updates Δ (so it compares the gradients)."""
    d_ref, d_other = _flat(ref) - before, _flat(other) - before
    return ((d_other - d_ref).norm() / d_ref.norm()).item()


@pytest.mark.parametrize("adversarial", [False, True])
def test_bf16_and_channels_last_vqgan_steps_are_finite_and_close_to_fp32(tiny_config, toy_volumes, adversarial):
    cfg = tiny_config("full", vqgan={"discriminator": {"start_step": 0 if adversarial else 10}})
    torch.manual_seed(0)
    models = {"fp32": (build_vqgan(cfg).train(), build_discriminators(cfg).train())}
    models["bf16"], models["channels_last"] = copy.deepcopy(models["fp32"]), copy.deepcopy(models["fp32"])
    x = torch.stack(toy_volumes(2))
    before = _flat(models["fp32"][0])
    logs, dtypes = {}, {}
    for name, rt in (("fp32", FP32), ("bf16", BF16), ("channels_last", CHANNELS_LAST)):
        vq, discs = (rt.prepare(m) for m in models[name])
        dtypes[name] = _conv_dtypes(vq)
        opt_g, opt_d = (torch.optim.SGD(m.parameters(), lr=1e-2) for m in (vq, discs))
        batch = rt.to_device(x)
        logs[name] = vqgan_step(vq, discs, opt_g, opt_d, [batch], 0, cfg, torch.Generator().manual_seed(1), rt)
    assert set(dtypes["fp32"]) == set(dtypes["channels_last"]) == {torch.float32}
    assert set(dtypes["bf16"]) == {torch.bfloat16}
    vq_cl, discs_cl = models["channels_last"]
    assert vq_cl.encoder.net[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert discs_cl.slice.net[0].weight.is_contiguous(memory_format=torch.channels_last)  # the 2D one, too
    assert logs["bf16"].keys() == logs["fp32"].keys() >= {"rec", "commit"} | ({"g_adv", "d"} if adversarial else set())
    for key, value in logs["fp32"].items():
        assert torch.isfinite(torch.tensor(logs["bf16"][key])), key
        assert logs["bf16"][key] == pytest.approx(value, rel=0.05, abs=1e-3), key
        assert logs["channels_last"][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    # The generator's weight update: fp32 vs bf16 gradients. Through the untrained discriminator the
    # adversarial gradient is small and bf16-sensitive (measured: 33% update error with it, 2.9% without);
    # garbage or a NaN would give an error of 1 or more.
    errors = {k: _update_error(before, models["fp32"][0], models[k][0]) for k in ("bf16", "channels_last")}
    assert torch.isfinite(_flat(models["bf16"][0])).all() and torch.isfinite(_flat(models["bf16"][1])).all()
    assert errors["bf16"] < (0.5 if adversarial else 0.05) and errors["channels_last"] < 1e-3, errors
    codes = [m[0].quantizer.embedding for m in models.values()]
    assert {c.dtype for c in codes} == {torch.float32}  # the codebook stays fp32 under autocast


def test_bf16_ddpm_step_and_sampling_are_finite_and_close_to_fp32(tiny_config):
    cfg = tiny_config()
    torch.manual_seed(0)
    unet = build_unet(cfg)
    torch.nn.init.normal_(unet.head[-1].weight, std=0.02)  # a non-trivial output (the head starts at zero)
    vq = build_vqgan(cfg).train()
    vq(torch.rand(2, 1, 16, 32, 32) * 2 - 1)  # initialise the codebook
    vq.eval()
    diffusion = build_diffusion(cfg)
    z = torch.randn(4, 8, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    results = {}
    for name, rt in (("fp32", FP32), ("bf16", BF16)):
        net = rt.prepare(copy.deepcopy(unet))
        dtypes = _conv_dtypes(net)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
        logs = ddpm_step(diffusion, net, copy.deepcopy(net), opt, [rt.to_device(z)], cfg,
                         torch.Generator().manual_seed(3), rt)
        net.eval()

        def model(x, t, net=net, rt=rt):
            with rt.autocast():
                return net(x, t).float()

        with torch.no_grad():
            latents = DDIMSampler(diffusion, 10).sample(model, (8, 4, 8, 8), [torch.Generator().manual_seed(4)])
            with rt.autocast():
                volume = vq.decode(latents).float()
        results[name] = (logs, latents, volume, set(dtypes))
    (logs32, lat32, vol32, dt32), (logs16, lat16, vol16, dt16) = results["fp32"], results["bf16"]
    assert dt32 == {torch.float32} and dt16 == {torch.bfloat16}
    for key in ("loss", "mse", "vlb"):
        assert logs16[key] == pytest.approx(logs32[key], rel=0.05), key
    assert torch.isfinite(lat16).all() and torch.isfinite(vol16).all()
    assert lat16.dtype == vol16.dtype == torch.float32
    assert (lat16 - lat32).abs().max() < 0.05 * lat32.abs().max()
    assert (vol16 - vol32).abs().mean() < 0.05 * vol32.abs().mean()


def test_precision_comes_from_the_config_per_device_type(tiny_config):
    cfg = tiny_config()
    assert precision_for(cfg, torch.device("cuda", 0)) == {"bf16": True, "channels_last": True}
    assert precision_for(cfg, torch.device("cpu")) == {"bf16": False, "channels_last": False}
    on = tiny_config(bf16={"cpu": True})
    assert precision_for(on, torch.device("cpu")) == {"bf16": True, "channels_last": False}
    with pytest.raises(ValueError, match="bf16 with channels_last on the CPU"):
        Runtime(bf16=True, channels_last=True)
