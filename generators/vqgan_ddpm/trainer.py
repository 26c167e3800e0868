"""Training of both stages, VQGAN (stage 1) then the latent DDPM (stage 2), through one stage loop.

Each stage is a :class:`Stage`: its networks and optimisers (saved by name in the checkpoint), the update of
one optimiser step and a montage; :func:`run_stage` drives either one: per-step generators, batches,
progress, montages every ``checkpoint.sample_every`` steps and checkpoints every ``checkpoint.save_every``
steps and at the end. Several processes: launch the same command with ``torchrun``; the models are wrapped
in ``DistributedDataParallel`` (gloo on CPU, NCCL on CUDA), each rank reads its own part of every global
batch, and only rank 0 writes files.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ctbench.core.progress import progress_bar

from .build import (
    build_diffusion,
    build_discriminators,
    build_sampler,
    build_unet,
    build_vqgan,
    check_latent_fits,
    latent_shape,
    x0_bounds,
)
from .checkpoint import CHECKPOINT_NAME, check_resume_config, load_checkpoint, save_checkpoint, set_rng_state
from .data import VolumeBatches, open_dataset, step_generator
from .perceptual import load_perceptual
from .runtime import Runtime, setup_runtime, wrap
from .steps import ddpm_step, measure_latents, vqgan_step
from .variants import augmentation, check_config, sampler_label

STAGES = ("vqgan", "ddpm", "all")


@dataclass
class TrainResult:
    """What :func:`train` leaves behind: the checkpoint and (on every rank) the trained modules."""

    checkpoint: Path
    models: dict[str, nn.Module]


@dataclass
class Stage:
    """One stage as :func:`run_stage` drives it.

    ``saved``: what the checkpoint's entry for the stage holds besides ``step``/``done``: modules and
    optimisers by their ``state_dict()`` (None stays None), anything else as is. ``update(micro, step, g)``
    runs one optimiser step on ``grad_accum`` batches ``(B, 1, D, H, W)`` on the device and returns its
    losses; ``montage(path, step, micro)`` draws the stage's progress picture.
    """

    name: str
    steps: int
    grad_accum: int
    batches: VolumeBatches
    saved: dict[str, Any]
    update: Callable[[list[torch.Tensor], int, torch.Generator], dict[str, float]]
    montage: Callable[[Path, int, list[torch.Tensor]], None]
    step: int = 0
    models: dict[str, nn.Module] = field(default_factory=dict)


def _progress(rt: Runtime, enabled: bool, desc: str, initial: int, total: int) -> tqdm:
    """The stage's bar on rank 0; a stage already at its last step says so instead of drawing an empty bar."""
    show = enabled and rt.main
    if show and initial >= total:
        tqdm.write(f"{desc}: already at step {initial} of {total}; nothing to train (raise its steps to go on)")
    return progress_bar(total=total, initial=initial, desc=desc, enabled=show and initial < total, dynamic_ncols=True)


def _montage(path: Path, groups: list[tuple[str, list[torch.Tensor], list[str]]], title: str) -> None:
    from ctbench.figures import triplanar_montage

    triplanar_montage(groups, path, title=title)


def run_stage(stage: Stage, config: dict, state: dict, out_dir: Path, rt: Runtime, progress: bool) -> None:
    """Train ``stage`` from its ``step`` to its ``steps``, saving ``state`` (with the stage's entry) as it goes."""
    ck = config["checkpoint"]

    def save() -> None:
        entry = {k: v.state_dict() if hasattr(v, "state_dict") else v for k, v in stage.saved.items()}
        state[stage.name] = {"step": stage.step, "done": stage.step >= stage.steps, **entry}
        if rt.main:
            save_checkpoint(out_dir / CHECKPOINT_NAME, state)
        rt.barrier()

    bar = _progress(rt, progress, stage.name, stage.step, stage.steps)
    while stage.step < stage.steps:
        step, accum = stage.step, stage.grad_accum
        g = step_generator(config["seed"], stage.name, rt.rank, step)
        micro = [rt.to_device(stage.batches.batch(step * accum + i, g)) for i in range(accum)]
        logs = stage.update(micro, step, g)
        stage.step = step = step + 1
        if step % ck["log_every"] == 0 or step == stage.steps:
            bar.set_postfix({k: f"{val:.4g}" for k, val in logs.items()})
        bar.update(1)
        if rt.main and ck["sample_every"] and step % ck["sample_every"] == 0:
            stage.montage(out_dir / "montages" / f"{stage.name}_{step:07d}.png", step, micro)
        if step % ck["save_every"] == 0 or step == stage.steps:
            save()
    bar.close()
    entry = state.get(stage.name) or {}
    if entry.get("step") != stage.step or not entry.get("done"):  # e.g. resumed with fewer steps
        save()


