"""Build the networks, the diffusion process and the sampler from a resolved config (see :mod:`.variants`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .diffusion import Bounds, GaussianDiffusion
from .discriminators import SliceDiscriminator, VolumeDiscriminator
from .samplers import AncestralSampler, DDIMSampler, make_sampler
from .unet import UNet3D
from .vqgan import VQGAN


def build_vqgan(config: dict[str, Any]) -> VQGAN:
    """The stage-1 autoencoder of ``config["vqgan"]``."""
    v = config["vqgan"]
    return VQGAN(
        base_channels=v["base_channels"],
        compression=v["compression"],
        embed_dim=v["embed_dim"],
        codebook_size=v["codebook_size"],
        n_res_blocks=v["n_res_blocks"],
        attn_heads=v["attn_heads"],
        quantizer=dict(v["quantizer"]),
    )


class Discriminators(nn.Module):
    """The slice (2D) and volume (3D) PatchGANs behind one module, so one DDP wrapper serves both."""

    def __init__(self, channels: int, n_layers: int):
        super().__init__()
        self.slice = SliceDiscriminator(channels, n_layers)
        self.volume = VolumeDiscriminator(channels, n_layers)

    def forward(self, slices: torch.Tensor, volumes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of slices ``(N, 1, H, W)`` and of volumes ``(N, 1, D, H, W)``."""
        return self.slice(slices), self.volume(volumes)


def build_discriminators(config: dict[str, Any]) -> Discriminators | None:
    """Both discriminators, or None when ``vqgan.discriminator.enabled`` is false."""
    d = config["vqgan"]["discriminator"]
    return Discriminators(d["channels"], d["n_layers"]) if d["enabled"] else None


def build_unet(config: dict[str, Any]) -> UNet3D:
    """The stage-2 denoiser of ``config["ddpm"]["unet"]`` on ``vqgan.embed_dim`` latent channels."""
    u = config["ddpm"]["unet"]
    return UNet3D(
        in_channels=config["vqgan"]["embed_dim"],
        base_channels=u["base_channels"],
        channel_mult=tuple(u["channel_mult"]),
        num_res_blocks=u["num_res_blocks"],
        attn_levels=tuple(u["attn_levels"]),
        attn_heads=u["attn_heads"],
    )


def build_diffusion(config: dict[str, Any]) -> GaussianDiffusion:
    """The full T-step process of ``config["ddpm"]["diffusion"]``."""
    d = config["ddpm"]["diffusion"]
    return GaussianDiffusion.from_config(d["schedule"], d["timesteps"])


def build_sampler(config: dict[str, Any]) -> AncestralSampler | DDIMSampler:
    """The sampler of ``config["sampling"]`` (``sampler``: ancestral | ddim, ``steps``, ``eta``)."""
    s = config["sampling"]
    return make_sampler(s["sampler"], build_diffusion(config), s.get("steps"), s.get("eta", 0.0))


def x0_bounds(config: dict[str, Any], vqgan: VQGAN, scale: float, mean: torch.Tensor | None) -> Bounds | None:
    """Bounds of the DDPM's x_0 when ``sampling.clip_x0`` is on (None otherwise, and for configs without the key).

    The DDPM learns ``(z_q - mean) · scale``, and every quantised latent z_q is a codebook vector, so channel c
    lies in ``[(min_c - mean) · scale, (max_c - mean) · scale]`` with min_c / max_c over the codebook: the
    per-channel form of medicaldiffusion's clipping of x_0 to the codebook's range. ``mean``: the per-position
    mean latent ``(C, d, h, w)`` or None; the bounds broadcast to ``(N, C, d, h, w)``.
    """
    if not config["sampling"].get("clip_x0", False):
        return None
    emb = vqgan.quantizer.embedding.float()  # (K, C)
    lo, hi = (v.view(-1, 1, 1, 1) for v in (emb.min(0).values, emb.max(0).values))
    offset = mean.to(emb.device) if mean is not None else 0.0
    return (lo - offset) * scale, (hi - offset) * scale


def attention_positions(config: dict[str, Any]) -> dict[str, int]:
    """Positions (d·h·w) each self-attention level of the UNet attends over: ``{"level 1": 2048, "middle": 256}``.

    Level i works at the latent size halved i times (a stride-2 conv maps n to ⌈n/2⌉); the middle block at the
    lowest level.
    """
    u = config["ddpm"]["unet"]
    size = list(latent_shape(config)[1:])
    out: dict[str, int] = {}
    levels = len(u["channel_mult"])
    for level in range(levels):
        if level in u["attn_levels"]:
            out[f"level {level}"] = size[0] * size[1] * size[2]
        if level < levels - 1:
            size = [-(-s // 2) for s in size]
    out["middle"] = size[0] * size[1] * size[2]
    return out


def check_latent_fits(config: dict[str, Any], variant: str = "full") -> None:
    """Raise ``ValueError`` when the latent of ``config`` cannot be compressed or would not fit the UNet.

    Not fitting: a self-attention layer over more than ``ddpm.unet.max_attention_positions`` positions (its
    attention matrix grows with their square).
    """
    shape = latent_shape(config)
    limit = config["ddpm"]["unet"]["max_attention_positions"]
    too_big = {k: n for k, n in attention_positions(config).items() if n > limit}
    if too_big:
        where = ", ".join(f"{k}: {n}" for k, n in too_big.items())
        raise ValueError(
            f"vqgan-ddpm@{variant}: the latent {shape[0]} × {'×'.join(map(str, shape[1:]))} would not fit the UNet: "
            f"its self-attention would attend over more than ddpm.unet.max_attention_positions = {limit} positions "
            f"({where}); attend at lower levels only (ddpm.unet.attn_levels), add a level (channel_mult), use a "
            "higher compression or a smaller data.volume_shape, or raise the limit"
        )


def latent_shape(config: dict[str, Any]) -> tuple[int, int, int, int]:
    """``(C, d, h, w)`` of the latents for ``data.volume_shape``."""
    c = config["vqgan"]["compression"]
    shape = config["data"]["volume_shape"]
    if any(s % c for s in shape):
        raise ValueError(f"data.volume_shape {shape} is not divisible by vqgan.compression {c}")
    return (config["vqgan"]["embed_dim"], *(s // c for s in shape))
