"""medicaldiffusion's recipe terms (feature matching, LPIPS on slices, gradient clipping), the variants
@c2/@c4/@flip/@ancestral, flips in checkpoints, latent centring, and the lean sampling import path."""

from __future__ import annotations

import copy
import dataclasses
import re
import subprocess
import sys

import pytest
import torch
import torchvision

import ctbench.weights as W
from ctbench.core.hashing import file_sha256
from ctbench_generators.vqgan_ddpm.build import (
    build_discriminators,
    build_vqgan,
    check_latent_fits,
    latent_shape,
    x0_bounds,
)
from ctbench_generators.vqgan_ddpm.checkpoint import load_checkpoint
from ctbench_generators.vqgan_ddpm.diffusion import GaussianDiffusion
from ctbench_generators.vqgan_ddpm.discriminators import SliceDiscriminator
from ctbench_generators.vqgan_ddpm.losses import feature_matching_loss
from ctbench_generators.vqgan_ddpm.perceptual import VGG_WEIGHTS, SlicePerceptualLoss, load_perceptual
from ctbench_generators.vqgan_ddpm.plugin import VQGANDDPM
from ctbench_generators.vqgan_ddpm.runtime import Runtime
from ctbench_generators.vqgan_ddpm.steps import clip_and_step, vqgan_step
from ctbench_generators.vqgan_ddpm.trainer import train
from ctbench_generators.vqgan_ddpm.variants import (
    VARIANTS,
    augmentation,
    check_config,
    resolve_variant_config,
    sampler_label,
)


@pytest.fixture(scope="module")
def vgg_state() -> dict[str, torch.Tensor]:
    """A randomly initialised torchvision VGG16's conv trunk (``features.*``), as the ImageNet file holds it."""
    torch.manual_seed(0)
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])  # VGG16's trunk, no classifier
    return {f"features.{k}": v for k, v in features.state_dict().items()}


def test_feature_matching_is_the_weighted_l1_of_activations_before_the_logits():
    real = [torch.zeros(2, 3), torch.zeros(2, 5), torch.full((2, 1), 9.0)]
    fake = [torch.ones(2, 3, requires_grad=True), torch.full((2, 5), 3.0, requires_grad=True), torch.zeros(2, 1)]
    loss = feature_matching_loss(fake, real)
    assert loss.item() == pytest.approx(4 / 2 * 1 + 4 / 2 * 3)  # the logits (last) do not count
    loss.backward()
    assert fake[0].grad is not None and torch.allclose(fake[0].grad, torch.full((2, 3), 2 / 6))
    assert feature_matching_loss(real, real).item() == 0


def test_patchgan_features_end_with_its_logits():
    d = SliceDiscriminator(4, 2).eval()
    x = torch.randn(2, 1, 16, 16)
    feats = d.features(x)
    assert len(feats) == 2 + 2 and torch.equal(feats[-1], d(x))
    assert [f.shape[1] for f in feats[:-1]] == [4, 8, 16]


def test_feature_matching_and_clipping_enter_the_generator_step(tiny_config, toy_volumes):
    x = torch.stack(toy_volumes(2))

    def one_step(feature_weight: float, grad_clip: float | None) -> tuple[dict[str, float], torch.Tensor]:
        cfg = tiny_config(vqgan={"discriminator": {"feature_weight": feature_weight, "start_step": 0},
                                 "train": {"grad_clip": grad_clip}})
        torch.manual_seed(0)
        vq, discs = build_vqgan(cfg), build_discriminators(cfg)
        before = torch.cat([p.detach().flatten().clone() for p in vq.parameters()])
        opt_g, opt_d = torch.optim.SGD(vq.parameters(), lr=1.0), torch.optim.SGD(discs.parameters(), lr=1.0)
        logs = vqgan_step(vq.train(), discs.train(), opt_g, opt_d, [x], 0, cfg, torch.Generator().manual_seed(1),
                          Runtime())
        return logs, torch.cat([p.detach().flatten() for p in vq.parameters()]) - before

    plain, d_plain = one_step(0.0, None)
    fm, d_fm = one_step(4.0, None)
    assert "fm" not in plain and fm["fm"] > 0 and fm["rec"] == plain["rec"]
    assert not torch.allclose(d_plain, d_fm)
    _, d_clipped = one_step(4.0, 0.5)
    assert d_clipped.norm().item() == pytest.approx(0.5, rel=1e-4)  # SGD at lr 1 moves by the clipped gradient


