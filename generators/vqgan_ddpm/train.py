"""Training of both stages: VQGAN (stage 1) then the latent DDPM (stage 2), with checkpoints and resume.

One checkpoint file per run, ``RUN_DIR/checkpoint.pt``, rewritten atomically every
``checkpoint.save_every`` optimiser steps and at the end of each stage. It holds the resolved config,
the variant, the ctbench version, each stage's step, model, optimiser (and EMA) states, the latent scale
and the RNG states; :meth:`VQGANDDPM.load <ctbench_generators.vqgan_ddpm.plugin.VQGANDDPM.load>` needs nothing else.

Determinism: every random draw of step s on rank r (batch order, flips, slice picks, diffusion t and
noise, codebook restarts) comes from a CPU generator seeded by (seed, stage, r, s), so a resumed run
continues bit-for-bit on the CPU. Several processes: launch the same command with ``torchrun``; the
models are wrapped in ``DistributedDataParallel`` (gloo on CPU, NCCL on CUDA), each rank reads its own
part of every global batch, and only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import random
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm.auto import tqdm

from ctbench import __version__
from ctbench.core.atomic import atomic_path
from ctbench.core.distributed import init_distributed, local_rank
from ctbench.core.progress import progress_bar

from .build import Discriminators, build_diffusion, build_discriminators, build_unet, build_vqgan, latent_shape
from .diffusion import GaussianDiffusion
from .discriminators import random_axial_slices
from .losses import discriminator_loss, generator_adversarial_loss, reconstruction_loss
from .samplers import DDIMSampler
from .variants import check_config, flatten_config
from .vqgan import VQGAN

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = "ctbench.vqgan-ddpm/1"
STAGES = ("vqgan", "ddpm", "all")


# -- randomness and data ---------------------------------------------------------------------------
def step_generator(seed: int, stage: str, rank: int, step: int) -> torch.Generator:
    """The CPU generator for every random draw of one optimiser step on one rank."""
    digest = hashlib.sha256(f"vqgan-ddpm:{seed}:{stage}:{rank}:{step}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


class VolumeBatches:
    """Deterministic training batches ``(B, 1, D, H, W)`` in [-1, 1] from a dataset of ``(1, D0, H0, W0)`` volumes.

    The stream of sample positions is cut into global batches of ``batch_size × world_size``; epoch e
    visits the dataset in a permutation seeded by (seed, e); rank r takes its own ``batch_size``
    slice. Volumes are resized (trilinear) to ``volume_shape`` once and kept in memory when the set
    fits in ``cache_bytes``; flips (left-right, i.e. along W) use the step's generator.
    """

    def __init__(
        self,
        dataset: Sequence[torch.Tensor],
        batch_size: int,
        volume_shape: Sequence[int],
        *,
        flip_probability: float = 0.0,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        cache_bytes: int = 2 << 30,
    ):
        if len(dataset) == 0:
            raise ValueError("the training set is empty")
        self.dataset, self.batch_size, self.volume_shape = dataset, batch_size, tuple(volume_shape)
        self.flip_probability, self.seed, self.rank, self.world_size = flip_probability, seed, rank, world_size
        per_volume = 4 * int(np.prod(self.volume_shape))
        self._cache: dict[int, torch.Tensor] | None = {} if per_volume * len(dataset) <= cache_bytes else None
        self._perms: dict[int, torch.Tensor] = {}

    def _volume(self, i: int) -> torch.Tensor:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        v = torch.as_tensor(self.dataset[i], dtype=torch.float32)
        if v.ndim != 4 or v.shape[0] != 1:
            raise ValueError(f"training item {i} has shape {tuple(v.shape)}, expected (1, D, H, W)")
        if tuple(v.shape[1:]) != self.volume_shape:
            v = F.interpolate(v[None], size=self.volume_shape, mode="trilinear", align_corners=False)[0]
        if self._cache is not None:
            self._cache[i] = v
        return v

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perms = {epoch: torch.randperm(len(self.dataset), generator=g)}
        return self._perms[epoch]

    def batch(self, index: int, generator: torch.Generator) -> torch.Tensor:
        """The ``index``-th batch of this rank (``index`` counts micro-batches over the whole run)."""
        n = len(self.dataset)
        start = (index * self.world_size + self.rank) * self.batch_size
        vols = []
        for k in range(start, start + self.batch_size):
            v = self._volume(int(self._perm(k // n)[k % n]))
            if self.flip_probability and float(torch.rand((), generator=generator)) < self.flip_probability:
                v = v.flip(-1)
            vols.append(v)
        return torch.stack(vols)


def open_dataset(data: str | os.PathLike | Sequence[torch.Tensor]) -> Sequence[torch.Tensor]:
    """A prepared folder (its ``train`` split, via ``ctbench.data.dataset.PreparedDataset``) or a sequence as is.

    Imported here, not at the top: the training code itself needs no NIfTI reader (a GPU box without
    nibabel can train from tensors and run ``benchmarks/bench_train.py``).
    """
    if isinstance(data, (str, os.PathLike)):
        from ctbench.data.dataset import PreparedDataset

        return PreparedDataset(Path(data), split="train", augment=False)
    return data


# -- distributed and device helpers ----------------------------------------------------------------
@dataclass
class Runtime:
    """Where this process runs: rank, world size, device, and its precision settings.

    ``bf16``: bf16 autocast (CUDA or CPU) around the networks' forward passes; ``channels_last``: the
    models' weights and the input batches use ``torch.channels_last_3d``. Both default to off, which
    keeps CPU runs bit-reproducible; :func:`setup_runtime` takes them from the config's ``bf16`` and
    ``channels_last`` entries for the device's type.
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    bf16: bool = False
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.device.type == "cpu" and self.bf16 and self.channels_last:
            raise ValueError(
                "bf16 with channels_last on the CPU: bf16 runs without oneDNN there (see autocast), where "
                "channels-last 3D convolutions gain nothing; enable one or the other on the CPU"
            )

    @property
    def main(self) -> bool:
        return self.rank == 0

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on this device's type around forward passes when ``bf16`` is on, else nothing."""
        if self.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, outside autocast; with bf16 on the CPU, without oneDNN.

        In torch 2.14 oneDNN's bf16 3D convolution weight gradient came out NaN in about 1 call of 10 for
        some shapes (e.g. 64 channels at 2×4×4); the native CPU kernels are slower but correct.
        """
        if self.bf16 and self.device.type == "cpu":
            with torch.backends.mkldnn.flags(enabled=False, deterministic=None, allow_tf32=None, fp32_precision=None):
                loss.backward()
        else:
            loss.backward()

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        """A batch ``(N, C, D, H, W)`` on the device, channels-last when enabled."""
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last_3d) if self.channels_last else x

    def prepare(self, module: nn.Module) -> nn.Module:
        """``module`` on the device (in place), its conv weights channels-last when enabled.

        Per layer: 3D convs get ``channels_last_3d`` and 2D convs (the slice discriminator) ``channels_last``;
        ``module.to(memory_format=channels_last_3d)`` would fail on the 2D weights.
        """
        module = module.to(self.device)
        if self.channels_last:
            for m in module.modules():
                if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
                    m.to(memory_format=torch.channels_last_3d)
                elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                    m.to(memory_format=torch.channels_last)
        return module

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def precision_for(config: dict[str, Any], device: torch.device) -> dict[str, bool]:
    """``{"bf16": ..., "channels_last": ...}`` of ``config`` for ``device``'s type (``cuda`` or ``cpu``)."""
    kind = "cuda" if device.type == "cuda" else "cpu"
    return {"bf16": bool(config["bf16"][kind]), "channels_last": bool(config["channels_last"][kind])}


