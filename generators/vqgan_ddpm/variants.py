"""The reference generator's default config (the paper's settings) and its registered variants.

This is the one place defaults live: the plugin, ``ctbench train`` and the YAML files under
``configs/`` beside it (which hold overrides of it) all start from :data:`DEFAULT_CONFIG`.

Decisions written down here:

* **Compression.** ``vqgan.compression = c`` means c× per axis (the paper's text; its tables say
  otherwise, the text wins): c = 4 maps a 64×128×128 volume to a 16×32×32 latent with 8 channels.
* **"Without L_cb and L_cm" for an EMA codebook.** The codebook is a buffer that learns only through
  its EMA update, which is what stands in for the codebook loss L_cb. Without L_cb: EMA updates and
  dead-code restarts are off, so the codebook stays frozen at its initialisation (random encoder
  outputs of the first batch); the encoder still gets the straight-through gradient. Without L_cm:
  commitment weight β = 0.
* **Without L_disc.** Both discriminators are disabled (not built, not trained).
"""

from __future__ import annotations

import copy
from typing import Any

from ctbench.api import deep_update

DEFAULT_CONFIG: dict[str, Any] = {
    "seed": 0,
    "data": {
        "volume_shape": [64, 128, 128],  # (D, H, W) the training volumes are resized to (trilinear)
        "flip_probability": 0.5,  # left-right flip, training only (protocol flare22-v1)
    },
    "vqgan": {
        "base_channels": 16,
        "compression": 4,  # c× per axis: 64×128×128 -> 16×32×32 (the paper's text, not its tables)
        "embed_dim": 8,
        "codebook_size": 16384,
        "n_res_blocks": 2,
        "attn_heads": 2,
        "quantizer": {
            "commitment_weight": 0.25,  # β of L_cm; 0 = without L_cm
            "decay": 0.99,
            "ema_update": True,  # False (with dead_code_restart False) = without L_cb: codebook frozen at init
            "dead_code_restart": True,
            "restart_threshold": 1.0,
        },
        "discriminator": {
            "enabled": True,  # False = without L_disc
            "channels": 64,
            "n_layers": 3,
            "start_step": 10000,  # adversarial terms switch on after this warm-up (optimiser steps)
            "slice_weight": 1.0,  # 2D discriminator on random axial slices
            "volume_weight": 1.0,  # 3D discriminator on the whole volume
            "lr": 3.0e-4,
        },
        "rec_weight": 4.0,
        "train": {"steps": 100000, "batch_size": 2, "grad_accum": 1, "lr": 3.0e-4},
    },
    "ddpm": {
        "unet": {
            "base_channels": 256,
            "channel_mult": [1, 2, 2],
            "num_res_blocks": 2,
            "attn_levels": [1, 2],
            "attn_heads": 4,
        },
        "diffusion": {"timesteps": 1000, "schedule": "cosine", "vlb_weight": 0.001},
        "train": {"steps": 100000, "batch_size": 8, "grad_accum": 1, "lr": 1.0e-4, "ema_decay": 0.9999},
        "scale_batches": 16,  # batches encoded to measure the latent std (latents are scaled to unit variance)
    },
    "sampling": {"sampler": "ddim", "steps": 50, "eta": 0.0, "batch_size": 4},
    "checkpoint": {"save_every": 1000, "sample_every": 5000, "log_every": 10},
    # bf16 autocast and channels-last memory format, per device type. On the CPU both are off by default:
    # fp32 keeps runs bit-reproducible (resume), and bf16 convolutions are slow on most CPUs.
    "bf16": {"cuda": True, "cpu": False},
    "channels_last": {"cuda": True, "cpu": False},
    # torch intra-op threads while training on the CPU (None: torch's default). Toy sizes run fastest on
    # one thread, and far faster than with oversubscribed threads on a shared machine.
    "cpu_threads": None,
}

VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "rec": {
        "vqgan": {
            "discriminator": {"enabled": False},
            "quantizer": {"ema_update": False, "dead_code_restart": False, "commitment_weight": 0.0},
        }
    },
    "rec+disc": {
        "vqgan": {"quantizer": {"ema_update": False, "dead_code_restart": False, "commitment_weight": 0.0}}
    },
    "rec+cb+cm": {"vqgan": {"discriminator": {"enabled": False}}},
    "c8": {"vqgan": {"compression": 8}},  # latents 8 × 8×16×16
    "c16": {"vqgan": {"compression": 16}},  # latents 8 × 4×8×8
}
DEFAULT_VARIANT = "full"


def default_config() -> dict[str, Any]:
    """A deep copy of :data:`DEFAULT_CONFIG`."""
    return copy.deepcopy(DEFAULT_CONFIG)


def resolve_variant_config(variant: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """:data:`DEFAULT_CONFIG`, then ``overrides``, then ``VARIANTS[variant]`` (the variant's keys win).

    Raises ``ValueError`` when ``overrides`` sets one of the variant's keys to a value that is neither
    the default (a file that only spells out defaults, like ``flare22.yaml``) nor the variant's own.
    """
    defaults, changes = flatten_config(DEFAULT_CONFIG), flatten_config(VARIANTS[variant])
    for key, value in flatten_config(overrides).items():
        if key in changes and value not in (defaults.get(key), changes[key]):
            raise ValueError(
                f"config key {key!r} = {value!r} contradicts variant {variant!r}, which sets it to {changes[key]!r}"
            )
    return deep_update(deep_update(DEFAULT_CONFIG, overrides), VARIANTS[variant])


def flatten_config(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flatten_config(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def check_config(config: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the first key of ``config`` that :data:`DEFAULT_CONFIG` does not have."""
    _check_keys(config, DEFAULT_CONFIG, "")


def _check_keys(data: dict, reference: dict, prefix: str) -> None:
    for key, value in data.items():
        if key not in reference:
            raise ValueError(f"unknown config key {prefix + key!r}; known here: {', '.join(sorted(reference))}")
        if isinstance(value, dict) and isinstance(reference[key], dict):
            _check_keys(value, reference[key], f"{prefix}{key}.")