def test_clip_and_step_leaves_small_gradients_alone():
    p = torch.nn.Parameter(torch.zeros(4))
    opt = torch.optim.SGD([p], lr=1.0)
    p.grad = torch.tensor([3.0, 4.0, 0.0, 0.0])
    clip_and_step(opt, 1.0)
    assert torch.allclose(p.detach(), torch.tensor([-0.6, -0.8, 0.0, 0.0]))
    p.grad = torch.tensor([0.3, 0.4, 0.0, 0.0])
    clip_and_step(opt, 1.0)
    assert torch.allclose(p.detach(), torch.tensor([-0.9, -1.2, 0.0, 0.0]))
    p.grad = torch.tensor([30.0, 0.0, 0.0, 0.0])
    clip_and_step(opt, None)
    assert p.detach()[0].item() == pytest.approx(-30.9)


def test_perceptual_loss_uses_the_given_trunk_and_lpips_heads(vgg_state):
    import lpips

    loss = SlicePerceptualLoss(vgg_state).train()
    assert not loss.training and not any(p.requires_grad for p in loss.parameters())
    assert torch.equal(getattr(loss.lpips.net.slice3, "10").weight, vgg_state["features.10.weight"])
    heads = torch.load(f"{lpips.__path__[0]}/weights/v0.1/vgg.pth", map_location="cpu", weights_only=True)
    assert torch.equal(loss.lpips.lin0.model[1].weight, heads["lin0.model.1.weight"])  # the wheel's linear heads
    assert loss.lpips.lins[4] is loss.lpips.lin4 and not any(p.is_meta for p in loss.state_dict().values())
    real = torch.rand(2, 1, 32, 32) * 2 - 1
    fake = (real + 0.3 * torch.randn(2, 1, 32, 32)).requires_grad_(True)
    assert loss(real, real).item() == pytest.approx(0.0, abs=1e-6)
    value = loss(real, fake)
    value.backward()
    assert value.item() > 0 and fake.grad is not None and fake.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="not a torchvision VGG16 state dict"):
        SlicePerceptualLoss({})