def setup_runtime(config: dict[str, Any]) -> Runtime:
    """Join the process group if launched by ``torchrun`` (``WORLD_SIZE`` > 1); pick the device and precision."""
    rank, world = init_distributed()
    if torch.cuda.is_available():
        local = local_rank()
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
        torch.backends.cudnn.benchmark = True  # fixed volume shapes: let cuDNN pick the fastest 3D conv kernels
    else:
        device = torch.device("cpu")
    return Runtime(rank, world, device, **precision_for(config, device))


def _wrap(module: nn.Module, rt: Runtime) -> nn.Module:
    module = rt.prepare(module)
    if rt.world_size > 1:
        return DDP(module, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    return module


def _unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, DDP) else module


def _maybe_no_sync(module: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """Skip the DDP gradient all-reduce on all but the last micro-batch of an accumulated step."""
    return module.no_sync() if isinstance(module, DDP) and not sync else contextlib.nullcontext()


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[nn.Module]:
    """The unwrapped module with ``requires_grad`` off, so gradients flow through it but not into it."""
    raw = _unwrap(module)
    flags = [p.requires_grad for p in raw.parameters()]
    for p in raw.parameters():
        p.requires_grad_(False)
    try:
        yield raw
    finally:
        for p, f in zip(raw.parameters(), flags, strict=True):
            p.requires_grad_(f)


# -- one optimiser step of each stage ----------------------------------------------------------------
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
) -> dict[str, float]:
    """One generator update, then (after the warm-up) one discriminator update on the same reconstructions.

    The discriminator step reuses the generator pass's reconstructions (detached) instead of running
    the autoencoder again. ``micro_batches``: ``grad_accum`` tensors ``(B, 1, D, H, W)`` on the device.
    Returns the mean losses of the step.
    """
    v = config["vqgan"]
    dcfg = v["discriminator"]
    adversarial = discriminators is not None and step >= dcfg["start_step"]
    k = len(micro_batches)
    logs: dict[str, float] = {}

    def log(name: str, value: torch.Tensor) -> None:
        logs[name] = logs.get(name, 0.0) + float(value.detach()) / k

    opt_g.zero_grad(set_to_none=True)
    reconstructions = []
    for i, x in enumerate(micro_batches):
        with _maybe_no_sync(model, i == k - 1):
            with rt.autocast():
                out = model(x, generator)
                rec = reconstruction_loss(x, out.reconstruction)
                loss = v["rec_weight"] * rec + out.quantized.commitment_loss
                if adversarial:
                    with _frozen(discriminators) as d:
                        slices = random_axial_slices(out.reconstruction, generator)
                        logits_s, logits_v = d(slices, out.reconstruction)
                    g_adv = dcfg["slice_weight"] * generator_adversarial_loss(logits_s) + dcfg[
                        "volume_weight"
                    ] * generator_adversarial_loss(logits_v)
                    loss = loss + g_adv
                    log("g_adv", g_adv)
            rt.backward(loss / k)
        reconstructions.append(out.reconstruction.detach())
        log("rec", rec)
        log("commit", out.quantized.commitment_loss)
        log("perplexity", out.quantized.perplexity)
    opt_g.step()

    if adversarial:
        opt_d.zero_grad(set_to_none=True)
        for i, (x, x_rec) in enumerate(zip(micro_batches, reconstructions, strict=True)):
            with _maybe_no_sync(discriminators, i == k - 1):
                with rt.autocast():
                    both = torch.cat([x, x_rec])
                    logits_s, logits_v = discriminators(random_axial_slices(both, generator), both)
                    n = x.shape[0]
                    d_loss = dcfg["slice_weight"] * discriminator_loss(logits_s[:n], logits_s[n:]) + dcfg[
                        "volume_weight"
                    ] * discriminator_loss(logits_v[:n], logits_v[n:])
                rt.backward(d_loss / k)
            log("d", d_loss)
        opt_d.step()
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
        with _maybe_no_sync(unet, i == k - 1):
            with rt.autocast():
                terms = diffusion.training_losses(unet, z, t, noise, d["diffusion"]["vlb_weight"])
            rt.backward(terms["loss"].mean() / k)
        for name in logs:
            logs[name] += float(terms[name].mean().detach()) / k
    opt.step()
    update_ema(ema, _unwrap(unet), d["train"]["ema_decay"])
    return logs


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema ← decay · ema + (1 - decay) · model`` for parameters; buffers are copied."""
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p, 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers(), strict=True):
        e.copy_(b)


@torch.no_grad()
def measure_latent_scale(vqgan: VQGAN, batches: VolumeBatches, n_batches: int, rt: Runtime) -> float:
    """1 / std of the quantised latents over ``n_batches`` batches (all ranks): latents × scale have unit variance."""
    total = torch.zeros(3, dtype=torch.float64)
    for i in range(n_batches):
        z = vqgan.encode(rt.to_device(batches.batch(i, step_generator(0, "scale", rt.rank, i)))).z_q.double().cpu()
        total += torch.stack([z.sum(), z.pow(2).sum(), torch.tensor(float(z.numel()), dtype=torch.float64)])
    if rt.world_size > 1:
        dist.all_reduce(total)
    mean = total[0] / total[2]
    std = (total[1] / total[2] - mean**2).clamp_min(1e-12).sqrt()
    return float(1.0 / std)


# -- checkpoints ---------------------------------------------------------------------------------------
def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus RNG states and the ctbench version) to ``path`` atomically."""
    state = {**state, "rng": _rng_state(), "ctbench_version": __version__, "format": CHECKPOINT_FORMAT}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a run checkpoint; raises ``ValueError`` naming the file if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a vqgan-ddpm checkpoint (expected format {CHECKPOINT_FORMAT})")
    return state