def vqgan_stage(config: dict, state: dict, batches: VolumeBatches, out_dir: Path, rt: Runtime) -> Stage:
    """Stage 1: the autoencoder, its two discriminators and (when weighted) the LPIPS slice loss."""
    v = config["vqgan"]
    tcfg = v["train"]
    torch.manual_seed(config["seed"])
    model = build_vqgan(config)
    discs = build_discriminators(config)
    opt_g = torch.optim.Adam(model.parameters(), lr=tcfg["lr"], betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(discs.parameters(), lr=v["discriminator"]["lr"], betas=(0.5, 0.9)) if discs else None
    perceptual, vgg_sha256 = load_perceptual(config)
    state["perceptual_weights_sha256"] = vgg_sha256
    saved = state.get("vqgan")
    step = 0
    if saved:
        model.load_state_dict(saved["model"])
        opt_g.load_state_dict(saved["opt_g"])
        if discs is not None and opt_d is not None:
            discs.load_state_dict(saved["discriminators"])
            opt_d.load_state_dict(saved["opt_d"])
        step = saved["step"]
    if step < tcfg["steps"] and state.pop("ddpm", None) is not None:
        msg = f"{out_dir / CHECKPOINT_NAME}: the VQGAN trains further, so its DDPM stage is dropped"
        warnings.warn(msg, stacklevel=3)
    model.train()
    wrapped = wrap(model, rt)
    wrapped_d = wrap(discs, rt).train() if discs is not None else None
    if perceptual is not None:
        rt.prepare(perceptual)

    def update(micro: list[torch.Tensor], step: int, g: torch.Generator) -> dict[str, float]:
        return vqgan_step(wrapped, wrapped_d, opt_g, opt_d, micro, step, config, g, rt, perceptual=perceptual)

    @torch.no_grad()
    def montage(path: Path, step: int, micro: list[torch.Tensor]) -> None:
        model.eval()
        x = micro[0][:1]
        rec = model(x).reconstruction.float().clamp(-1, 1).cpu()
        model.train()
        _montage(path, [("input", [x[0].float().cpu()], [""]), ("reconstruction", [rec[0]], [""])],
                 f"VQGAN step {step}")

    return Stage(
        "vqgan", tcfg["steps"], tcfg["grad_accum"], batches,
        {"model": model, "opt_g": opt_g, "discriminators": discs, "opt_d": opt_d}, update, montage, step,
        {"vqgan": model},
    )  # fmt: skip


def ddpm_stage(config: dict, state: dict, batches: VolumeBatches, out_dir: Path, rt: Runtime) -> Stage:
    """Stage 2: the denoiser (and its EMA) on the finished VQGAN's scaled latents."""
    d = config["ddpm"]
    tcfg = d["train"]
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
    step = 0
    if saved:
        unet.load_state_dict(saved["model"])
        ema.load_state_dict(saved["ema"])
        opt.load_state_dict(saved["opt"])
        step, scale, mean = saved["step"], saved["latent_scale"], saved["latent_mean"]
    else:
        scale, mean = measure_latents(vqgan, batches, d["scale_batches"], rt, d["center_latents"])
    offset = mean.to(rt.device) if mean is not None else 0.0
    unet.train()
    rt.prepare(ema).eval()
    diffusion = build_diffusion(config)
    wrapped = wrap(unet, rt)

    def update(micro: list[torch.Tensor], step: int, g: torch.Generator) -> dict[str, float]:
        with torch.no_grad(), rt.autocast():
            latents = [(vqgan.encode(x).z_q.float() - offset) * scale for x in micro]
        return ddpm_step(diffusion, wrapped, ema, opt, latents, config, g, rt)

    @torch.no_grad()
    def montage(path: Path, step: int, micro: list[torch.Tensor]) -> None:
        with rt.autocast():
            gens = [torch.Generator().manual_seed(i) for i in range(2)]
            z = build_sampler(config).sample(ema, latent_shape(config), gens, rt.device,
                                             clip=x0_bounds(config, vqgan, scale, mean))
            x = vqgan.decode(z / scale + offset).float().clamp(-1, 1).cpu()
        _montage(path, [("sample", list(x), ["#0", "#1"])], f"DDPM step {step} (EMA, {sampler_label(config)})")

    return Stage(
        "ddpm", tcfg["steps"], tcfg["grad_accum"], batches,
        {"model": unet, "ema": ema, "opt": opt, "latent_scale": scale, "latent_mean": mean}, update, montage, step,
        {"unet": unet, "ema": ema},
    )  # fmt: skip


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
    check_latent_fits(config, variant)
    out_dir = Path(out_dir)
    path = out_dir / CHECKPOINT_NAME
    state: dict[str, Any] = {"name": "vqgan-ddpm", "variant": variant, "config": config}
    if path.exists():
        saved = load_checkpoint(path)
        if not resume and (stage != "ddpm" or "ddpm" in saved):
            raise FileExistsError(f"{path} exists: pass --resume to continue it, or choose another --out")
        check_resume_config(saved["config"], config, path)
        keep = ("name", "variant", "vqgan", "ddpm", "perceptual_weights_sha256")
        state = {k: saved[k] for k in keep if k in saved}
        state["config"] = config
        if resume:
            set_rng_state(saved["rng"])
    elif resume:
        raise FileNotFoundError(f"{path}: no checkpoint to resume")
    elif stage == "ddpm":
        raise FileNotFoundError(f"{path}: no checkpoint to take the VQGAN from; train it first (--stage vqgan, or "
                                "--stage all for both stages)")
    state["augmentation"] = augmentation(config)

    rt = setup_runtime(config)
    threads = torch.get_num_threads()
    if rt.device.type == "cpu" and config["cpu_threads"]:
        torch.set_num_threads(config["cpu_threads"])
    try:
        dataset = open_dataset(data)
        models: dict[str, nn.Module] = {}
        for name, build in (("vqgan", vqgan_stage), ("ddpm", ddpm_stage)):
            if stage in (name, "all"):
                batches = VolumeBatches(
                    dataset, config[name]["train"]["batch_size"], config["data"]["volume_shape"],
                    flip_probability=config["data"]["flip_probability"], seed=config["seed"],
                    rank=rt.rank, world_size=rt.world_size,
                )  # fmt: skip
                built = build(config, state, batches, out_dir, rt)
                run_stage(built, config, state, out_dir, rt, progress)
                models.update(built.models)
        return TrainResult(path, models)
    finally:
        torch.set_num_threads(threads)