def test_perceptual_loss_without_weights_says_how_to_get_them(tiny_config, monkeypatch, tmp_path):
    monkeypatch.setenv("CTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert load_perceptual(tiny_config(vqgan={"perceptual_weight": 0})) == (None, None)
    with pytest.raises(ValueError, match="ctbench weights fetch vgg16-imagenet") as err:
        load_perceptual(tiny_config(vqgan={"perceptual_weight": 4.0}))
    assert "vqgan.perceptual_weight: 0" in str(err.value) and "\n" not in str(err.value)


def test_training_with_lpips_records_the_vgg_weights(tiny_config, toy_volumes, vgg_state, monkeypatch, tmp_path):
    monkeypatch.setenv("CTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    weights = tmp_path / "vgg16-397923af.pth"
    torch.save(vgg_state, weights)
    spec = dataclasses.replace(W.WEIGHTS[VGG_WEIGHTS], sha256=file_sha256(weights))  # pin the random stand-in
    monkeypatch.setitem(W.WEIGHTS, VGG_WEIGHTS, spec)
    assert W.import_weights(weights).spec.name == VGG_WEIGHTS  # told apart from InceptionV3 by its file name
    cfg = tiny_config(vqgan={"perceptual_weight": 4.0, "train": {"steps": 1}},
                      checkpoint={"sample_every": 0})
    train(cfg, toy_volumes(2), tmp_path / "run", stage="vqgan", progress=False)
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["perceptual_weights_sha256"] == spec.sha256


def test_compression_variants_and_the_latent_fit():
    assert VARIANTS["c4"] == VARIANTS["full"] == {}
    assert latent_shape(resolve_variant_config("c2", {})) == (8, 32, 64, 64)
    check_latent_fits(resolve_variant_config("c2", {}), "c2")  # attention at the lowest level only: 8×16×16
    wide = resolve_variant_config("c2", {"ddpm": {"unet": {"channel_mult": [1, 2]}}})
    with pytest.raises(ValueError, match=r"@c2: the latent 8 × 32×64×64 would not fit the UNet.*middle: 16384"):
        check_latent_fits(wide, "c2")


def test_flips_are_off_by_default_and_recorded(tiny_config, toy_volumes, tmp_path):
    default, flip = resolve_variant_config("full", {}), resolve_variant_config("flip", {})
    assert augmentation(default) == [] and augmentation(flip) == ["flip-lr"]
    assert flip["data"]["flip_probability"] == 0.5
    cfg = tiny_config("flip", vqgan={"train": {"steps": 1}}, checkpoint={"sample_every": 0})
    train(cfg, toy_volumes(2), tmp_path, stage="vqgan", variant="flip", progress=False)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["augmentation"] == ["flip-lr"]
    unflipped = copy.deepcopy(cfg)
    unflipped["data"]["flip_probability"] = 0.0
    unflipped["vqgan"]["train"]["steps"] = 2
    with pytest.raises(ValueError, match=r"trained with left-right flips .* resume it as vqgan-ddpm@flip"):
        train(unflipped, toy_volumes(2), tmp_path, stage="vqgan", resume=True, progress=False)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["vqgan"]["step"] == 1  # nothing lost


def test_sampler_labels():
    assert sampler_label(resolve_variant_config("full", {})) == "ddim-50"
    assert sampler_label(resolve_variant_config("ancestral", {})) == "ancestral-1000"
    assert sampler_label(resolve_variant_config("full", {"sampling": {"clip_x0": False}})) == "ddim-50-unclipped"
    old = resolve_variant_config("full", {})
    del old["sampling"]["clip_x0"]  # a checkpoint's config from before the key sampled without clipping
    assert sampler_label(old) == "ddim-50-unclipped"


@pytest.mark.parametrize(("sampling", "message"), [
    ({"clip_x0": "maybe"}, "config key 'sampling.clip_x0' must be true or false, got 'maybe'"),
    ({"steps": 0}, "sampling.steps must be a whole number ≥ 1, or null (the sampler's default), got 0"),
    ({"steps": True}, "config key 'sampling.steps' must be a whole number, got True"),
    ({"batch_size": None}, "sampling.batch_size must be a whole number ≥ 1, got None"),
    ({"sampler": "ddpm"}, "sampling.sampler must be ddim or ancestral, got 'ddpm'"),
    ({"eta": -0.5}, "sampling.eta must be a number ≥ 0, got -0.5"),
    ({"batch_size": 0}, "sampling.batch_size must be a whole number ≥ 1, got 0"),
    ({"resize": "cubic"}, "sampling.resize must be trilinear or nearest, got 'cubic'"),
])
def test_sampling_values_are_checked(sampling, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        check_config({"sampling": sampling})
    check_config({"sampling": {"steps": None, "eta": 1, "clip_x0": False, "resize": "nearest"}})  # all fine


def test_x0_bounds_hold_every_codebook_vector(tiny_config):
    cfg = tiny_config()
    vq = build_vqgan(cfg)
    emb = torch.randn(vq.quantizer.embedding.shape, generator=torch.Generator().manual_seed(0)) * 3 + 1
    vq.quantizer.embedding.copy_(emb)
    shape = latent_shape(cfg)
    mean = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    lo, hi = x0_bounds(cfg, vq, 0.5, mean)
    assert lo.shape == hi.shape == shape
    z = emb.T.reshape(shape[0], -1, 1, 1, 1)  # every codebook vector, at every position
    scaled = (z - mean.unsqueeze(1)) * 0.5
    assert (scaled >= lo.unsqueeze(1) - 1e-6).all() and (scaled <= hi.unsqueeze(1) + 1e-6).all()
    assert torch.allclose(lo[:, 0, 0, 0], (emb.min(0).values - mean[:, 0, 0, 0]) * 0.5)  # the box is tight
    lo, hi = x0_bounds(cfg, vq, 2.0, None)
    assert lo.shape == hi.shape == (shape[0], 1, 1, 1) and torch.allclose(hi.flatten(), emb.max(0).values * 2)
    assert x0_bounds(tiny_config(sampling={"clip_x0": False}), vq, 1.0, None) is None


def test_ddim_starts_below_the_last_timestep():
    d = GaussianDiffusion.from_config("cosine", 100)
    assert d.ddim_spaced(10).timestep_map.tolist() == list(range(0, 100, 10))
    assert d.ddim_spaced(3).timestep_map.tolist() == [0, 33, 66]
    with pytest.raises(ValueError, match="steps must be in"):
        d.ddim_spaced(101)


def test_plugin_imports_no_trainer():
    code = ("import sys, ctbench_generators.vqgan_ddpm.plugin; print(sorted(m for m in sys.modules if m == 'lpips' or "
            "m.removeprefix('ctbench_generators.vqgan_ddpm.') in ('trainer', 'steps', 'perceptual', 'data')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert VQGANDDPM.checkpoint_path("run").as_posix() == "run/checkpoint.pt"


def test_ddpm_stage_without_a_vqgan_says_how_to_train_one(tiny_config, toy_volumes, tmp_path):
    message = (f"{tmp_path / 'checkpoint.pt'}: no checkpoint to take the VQGAN from; train it first (--stage vqgan, "
               "or --stage all for both stages)")
    with pytest.raises(FileNotFoundError, match=f"^{re.escape(message)}$"):
        train(tiny_config(), toy_volumes(2), tmp_path, stage="ddpm")
    assert list(tmp_path.iterdir()) == []