def _check_resume_config(saved: dict[str, Any], config: dict[str, Any], path: Path) -> None:
    """A resumed run may change only step counts, checkpoint/log intervals, sampling and precision settings."""
    a, b = flatten_config(saved), flatten_config(config)
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    allowed = ("checkpoint.", "sampling.", "bf16.", "channels_last.", "cpu_threads")
    bad = [k for k in changed if not (k.startswith(allowed) or k.endswith("train.steps"))]
    if bad:
        raise ValueError(f"{path}: the config differs from the checkpoint's in {', '.join(bad)}; resume needs the same")


# -- the stages ------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What :func:`train` leaves behind: the checkpoint and (on every rank) the trained modules."""

    checkpoint: Path
    models: dict[str, nn.Module]


def _progress(rt: Runtime, enabled: bool, desc: str, initial: int, total: int) -> tqdm:
    """The stage's bar on rank 0; a stage already at its last step says so instead of drawing an empty bar."""
    show = enabled and rt.main
    if show and initial >= total:
        tqdm.write(f"{desc}: already at step {initial} of {total}; nothing to train (raise its steps to go on)")
    return progress_bar(total=total, initial=initial, desc=desc, enabled=show and initial < total, dynamic_ncols=True)


def _montage(path: Path, groups: list[tuple[str, list[torch.Tensor], list[str]]], title: str) -> None:
    from ctbench.figures import triplanar_montage

    triplanar_montage(groups, path, title=title)


