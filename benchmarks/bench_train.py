"""Training-step time, peak memory and sampling time of the reference generator ``vqgan-ddpm``.

Cases, each measured in a fresh process (so peak memory is its own), in the same run:

* ``vqgan G+D step``: one generator update and one discriminator update at batch 2; the
  discriminator step reuses the generator pass's reconstructions (detached).
* ``vqgan G+D step, naive`` (baseline): the same, but the discriminator step runs the autoencoder
  again with autograd on, as the public medicaldiffusion implementation does.
* ``ddpm step``: one denoiser update (hybrid loss) at batch 2 on latents, encoder pass included.
* ``sample, ddim 50``: one volume: 50 DDIM steps + decode (ctbench's fast sampler).
* ``sample, ancestral T`` (baseline): one volume: all T ancestral steps + decode.

Sizes: on CUDA the paper's (64×128×128 volumes, VQGAN base 16, UNet base 256, T = 1000, bf16
autocast, channels-last); on the CPU a reduced size (32×64×64 volumes, UNet base 16, T = 1000) on
``--threads`` threads (default 1). Peak memory is ``torch.cuda.max_memory_allocated`` on CUDA and the growth of the
process's peak RSS over its size after building the models on the CPU.

Run: ``python benchmarks/bench_train.py [--repeats 5] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

import torch

from ctbench.api import deep_update
from generators.vqgan_ddpm.build import build_diffusion, build_discriminators, build_unet, build_vqgan, latent_shape
from generators.vqgan_ddpm.discriminators import random_axial_slices
from generators.vqgan_ddpm.losses import discriminator_loss, generator_adversarial_loss, reconstruction_loss
from generators.vqgan_ddpm.samplers import make_sampler
from generators.vqgan_ddpm.train import Runtime, ddpm_step, vqgan_step
from generators.vqgan_ddpm.variants import default_config

CPU_SIZE = {"data": {"volume_shape": [32, 64, 64]}, "ddpm": {"unet": {"base_channels": 16}}}


def _config(device: str) -> dict:
    cfg = default_config()
    return cfg if device == "cuda" else deep_update(cfg, CPU_SIZE)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def naive_vqgan_step(model, discs, opt_g, opt_d, x, cfg, g, rt) -> None:
    """The baseline: a G step, then a D step that recomputes the reconstruction with autograd on."""
    dcfg = cfg["vqgan"]["discriminator"]
    opt_g.zero_grad(set_to_none=True)
    with rt.autocast():
        out = model(x, g)
        for p in discs.parameters():
            p.requires_grad_(False)
        ls, lv = discs(random_axial_slices(out.reconstruction, g), out.reconstruction)
        for p in discs.parameters():
            p.requires_grad_(True)
        loss = cfg["vqgan"]["rec_weight"] * reconstruction_loss(x, out.reconstruction) + out.quantized.commitment_loss
        loss = loss + dcfg["slice_weight"] * generator_adversarial_loss(ls) + dcfg[
            "volume_weight"] * generator_adversarial_loss(lv)
    loss.backward()
    opt_g.step()
    opt_d.zero_grad(set_to_none=True)
    with rt.autocast():
        x_rec = model(x, g).reconstruction  # the recomputed forward pass
        both = torch.cat([x, x_rec.detach()])
        ls, lv = discs(random_axial_slices(both, g), both)
        d_loss = discriminator_loss(ls[:2], ls[2:]) + discriminator_loss(lv[:2], lv[2:])
    d_loss.backward()
    opt_d.step()


def _case(name: str, device: str, repeats: int, threads: int, queue: mp.Queue) -> None:
    torch.manual_seed(0)
    if device == "cpu":
        torch.set_num_threads(threads)
    cfg = _config(device)
    rt = Runtime(device=torch.device(device), bf16=True)
    shape = tuple(cfg["data"]["volume_shape"])
    x = rt.to_device(torch.rand(2, 1, *shape) * 2 - 1)
    vq = build_vqgan(cfg).to(rt.device)
    if device == "cuda":
        vq = vq.to(memory_format=torch.channels_last_3d)
    if name.startswith("vqgan"):
        discs = build_discriminators(cfg).to(rt.device)
        opt_g = torch.optim.Adam(vq.parameters(), lr=1e-4, betas=(0.5, 0.9))
        opt_d = torch.optim.Adam(discs.parameters(), lr=1e-4, betas=(0.5, 0.9))
        after_warmup = cfg["vqgan"]["discriminator"]["start_step"]
        if name.endswith("naive"):
            def run(i):
                naive_vqgan_step(vq, discs, opt_g, opt_d, x, cfg, torch.Generator().manual_seed(i), rt)
        else:
            def run(i):
                vqgan_step(vq, discs, opt_g, opt_d, [x], after_warmup, cfg, torch.Generator().manual_seed(i), rt)
    else:
        unet = build_unet(cfg).to(rt.device)
        if device == "cuda":
            unet = unet.to(memory_format=torch.channels_last_3d)
        diffusion = build_diffusion(cfg)
        vq.train()(x)  # initialise the codebook
        vq.eval()
        if name == "ddpm step":
            ema = build_unet(cfg).to(rt.device)
            opt = torch.optim.AdamW(unet.parameters(), lr=1e-4)

            def run(i):
                with torch.no_grad(), rt.autocast():
                    z = vq.encode(x).z_q.float()
                ddpm_step(diffusion, unet, ema, opt, [z], cfg, torch.Generator().manual_seed(i), rt)
        else:
            unet.eval()
            sampler = make_sampler("ddim", diffusion, 50) if "ddim" in name else make_sampler("ancestral", diffusion)

            def model(z, t):
                with rt.autocast():
                    return unet(z, t).float()

            def run(i):
                with torch.no_grad():
                    z = sampler.sample(model, latent_shape(cfg), [torch.Generator().manual_seed(i)], rt.device)
                    with rt.autocast():
                        vq.decode(z)
            repeats = 1 if "ancestral" in name else repeats
    run(0)  # warm-up (allocator, cuDNN autotune)
    _sync(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    base = _rss_mb()
    times = []
    for i in range(repeats):
        t = time.perf_counter()
        run(i + 1)
        _sync(device)
        times.append(time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base)
    queue.put((sorted(times)[len(times) // 2], peak))


CASES = [
    ("vqgan G+D step", "vqgan G+D step, naive"),
    ("vqgan G+D step, naive", None),
    ("ddpm step", None),
    ("sample, ddim 50", "sample, ancestral T"),
    ("sample, ancestral T", None),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    args = ap.parse_args()
    cfg = _config(args.device)
    ctx = mp.get_context("spawn")
    results = {}
    for name, _ in CASES:
        q = ctx.Queue()
        p = ctx.Process(target=_case, args=(name, args.device, args.repeats, args.threads, q))
        p.start()
        results[name] = q.get()
        p.join()
        print(f"{name}: {results[name][0]:.3f} s", flush=True)
    size = "x".join(map(str, cfg["data"]["volume_shape"]))
    threads = f"{args.threads} thread(s)" if args.device == "cpu" else torch.cuda.get_device_name()
    print(f"\nvqgan-ddpm on {args.device} ({threads}), volumes {size}, batch 2, "
          f"UNet base {cfg['ddpm']['unet']['base_channels']}, T = {cfg['ddpm']['diffusion']['timesteps']}"
          f"{', bf16 autocast' if args.device == 'cuda' else ', fp32'}")
    print(f"| {'case':<24} | {'time (s)':>9} | {'vs baseline':>13} | {'peak MB':>8} |")
    print(f"|{'-' * 26}|{'-' * 11}:|{'-' * 14}:|{'-' * 9}:|")
    for name, baseline in CASES:
        t, peak = results[name]
        ratio = f"{results[baseline][0] / t:.2f}x faster" if baseline else "baseline" if any(
            b == name for _, b in CASES) else ""
        print(f"| {name:<24} | {t:>9.3f} | {ratio:>13} | {peak:>8.0f} |")


if __name__ == "__main__":
    main()
