"""Training-step time, peak memory and sampling time of the reference generator ``vqgan-ddpm``.

Cases, each measured in a fresh process (so peak memory is its own), in the same run:

* ``vqgan G+D step``: one generator update and one discriminator update at batch 2, with the recipe's
  terms: LPIPS on slices (a random VGG16 trunk: same cost as the ImageNet one), discriminator feature
  matching, gradient clipping; the discriminator step reuses the generator pass's reconstructions (detached).
* ``..., no LPIPS`` / ``no feature matching`` / ``no clipping`` / ``no new terms``: the same step with one
  (or all three) of those terms off; the table shows what each costs and what all three cost together.
* ``vqgan G+D step, naive`` (baseline of ``no new terms``): the discriminator step runs the autoencoder
  again with autograd on, as the public medicaldiffusion implementation does.
* ``ddpm step``: one denoiser update (hybrid loss) at batch 2 on latents, encoder pass included.
* ``sample, ddim 50``: one volume: 50 DDIM steps + decode (ctbench's fast sampler).
* ``sample, ancestral T`` (baseline): one volume: all T ancestral steps + decode.

Sizes: ``--device cuda`` runs the paper's (64×128×128 volumes, VQGAN base 16 with 16,384 codes, UNet
base 256, T = 1000); ``--device cpu`` a reduced size (32×64×64 volumes, UNet base 16, T = 1000) on
``--threads`` threads (default 1); ``--tiny`` the toy config ``tiny.yaml`` of the plugin (16×32×32,
T = 100) on either device, under a minute on one CPU core. Precision: ``--precision auto`` uses the
config's per-device settings (bf16 autocast + channels-last on CUDA, fp32 on the CPU); ``fp32`` and
``bf16`` force one on any device (bf16 comes with channels-last on CUDA only; see ``Runtime``). Peak
memory is ``torch.cuda.max_memory_allocated`` on CUDA and, on the CPU, the growth of the process's peak
RSS over its size after building the models.

Run: ``python benchmarks/bench_train.py [--repeats 5] [--device cuda] [--precision fp32] [--tiny]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import queue
import resource
import time
from importlib.resources import files
from typing import Any

import torch
import yaml

from ctbench.api import deep_update
from ctbench_generators.vqgan_ddpm.build import (
    build_diffusion,
    build_discriminators,
    build_unet,
    build_vqgan,
    latent_shape,
)
from ctbench_generators.vqgan_ddpm.discriminators import random_axial_slices
from ctbench_generators.vqgan_ddpm.losses import discriminator_loss, generator_adversarial_loss, reconstruction_loss
from ctbench_generators.vqgan_ddpm.perceptual import SlicePerceptualLoss
from ctbench_generators.vqgan_ddpm.runtime import Runtime, precision_for
from ctbench_generators.vqgan_ddpm.samplers import make_sampler
from ctbench_generators.vqgan_ddpm.steps import ddpm_step, vqgan_step
from ctbench_generators.vqgan_ddpm.variants import default_config

CPU_SIZE = {"data": {"volume_shape": [32, 64, 64]}, "ddpm": {"unet": {"base_channels": 16}}}
TINY_YAML = files("ctbench_generators.vqgan_ddpm") / "configs" / "tiny.yaml"


def _config(device: str, tiny: bool) -> dict:
    cfg = default_config()
    if tiny:
        return deep_update(cfg, yaml.safe_load(TINY_YAML.read_text()))
    return cfg if device == "cuda" else deep_update(cfg, CPU_SIZE)


def _runtime(cfg: dict, device: str, precision: str) -> Runtime:
    dev = torch.device(device)
    if precision == "auto":
        return Runtime(device=dev, **precision_for(cfg, dev))
    on = precision == "bf16"
    return Runtime(device=dev, bf16=on, channels_last=on and dev.type == "cuda")  # see Runtime: not both on CPU


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
    rt.backward(loss)
    opt_g.step()
    opt_d.zero_grad(set_to_none=True)
    with rt.autocast():
        x_rec = model(x, g).reconstruction  # the recomputed forward pass
        both = torch.cat([x, x_rec.detach()])
        ls, lv = discs(random_axial_slices(both, g), both)
        n = x.shape[0]
        d_loss = discriminator_loss(ls[:n], ls[n:]) + discriminator_loss(lv[:n], lv[n:])
    rt.backward(d_loss)
    opt_d.step()


def _random_vgg16() -> dict[str, torch.Tensor]:
    """A random torchvision VGG16 trunk (``features.*``): LPIPS costs the same with it as with ImageNet weights."""
    import torchvision

    return {f"features.{k}": v for k, v in torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
            .state_dict().items()}


def _case(name: str, args: argparse.Namespace, queue: mp.Queue) -> None:
    torch.manual_seed(0)
    device, repeats = args.device, args.repeats
    if device == "cpu":
        torch.set_num_threads(args.threads)
    else:
        torch.backends.cudnn.benchmark = True  # as training does (setup_runtime)
    cfg = _config(device, args.tiny)
    rt = _runtime(cfg, device, args.precision)
    shape = tuple(cfg["data"]["volume_shape"])
    x = rt.to_device(torch.rand(2, 1, *shape) * 2 - 1)
    vq = rt.prepare(build_vqgan(cfg))
    if name.startswith("vqgan"):
        off = name.split(", ", 1)[1] if ", " in name else ""
        if off in ("no LPIPS", "no new terms"):
            cfg["vqgan"]["perceptual_weight"] = 0.0
        if off in ("no feature matching", "no new terms"):
            cfg["vqgan"]["discriminator"]["feature_weight"] = 0.0
        if off in ("no clipping", "no new terms"):
            cfg["vqgan"]["train"]["grad_clip"] = None
        perceptual = rt.prepare(SlicePerceptualLoss(_random_vgg16())) if cfg["vqgan"]["perceptual_weight"] else None
        discs = rt.prepare(build_discriminators(cfg))
        opt_g = torch.optim.Adam(vq.parameters(), lr=1e-4, betas=(0.5, 0.9))
        opt_d = torch.optim.Adam(discs.parameters(), lr=1e-4, betas=(0.5, 0.9))
        after_warmup = cfg["vqgan"]["discriminator"]["start_step"]
        if name.endswith("naive"):
            def run(i):
                naive_vqgan_step(vq, discs, opt_g, opt_d, x, cfg, torch.Generator().manual_seed(i), rt)
        else:
            def run(i):
                vqgan_step(vq, discs, opt_g, opt_d, [x], after_warmup, cfg, torch.Generator().manual_seed(i), rt,
                           perceptual=perceptual)
    else:
        unet = rt.prepare(build_unet(cfg))
        diffusion = build_diffusion(cfg)
        vq.train()(x)  # initialise the codebook
        vq.eval()
        if name == "ddpm step":
            ema = rt.prepare(build_unet(cfg))
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
    ("vqgan G+D step", None),
    ("vqgan G+D step, no LPIPS", None),
    ("vqgan G+D step, no feature matching", None),
    ("vqgan G+D step, no clipping", None),
    ("vqgan G+D step, no new terms", "vqgan G+D step, naive"),
    ("vqgan G+D step, naive", None),
    ("ddpm step", None),
    ("sample, ddim 50", "sample, ancestral T"),
    ("sample, ancestral T", None),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"])
    ap.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                    help="auto: the config's per-device setting (CUDA bf16 + channels-last, CPU fp32)")
    ap.add_argument("--tiny", action="store_true", help="the plugin's toy config (tiny.yaml)")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is visible to torch")
    cfg = _config(args.device, args.tiny)
    rt = _runtime(cfg, args.device, args.precision)
    ctx = mp.get_context("spawn")
    results = {}
    for name, _ in CASES:
        if args.tiny:  # toy sizes: one process (peak memory then accumulates; start-up would dominate the run)
            q: Any = queue.SimpleQueue()
            _case(name, args, q)
            results[name] = q.get()
        else:
            q = ctx.Queue()
            p = ctx.Process(target=_case, args=(name, args, q))
            p.start()
            p.join()
            if p.exitcode != 0:
                raise SystemExit(f"case {name!r} failed (exit code {p.exitcode}); see the traceback above")
            results[name] = q.get(timeout=60)
        print(f"{name}: {results[name][0]:.3f} s", flush=True)
    size = "x".join(map(str, cfg["data"]["volume_shape"]))
    where = f"{args.threads} thread(s)" if args.device == "cpu" else torch.cuda.get_device_name()
    precision = ("bf16 autocast" if rt.bf16 else "fp32") + (", channels-last" if rt.channels_last else "")
    if args.device == "cuda" and not rt.bf16:
        precision += f", cuDNN TF32 {'on' if torch.backends.cudnn.allow_tf32 else 'off'}"
    print(f"\nvqgan-ddpm on {args.device} ({where}), torch {torch.__version__}, volumes {size}, batch 2, "
          f"VQGAN base {cfg['vqgan']['base_channels']} / {cfg['vqgan']['codebook_size']} codes, "
          f"UNet base {cfg['ddpm']['unet']['base_channels']}, T = {cfg['ddpm']['diffusion']['timesteps']}, {precision}")
    print(f"| {'case':<36} | {'time (s)':>9} | {'vs baseline':>13} | {'peak MB':>8} |")
    print(f"|{'-' * 38}|{'-' * 11}:|{'-' * 14}:|{'-' * 9}:|")
    for name, baseline in CASES:
        t, peak = results[name]
        ratio = f"{results[baseline][0] / t:.2f}x faster" if baseline else "baseline" if any(
            b == name for _, b in CASES) else ""
        print(f"| {name:<36} | {t:>9.3f} | {ratio:>13} | {peak:>8.0f} |")
    full = results["vqgan G+D step"][0]
    print("\nThe recipe's VQGAN terms: what each adds to the G+D step (time with it / time without, same run)")
    print(f"| {'term':<36} | {'ratio':>6} |")
    print(f"|{'-' * 38}|{'-' * 7}:|")
    for term in ("LPIPS", "feature matching", "clipping", "new terms"):
        label = "all three together" if term == "new terms" else term
        print(f"| {label:<36} | {full / results[f'vqgan G+D step, no {term}'][0]:>5.2f}x |")


if __name__ == "__main__":
    main()