def _train_vqgan(
    config: dict, state: dict, batches: VolumeBatches, out_dir: Path, rt: Runtime, progress: bool
) -> VQGAN:
    v = config["vqgan"]
    tcfg = v["train"]
    ck = config["checkpoint"]
    torch.manual_seed(config["seed"])
    model = build_vqgan(config)
    discs: Discriminators | None = build_discriminators(config)
    opt_g = torch.optim.Adam(model.parameters(), lr=tcfg["lr"], betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(discs.parameters(), lr=v["discriminator"]["lr"], betas=(0.5, 0.9)) if discs else None
    saved = state.get("vqgan")
    state.setdefault("vqgan", {"step": -1, "done": False})
    step = 0
    if saved:
        model.load_state_dict(saved["model"])
        opt_g.load_state_dict(saved["opt_g"])
        if discs is not None:
            discs.load_state_dict(saved["discriminators"])
            opt_d.load_state_dict(saved["opt_d"])
        step = saved["step"]
    model.train()
    wrapped = _wrap(model, rt)
    wrapped_d = _wrap(discs, rt) if discs is not None else None
    if wrapped_d is not None:
        wrapped_d.train()
    accum = tcfg["grad_accum"]

    def save() -> None:
        state["vqgan"] = {
            "step": step,
            "done": step >= tcfg["steps"],
            "model": model.state_dict(),
            "opt_g": opt_g.state_dict(),
            "discriminators": discs.state_dict() if discs is not None else None,
            "opt_d": opt_d.state_dict() if opt_d is not None else None,
        }
        if rt.main:
            save_checkpoint(out_dir / CHECKPOINT_NAME, state)
        rt.barrier()

    if step < tcfg["steps"] and state.pop("ddpm", None) is not None:
        msg = f"{out_dir / CHECKPOINT_NAME}: the VQGAN trains further, so its DDPM stage is dropped"
        warnings.warn(msg, stacklevel=2)
    bar = _progress(rt, progress, "vqgan", step, tcfg["steps"])
    while step < tcfg["steps"]:
        g = step_generator(config["seed"], "vqgan", rt.rank, step)
        micro = [rt.to_device(batches.batch(step * accum + i, g)) for i in range(accum)]
        logs = vqgan_step(wrapped, wrapped_d, opt_g, opt_d, micro, step, config, g, rt)
        step += 1
        if step % ck["log_every"] == 0 or step == tcfg["steps"]:
            bar.set_postfix({k: f"{val:.4g}" for k, val in logs.items()})
        bar.update(1)
        if rt.main and ck["sample_every"] and step % ck["sample_every"] == 0:
            with torch.no_grad():
                model.eval()
                x = micro[0][:1]
                rec = model(x).reconstruction.float().clamp(-1, 1).cpu()
                model.train()
            _montage(out_dir / "montages" / f"vqgan_{step:07d}.png",
                     [("input", [x[0].float().cpu()], [""]), ("reconstruction", [rec[0]], [""])], f"VQGAN step {step}")
        if step % ck["save_every"] == 0 or step == tcfg["steps"]:
            save()
    bar.close()
    if state["vqgan"]["step"] != step or not state["vqgan"]["done"]:  # e.g. resumed with fewer steps
        save()
    return model


def _train_ddpm(
    config: dict, state: dict, batches: VolumeBatches, out_dir: Path, rt: Runtime, progress: bool
) -> tuple[nn.Module, nn.Module]:
    d = config["ddpm"]
    tcfg = d["train"]
    ck = config["checkpoint"]
    vq_state = state.get("vqgan")
    if not vq_state or not vq_state.get("done"):
        raise ValueError(f"{out_dir / CHECKPOINT_NAME}: the VQGAN stage is not finished; train --stage vqgan first")
    vqgan = build_vqgan(config)
    vqgan.load_state_dict(vq_state["model"])
    rt.prepare(vqgan).eval().requires_grad_(False)
    torch.manual_seed(config["seed"] + 1)
    unet = build_unet(config)
    ema = copy.deepcopy(unet).requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=tcfg["lr"], weight_decay=0.0)
    saved = state.get("ddpm")
    state.setdefault("ddpm", {"step": -1, "done": False})
    step = 0
    if saved:
        unet.load_state_dict(saved["model"])
        ema.load_state_dict(saved["ema"])
        opt.load_state_dict(saved["opt"])
        step, scale = saved["step"], saved["latent_scale"]
    else:
        scale = measure_latent_scale(vqgan, batches, d["scale_batches"], rt)
    unet.train()
    rt.prepare(ema).eval()
    diffusion = build_diffusion(config)
    wrapped = _wrap(unet, rt)
    accum = tcfg["grad_accum"]

    def save() -> None:
        state["ddpm"] = {
            "step": step,
            "done": step >= tcfg["steps"],
            "model": unet.state_dict(),
            "ema": ema.state_dict(),
            "opt": opt.state_dict(),
            "latent_scale": scale,
        }
        if rt.main:
            save_checkpoint(out_dir / CHECKPOINT_NAME, state)
        rt.barrier()

    bar = _progress(rt, progress, "ddpm", step, tcfg["steps"])
    while step < tcfg["steps"]:
        g = step_generator(config["seed"], "ddpm", rt.rank, step)
        with torch.no_grad(), rt.autocast():
            latents = [
                vqgan.encode(rt.to_device(batches.batch(step * accum + i, g))).z_q.float() * scale for i in range(accum)
            ]
        logs = ddpm_step(diffusion, wrapped, ema, opt, latents, config, g, rt)
        step += 1
        if step % ck["log_every"] == 0 or step == tcfg["steps"]:
            bar.set_postfix({k: f"{val:.4g}" for k, val in logs.items()})
        bar.update(1)
        if rt.main and ck["sample_every"] and step % ck["sample_every"] == 0:
            with torch.no_grad(), rt.autocast():
                steps = min(20, diffusion.num_timesteps)
                z = DDIMSampler(diffusion, steps).sample(
                    ema, latent_shape(config), [torch.Generator().manual_seed(i) for i in range(2)], rt.device
                )
                x = vqgan.decode(z / scale).float().clamp(-1, 1).cpu()
            _montage(out_dir / "montages" / f"ddpm_{step:07d}.png", [("sample", list(x), ["#0", "#1"])],
                     f"DDPM step {step} (EMA, DDIM {steps} steps)")
        if step % ck["save_every"] == 0 or step == tcfg["steps"]:
            save()
    bar.close()
    if state["ddpm"]["step"] != step or not state["ddpm"]["done"]:
        save()
    return unet, ema


