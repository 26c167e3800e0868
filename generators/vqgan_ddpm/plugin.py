"""The ``vqgan-ddpm`` plugin: ctbench's reference generator (3D VQGAN + latent DDPM).

Load a checkpoint written by ``ctbench train vqgan-ddpm`` and sample volumes::

    gen = REGISTRY.load("vqgan-ddpm", Path("run/checkpoint.pt"),
                        overrides={"sampling": {"sampler": "ancestral", "steps": None}})
    x = gen.sample(4, seed=0)          # (4, 1, 64, 128, 128) float32 in [-1, 1]

Sampling overrides (``sampling.sampler`` = ``ddim`` | ``ancestral``, ``sampling.steps``, ``sampling.eta``,
``sampling.batch_size``) and precision overrides (``bf16`` / ``channels_last``, each ``{"cuda": bool,
"cpu": bool}``) are the only overrides a trained checkpoint accepts. Variants that change only sampling
(``@ancestral``) load a checkpoint trained as the default variant. Sampling needs no trainer: this module
imports the networks, the checkpoint reader and the runtime only (the trainer is imported by :meth:`train`).
"""

from __future__ import annotations

import os
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ctbench.api import Generator, GeneratorInfo, LoadContext, deep_update
from ctbench.core.hashing import file_sha256
from ctbench.seeding import sample_generator

from .build import build_sampler, build_unet, build_vqgan, latent_shape, x0_bounds
from .checkpoint import CHECKPOINT_NAME, load_checkpoint
from .runtime import Runtime, precision_for
from .variants import (
    DEFAULT_VARIANT,
    SAMPLING_VARIANTS,
    VARIANTS,
    augmentation,
    check_config,
    default_config,
    resolve_variant_config,
    sampler_label,
)

PLUGIN_VERSION = "1.0.0"
LOAD_OVERRIDES = frozenset({"sampling", "bf16", "channels_last"})  # what a trained checkpoint lets one change


