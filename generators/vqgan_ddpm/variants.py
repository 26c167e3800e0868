"""The reference generator's default config (the paper's settings) and its registered variants.

This is the one place defaults live: the plugin, ``ctbench train`` and the YAML files under
``configs/`` beside it (which hold overrides of it) all start from :data:`DEFAULT_CONFIG`.

Decisions written down here:

* **Compression.** ``vqgan.compression = c`` means c× per axis. The default is c = 4 (``@full`` = ``@c4``),
  the paper's text: a 64×128×128 volume becomes an 8 × 16×32×32 latent. Its Tables I–II (and
  medicaldiffusion's ``[2, 2, 2]``) read as c = 2, 8 × 32×64×64: ``@c2``. The text is the default because it
  is the one statement of the compression in words, and its latent is the one the UNet's stated size fits
  (8× fewer positions; ``@c2`` must drop self-attention at the UNet's middle level to stay within
  ``ddpm.unet.max_attention_positions``). Both are one command each, so they can be compared.
* **Flips.** No training augmentation by default: a left-right flip mirrors anatomy, which the unflipped
  reference set penalises. ``@flip`` is the paper's "image inversion" (probability 0.5).
* **Extra VQGAN terms** (medicaldiffusion's recipe): LPIPS on slices (``perceptual_weight`` 4, needs the
  VGG16 ImageNet weights; 0 = off), discriminator feature matching (``discriminator.feature_weight`` 4) and
  gradient clipping (``train.grad_clip`` 1.0, both stages).
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
from ctbench.core.kinds import kind_mismatch

DEFAULT_CONFIG: dict[str, Any] = {
    "seed": 0,
    "data": {
        "volume_shape": [64, 128, 128],  # (D, H, W) the training volumes are resized to (trilinear)
        # left-right flip, training only. 0: flips mirror anatomy (the liver moves to the patient's left), which the
        # unflipped reference set then penalises; @flip (0.5) is the paper's "image inversion"
        "flip_probability": 0.0,
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
            "feature_weight": 4.0,  # L1 feature matching on both discriminators' activations (medicaldiffusion: 4)
        },
        "rec_weight": 4.0,
        # LPIPS (VGG16 ImageNet trunk, `ctbench weights fetch vgg16-imagenet`) on one axial slice per volume,
        # medicaldiffusion's 4; 0 = without it (no weights needed)
        "perceptual_weight": 4.0,
        "train": {"steps": 100000, "batch_size": 2, "grad_accum": 1, "lr": 3.0e-4, "grad_clip": 1.0},
    },
    "ddpm": {
        "unet": {
            "base_channels": 256,
            "channel_mult": [1, 2, 2],
            "num_res_blocks": 2,
            "attn_levels": [1, 2],
            "attn_heads": 4,
            # the most latent positions (d·h·w) any self-attention layer may attend over: a bigger latent
            # (e.g. @c2 with attention at level 1) is refused before training instead of running out of memory
            "max_attention_positions": 4096,
        },
        "diffusion": {"timesteps": 1000, "schedule": "cosine", "vlb_weight": 0.001},
        "train": {"steps": 100000, "batch_size": 8, "grad_accum": 1, "lr": 1.0e-4, "ema_decay": 0.9999,
                  "grad_clip": 1.0},
        "scale_batches": 16,  # batches encoded to measure the latent std (latents are scaled to unit variance)
        # subtract the per-position mean latent (measured on the same batches) before scaling: the DDPM then
        # learns only how volumes differ from the mean one. Off: the paper's plain scaling
        "center_latents": False,
    },
    # resize: how volumes decoded below the protocol's size (data.volume_shape) reach it: trilinear | nearest.
    # clip_x0: clamp the predicted x_0 at every step to the box the codebook spans, as medicaldiffusion clips
    # its codebook-normalised x_0 to [-1, 1] (checkpoints from before the key: off)
    "sampling": {"sampler": "ddim", "steps": 50, "eta": 0.0, "batch_size": 4, "resize": "trilinear", "clip_x0": True},
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
    # compression: c× per axis. c4 (= full, the default) is the paper's text; c2 its Tables I-II and
    # medicaldiffusion's [2, 2, 2] downsampling, whose 8 × 32×64×64 latent keeps self-attention at the UNet's
    # lowest level only (8×16×16 positions)
    "c2": {"vqgan": {"compression": 2}, "ddpm": {"unet": {"attn_levels": [2]}}},
    "c4": {},  # latents 8 × 16×32×32
    "c8": {"vqgan": {"compression": 8}},  # latents 8 × 8×16×16
    "c16": {"vqgan": {"compression": 16}},  # latents 8 × 4×8×8
    "flip": {"data": {"flip_probability": 0.5}},  # the paper's "image inversion": left-right flips in training
    # the paper's sampler: all T ancestral steps (default: DDIM 50); loads any checkpoint trained as the default
    "ancestral": {"sampling": {"sampler": "ancestral", "steps": None}},
}
SAMPLING_VARIANTS = frozenset({"ancestral"})
"""Variants that change only sampling: one names them when loading a checkpoint trained as the default variant."""
DEFAULT_VARIANT = "full"


def default_config() -> dict[str, Any]:
    """A deep copy of :data:`DEFAULT_CONFIG`."""
    return copy.deepcopy(DEFAULT_CONFIG)


def resolve_variant_config(variant: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """:data:`DEFAULT_CONFIG`, then ``overrides``, then ``VARIANTS[variant]`` (the variant's keys win).

    Raises ``ValueError`` when ``overrides`` sets one of the variant's keys to a value that is neither
    the default (a file that only spells out defaults, like ``flare22.yaml``) nor the variant's own; a
    sampling variant (``@ancestral``) simply wins over a file's sampling settings.
    """
    defaults, changes = flatten_config(DEFAULT_CONFIG), flatten_config(VARIANTS[variant])
    for key, value in flatten_config(overrides).items():
        if variant in SAMPLING_VARIANTS:  # a file's DDIM step count is no contradiction of the full ancestral chain
            break
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


def augmentation(config: dict[str, Any]) -> list[str]:
    """The training augmentation of ``config`` as recorded in checkpoints and results: ``["flip-lr"]`` or ``[]``."""
    return ["flip-lr"] if config["data"]["flip_probability"] else []


def sampler_label(config: dict[str, Any]) -> str:
    """``ddim-50`` or ``ancestral-1000``: the sampler and its number of network evaluations per sample, plus
    ``-unclipped`` when the predicted x_0 is not clipped (``sampling.clip_x0`` off or absent)."""
    s = config["sampling"]
    steps = s["steps"] or (config["ddpm"]["diffusion"]["timesteps"] if s["sampler"] == "ancestral" else 50)
    return f"{s['sampler']}-{steps}" + ("" if s.get("clip_x0", False) else "-unclipped")


def check_config(config: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the first key of ``config`` that :data:`DEFAULT_CONFIG` does not have, or the
    first ``sampling`` value of the wrong kind (:func:`check_sampling`)."""
    _check_keys(config, DEFAULT_CONFIG, "")
    if "sampling" in config:
        check_sampling(config["sampling"])


def check_sampling(sampling: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the first ``sampling.*`` value that no sampler can use (keys absent: fine; the
    kinds of values are :func:`check_config`'s)."""
    def fail(key: str, expected: str) -> None:
        raise ValueError(f"sampling.{key} must be {expected}, got {sampling[key]!r}")

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    checks = {
        "sampler": (lambda v: v in ("ddim", "ancestral"), "ddim or ancestral"),
        "steps": (lambda v: v is None or (is_int(v) and v >= 1), "a whole number ≥ 1, or null (the sampler's default)"),
        "eta": (lambda v: (is_int(v) or isinstance(v, float)) and v >= 0, "a number ≥ 0"),
        "batch_size": (lambda v: is_int(v) and v >= 1, "a whole number ≥ 1"),
        "resize": (lambda v: v in ("trilinear", "nearest"), "trilinear or nearest"),
    }
    for key, (ok, expected) in checks.items():
        if key in sampling and not ok(sampling[key]):
            fail(key, expected)


def _check_keys(data: dict, reference: dict, prefix: str) -> None:
    """Every key of ``data`` is one of ``reference``'s, and each value has its default's kind (null: any key but a
    section)."""
    for key, value in data.items():
        if key not in reference:
            raise ValueError(f"unknown config key {prefix + key!r}; known here: {', '.join(sorted(reference))}")
        default, name = reference[key], prefix + key
        if isinstance(default, dict):
            if not isinstance(value, dict):
                keys = ", ".join(sorted(default))
                raise ValueError(f"config key {name!r} is a section (keys: {keys}), got {value!r}")
            _check_keys(value, default, f"{name}.")
        elif value is not None and (expected := kind_mismatch(default, value)):
            hint = " (YAML reads 1e-3 as text: write 1.0e-3)" if _number_as_text(value) else ""
            raise ValueError(f"config key {name!r} must be {expected}, got {value!r}{hint}")


def _number_as_text(value: Any) -> bool:
    """Whether ``value`` is text that reads as a number (YAML 1.1 leaves ``1e-3`` a string)."""
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str)