def train(
    config: dict[str, Any],
    data: str | os.PathLike | Sequence[torch.Tensor],
    out_dir: str | os.PathLike,
    *,
    stage: str = "all",
    resume: bool = False,
    variant: str = "full",
    progress: bool = True,
) -> TrainResult:
    """Train ``stage`` (``vqgan``, ``ddpm`` or ``all``) of the resolved ``config`` into ``out_dir``.

    ``data``: a prepared folder (its train split) or a sequence of ``(1, D, H, W)`` tensors in [-1, 1].
    A fresh ``vqgan``/``all`` run refuses an ``out_dir`` that already holds a checkpoint unless
    ``resume``; ``ddpm`` continues from the checkpoint's finished VQGAN. Works the same under ``torchrun``.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; known: {', '.join(STAGES)}")
    check_config(config)
    out_dir = Path(out_dir)
    path = out_dir / CHECKPOINT_NAME
    state: dict[str, Any] = {"name": "vqgan-ddpm", "variant": variant, "config": config}
    if path.exists():
        saved = load_checkpoint(path)
        if not resume and (stage != "ddpm" or "ddpm" in saved):
            raise FileExistsError(f"{path} exists: pass --resume to continue it, or choose another --out")
        _check_resume_config(saved["config"], config, path)
        state = {k: saved[k] for k in ("name", "variant", "vqgan", "ddpm") if k in saved}
        state["config"] = config
        if resume:
            _set_rng_state(saved["rng"])
    elif stage == "ddpm" or resume:
        raise FileNotFoundError(f"{path}: no checkpoint to {'resume' if resume else 'take the VQGAN from'}")

    rt = setup_runtime(config)
    threads = torch.get_num_threads()
    if rt.device.type == "cpu" and config["cpu_threads"]:
        torch.set_num_threads(config["cpu_threads"])
    try:
        return _run_stages(config, data, out_dir, state, stage, rt, progress)
    finally:
        torch.set_num_threads(threads)


def _run_stages(
    config: dict, data: str | os.PathLike | Sequence[torch.Tensor], out_dir: Path, state: dict, stage: str,
    rt: Runtime, progress: bool,
) -> TrainResult:
    dataset = open_dataset(data)
    batch_sizes = {"vqgan": config["vqgan"]["train"]["batch_size"], "ddpm": config["ddpm"]["train"]["batch_size"]}

    def batches(which: str) -> VolumeBatches:
        return VolumeBatches(
            dataset, batch_sizes[which], config["data"]["volume_shape"],
            flip_probability=config["data"]["flip_probability"], seed=config["seed"],
            rank=rt.rank, world_size=rt.world_size,
        )

    models: dict[str, nn.Module] = {}
    if stage in ("vqgan", "all"):
        models["vqgan"] = _train_vqgan(config, state, batches("vqgan"), out_dir, rt, progress)
    if stage in ("ddpm", "all"):
        models["unet"], models["ema"] = _train_ddpm(config, state, batches("ddpm"), out_dir, rt, progress)
    return TrainResult(out_dir / CHECKPOINT_NAME, models)