class VQGANDDPM(Generator):
    """3D VQGAN (stage 1) + DDPM on its latents (stage 2); see ``docs/reference-model.md``."""

    name: ClassVar[str] = "vqgan-ddpm"
    trainable: ClassVar[bool] = True

    def __init__(self, state: dict[str, Any], config: dict[str, Any], overrides: dict[str, Any], context: LoadContext,
                 checkpoint_sha256: str | None, variant: str):
        self.config, self.overrides = config, overrides
        self.device, self.protocol = context.device, context.protocol
        self.variant = variant
        self.vqgan = build_vqgan(config)
        self.vqgan.load_state_dict(state["vqgan"]["model"])
        self.unet = build_unet(config)
        self.unet.load_state_dict(state["ddpm"]["ema"])
        self.runtime = Runtime(device=self.device, **precision_for(config, self.device))
        self.runtime.prepare(self.vqgan).eval().requires_grad_(False)
        self.runtime.prepare(self.unet).eval().requires_grad_(False)
        self.latent_scale = float(state["ddpm"]["latent_scale"])
        mean = state["ddpm"].get("latent_mean")  # per-position mean (ddpm.center_latents), None when not centred
        self.latent_mean = mean.to(self.device) if mean is not None else None
        self.sampler = build_sampler(config)
        self.x0_bounds = x0_bounds(config, self.vqgan, self.latent_scale, self.latent_mean)
        self.checkpoint_sha256 = checkpoint_sha256

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return default_config()

    @classmethod
    def variants(cls) -> dict[str, dict[str, Any]]:
        return VARIANTS

    @classmethod
    def default_variant(cls) -> str:
        return DEFAULT_VARIANT

    @classmethod
    def config_files(cls) -> dict[str, Traversable]:
        """The YAML files in this package's ``configs/``: ``tiny`` (toy size: CI, the demo), ``flare22`` (paper's)."""
        folder = files(__package__) / "configs"
        return {f.name.removesuffix(".yaml"): f for f in sorted(folder.iterdir(), key=lambda f: f.name)
                if f.name.endswith(".yaml")}

    @classmethod
    def resolve_config(cls, variant: str | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Default config, then ``overrides`` (e.g. a YAML file's keys), then the variant's keys on top.

        A variant is a named ablation, so its keys must hold whatever file is used: ``flare22.yaml``
        spells out the whole default config (``compression: 4``), and ``@c8`` with it still trains c = 8.
        An override that sets a variant's key to a value other than both the default and the variant's
        is a contradiction and raises ``ValueError`` naming the key.
        """
        variant = variant or cls.default_variant()
        if variant not in VARIANTS:
            return super().resolve_config(variant, overrides)  # "default", or an unknown name's error
        return resolve_variant_config(variant, overrides or {})

    @classmethod
    def load(
        cls,
        checkpoint: Path | None,
        *,
        variant: str | None = None,
        overrides: dict[str, Any] | None = None,
        context: LoadContext | None = None,
    ) -> VQGANDDPM:
        """Build from a finished run's ``checkpoint.pt``; its stored config is used, plus sampling overrides.

        The checkpoint's variant is the generator's variant; naming another non-default one is an error, except
        a sampling variant (``@ancestral``) on a checkpoint trained as the default variant, whose sampling keys
        then apply.
        """
        if checkpoint is None:
            raise ValueError("vqgan-ddpm needs a checkpoint: train one with `ctbench train vqgan-ddpm ...`")
        checkpoint = Path(checkpoint)
        state = load_checkpoint(checkpoint)
        # the registry passes the default variant when none was named; the checkpoint's own variant wins then
        trained = state["variant"]
        sampling_only = variant in SAMPLING_VARIANTS and trained == DEFAULT_VARIANT
        if variant not in (None, "default", DEFAULT_VARIANT, trained) and not sampling_only:
            raise ValueError(f"{checkpoint}: trained as variant {trained!r}, not {variant!r}")
        for stage in ("vqgan", "ddpm"):
            if not (state.get(stage) or {}).get("done"):
                raise ValueError(f"{checkpoint}: the {stage} stage is not finished; train it first")
        overrides = overrides or {}
        if set(overrides) - LOAD_OVERRIDES:
            known = ", ".join(sorted(LOAD_OVERRIDES))
            got = sorted(overrides)
            raise ValueError(f"override (--set): only {known} overrides apply to a trained vqgan-ddpm, got {got}")
        try:
            check_config(overrides)
        except ValueError as exc:
            raise ValueError(f"override (--set): {exc}") from None
        config = deep_update(state["config"], VARIANTS[variant]) if sampling_only else state["config"]
        config = deep_update(config, overrides)
        name = variant if sampling_only else trained
        return cls(state, config, overrides, context or LoadContext(), file_sha256(checkpoint), name)

    @classmethod
    def train(
        cls,
        config: dict[str, Any],
        data: str | os.PathLike,
        out_dir: str | os.PathLike,
        *,
        stage: str | None = None,
        resume: bool = False,
        variant: str | None = None,
    ) -> Path:
        """Train ``stage`` (vqgan | ddpm | all; None = all) of a resolved config; returns the checkpoint.

        See :func:`ctbench_generators.vqgan_ddpm.trainer.train`.
        """
        from .trainer import train

        return train(
            config, data, out_dir, stage=stage or "all", resume=resume, variant=variant or DEFAULT_VARIANT
        ).checkpoint

    @classmethod
    def checkpoint_path(cls, out_dir: Path) -> Path:
        """``out_dir/checkpoint.pt``: both stages, written atomically after each save (see :meth:`train`)."""
        return Path(out_dir) / CHECKPOINT_NAME

    def _model(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with self.runtime.autocast():
            return self.unet(x, t).float()

    @torch.no_grad()
    def sample(self, n: int, seed: int, *, offset: int = 0, batch_size: int | None = None) -> torch.Tensor:
        """Samples ``offset .. offset+n-1``: ``(n, 1, D, H, W)`` float32 on the CPU in [-1, 1].

        ``(D, H, W)`` is the load context's protocol's (64×128×128 under flare22-v1). Sample i's initial
        and per-step noise come from ``sample_generator(seed, i)``. Volumes decoded at another size
        (``data.volume_shape``, e.g. 16×32×32 in the tiny config) are resized to the protocol's
        (``sampling.resize``: ``trilinear``, or ``nearest``, which adds no intensities the decoder did not make).
        """
        bs = batch_size or self.config["sampling"]["batch_size"]
        target = self._target_shape()
        shape = latent_shape(self.config)
        out = []
        for start in range(offset, offset + n, bs):
            gens = [sample_generator(seed, i) for i in range(start, min(start + bs, offset + n))]
            z = self.sampler.sample(self._model, shape, gens, self.device, clip=self.x0_bounds)
            z = z / self.latent_scale + (self.latent_mean if self.latent_mean is not None else 0.0)
            x = self.vqgan.decode(z).float()
            if tuple(x.shape[2:]) != target:
                x = F.interpolate(x, size=target, mode=self._resize())
            out.append(x.clamp(-1, 1).cpu())
        return torch.cat(out) if out else torch.empty((0, 1, *target))

    def _resize(self) -> str:
        """``sampling.resize``: how decoded volumes reach the protocol's size (``trilinear`` or ``nearest``)."""
        return self.config["sampling"].get("resize", "trilinear")  # checkpoints from before the key: trilinear

    def _target_shape(self) -> tuple[int, int, int]:
        """``(D, H, W)`` of the protocol's volumes."""
        return self.protocol.tensor_shape[1:]

    def info(self) -> GeneratorInfo:
        cfg = dict(self.config)
        # what results are comparable on: the sampler and its steps, and the training augmentation
        cfg["sampler"] = sampler_label(self.config)
        cfg["augmentation"] = augmentation(self.config)
        cfg["output"] = {
            "decoded_shape": list(self.config["data"]["volume_shape"]),
            "resize_to_protocol": self._resize() if list(self._target_shape())
            != list(self.config["data"]["volume_shape"]) else None,
        }
        params = sum(p.numel() for p in self.vqgan.parameters()) + sum(p.numel() for p in self.unet.parameters())
        return GeneratorInfo(
            name=self.name,
            variant=self.variant,
            version=PLUGIN_VERSION,
            config=cfg,
            parameters=params,
            overrides=self.overrides,
            checkpoint_sha256=self.checkpoint_sha256,
        )
