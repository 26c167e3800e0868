"""Shapes through every stage for each variant; configs, variants and the registry entry."""

from __future__ import annotations

import re

import pytest
import torch
import yaml

from ctbench.api import REGISTRY, deep_update
from ctbench_generators.vqgan_ddpm.build import (
    build_discriminators,
    build_sampler,
    build_unet,
    build_vqgan,
    latent_shape,
)
from ctbench_generators.vqgan_ddpm.discriminators import random_axial_slices
from ctbench_generators.vqgan_ddpm.plugin import VQGANDDPM
from ctbench_generators.vqgan_ddpm.variants import VARIANTS, check_config, default_config, flatten_config

CONFIGS = VQGANDDPM.config_files()
SMALL = {
    "data": {"volume_shape": [32, 64, 64]},
    "vqgan": {"base_channels": 4, "codebook_size": 64, "n_res_blocks": 1, "discriminator": {"channels": 4}},
    "ddpm": {"unet": {"base_channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1}},
}
EXPECTED_LATENT = {"c2": (8, 16, 32, 32), "c8": (8, 4, 8, 8), "c16": (8, 2, 4, 4)}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_shapes_through_every_stage(variant):
    cfg = VQGANDDPM.resolve_config(variant, SMALL)
    shape = tuple(cfg["data"]["volume_shape"])
    c, d, h, w = latent_shape(cfg)
    assert (c, d, h, w) == EXPECTED_LATENT.get(variant, (8, 8, 16, 16))
    vq = build_vqgan(cfg).train()
    x = torch.rand(2, 1, *shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    out = vq(x, torch.Generator().manual_seed(0))
    assert out.reconstruction.shape == x.shape
    assert out.quantized.z_q.shape == (2, c, d, h, w)
    assert out.quantized.indices.shape == (2, d, h, w)
    assert vq.decode(out.quantized.z_q.detach()).shape == x.shape

    discs = build_discriminators(cfg)
    enabled = cfg["vqgan"]["discriminator"]["enabled"]
    assert (discs is not None) == enabled == (variant not in ("rec", "rec+cb+cm"))
    if discs is not None:
        logits_s, logits_v = discs(random_axial_slices(x), x)
        assert logits_s.shape[:2] == (2, 1) and logits_s.ndim == 4
        assert logits_v.shape[:2] == (2, 1) and logits_v.ndim == 5

    unet = build_unet(cfg)
    eps_v = unet(out.quantized.z_q.detach(), torch.tensor([0, 999]))
    assert eps_v.shape == (2, 2 * c, d, h, w)
    z = build_sampler(deep_update(cfg, {"sampling": {"steps": 2}})).sample(
        unet, (c, d, h, w), [torch.Generator().manual_seed(0)]
    )
    assert z.shape == (1, c, d, h, w)


def test_loss_term_variants_switch_the_right_terms():
    q = {v: VQGANDDPM.resolve_config(v)["vqgan"]["quantizer"] for v in VARIANTS}
    disc = {v: VQGANDDPM.resolve_config(v)["vqgan"]["discriminator"]["enabled"] for v in VARIANTS}
    for v in ("rec", "rec+disc"):  # without L_cb and L_cm
        assert (q[v]["ema_update"], q[v]["dead_code_restart"], q[v]["commitment_weight"]) == (False, False, 0.0)
    for v in ("rec+cb+cm", "full", "c2", "c4", "c8", "c16", "flip", "ancestral"):
        assert (q[v]["ema_update"], q[v]["dead_code_restart"], q[v]["commitment_weight"]) == (True, True, 0.25)
    assert disc == {"rec": False, "rec+disc": True, "rec+cb+cm": False, "full": True, "c2": True, "c4": True,
                    "c8": True, "c16": True, "flip": True, "ancestral": True}
    assert VQGANDDPM.resolve_config("full") == default_config()


def test_paper_size_latent_is_8x16x32x32():
    vq = build_vqgan(default_config()).eval()
    with torch.no_grad():
        z = vq.encoder(torch.zeros(1, 1, 64, 128, 128))
    assert z.shape == (1, 8, 16, 32, 32)
    assert latent_shape(default_config()) == (8, 16, 32, 32)
    assert default_config()["vqgan"]["codebook_size"] == 16384
    assert default_config()["ddpm"]["unet"]["base_channels"] == 256


def test_flare22_yaml_spells_out_exactly_the_default_config():
    data = yaml.safe_load(CONFIGS["flare22"].read_text())
    assert data == default_config()


def test_tiny_yaml_is_valid_and_small():
    data = yaml.safe_load(CONFIGS["tiny"].read_text())
    check_config(data)
    cfg = VQGANDDPM.resolve_config(None, data)
    assert cfg["data"]["volume_shape"] == [16, 32, 32]
    assert latent_shape(cfg) == (8, 4, 8, 8)


def test_unknown_config_keys_and_bad_compression_are_refused():
    with pytest.raises(ValueError, match="'vqgan.quantiser'"):
        check_config({"vqgan": {"quantiser": {}}})
    for config, message in [
        ({"vqgan": {"train": {"steps": "two"}}}, "config key 'vqgan.train.steps' must be a whole number, got 'two'"),
        ({"vqgan": {"train": {"lr": "1e-3"}}},
         "config key 'vqgan.train.lr' must be a number, got '1e-3' (YAML reads 1e-3 as text: write 1.0e-3)"),
        ({"vqgan": 5}, "config key 'vqgan' is a section (keys: attn_heads, base_channels, codebook_size, "),
        ({"data": {"volume_shape": "64x128x128"}}, "config key 'data.volume_shape' must be a list, got '64x128x128'"),
        ({"ddpm": {"center_latents": 1}}, "config key 'ddpm.center_latents' must be true or false, got 1"),
        ({"vqgan": {"train": {"steps": 8.0}}}, "config key 'vqgan.train.steps' must be a whole number, got 8.0"),
    ]:
        with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
            check_config(config)
    check_config({"vqgan": {"train": {"steps": 8, "lr": 1, "grad_clip": None}}, "cpu_threads": 2})  # all fine
    with pytest.raises(ValueError, match="power of two"):
        build_vqgan(VQGANDDPM.resolve_config(None, {"vqgan": {"compression": 3}}))
    with pytest.raises(ValueError, match="not divisible"):
        latent_shape(VQGANDDPM.resolve_config(None, {"data": {"volume_shape": [18, 32, 32]}}))


def test_registered_as_trainable_plugin_with_its_variants():
    cls = REGISTRY.get("vqgan-ddpm")
    assert cls is VQGANDDPM and cls.trainable
    assert set(cls.variants()) == {"rec", "rec+disc", "rec+cb+cm", "full", "c2", "c4", "c8", "c16", "flip", "ancestral"}
    assert cls.default_variant() == "full"


@pytest.mark.parametrize("config_file", ["flare22", "tiny"])
def test_variant_keys_win_over_a_config_file_that_spells_out_defaults(config_file):
    data = yaml.safe_load(CONFIGS[config_file].read_text())
    file_only = flatten_config(deep_update(default_config(), data))
    for variant in VARIANTS:
        keys = flatten_config(VARIANTS[variant])
        resolved = flatten_config(VQGANDDPM.resolve_config(variant, data))
        assert {k: resolved[k] for k in keys} == keys, variant  # the variant's keys hold
        assert {k: v for k, v in resolved.items() if k not in keys} == {  # everything else is the file's
            k: v for k, v in file_only.items() if k not in keys
        }, variant
    assert VQGANDDPM.resolve_config("c8", data)["vqgan"]["compression"] == 8
    assert VQGANDDPM.resolve_config("default", {"vqgan": {"compression": 8}})["vqgan"]["compression"] == 8
    with pytest.raises(ValueError, match="'vqgan.quantizer.commitment_weight' = 0.5 contradicts variant 'rec'"):
        VQGANDDPM.resolve_config("rec", {"vqgan": {"quantizer": {"commitment_weight": 0.5}}})


def test_paper_unet_has_285m_parameters():
    """256 base channels, multipliers (1, 2, 2), 2 res blocks, attention at the lower two levels: 285 M."""
    with torch.device("meta"):
        unet = build_unet(default_config())
    assert sum(p.numel() for p in unet.parameters()) == pytest.approx(285.0e6, rel=0.005)


@pytest.mark.parametrize("latent", [(1, 2, 2), (3, 5, 5)])
def test_unet_handles_odd_and_size_one_latent_axes(latent):
    """A stride-2 conv maps 1 → 1 and 5 → 3; the decoder path upsamples back to each skip's size."""
    cfg = VQGANDDPM.resolve_config(None, SMALL)
    unet = build_unet(cfg)
    x = torch.randn(1, 8, *latent)
    assert unet(x, torch.tensor([3])).shape == (1, 16, *latent)
