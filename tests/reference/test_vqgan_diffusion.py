"""The diffusion process against its closed forms (paper eq. (5)–(6)), and the samplers on a known target."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ctbench_generators.vqgan_ddpm.diffusion import GaussianDiffusion, make_betas
from ctbench_generators.vqgan_ddpm.samplers import AncestralSampler, DDIMSampler, make_sampler

T = 50


@pytest.fixture(params=["linear", "cosine"])
def diffusion(request) -> GaussianDiffusion:
    return GaussianDiffusion.from_config(request.param, T)


def _alpha_bar(betas: np.ndarray, t: int) -> float:
    out = 1.0
    for b in betas[: t + 1]:
        out *= 1.0 - b
    return out


def test_q_xt_given_x0_closed_form(diffusion):
    x0 = torch.randn(4, 2, 3, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(x0.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0, 7, 31, T - 1])
    mean, var = diffusion.q_mean_variance(x0, t)
    xt = diffusion.q_sample(x0, t, noise)
    for k, tk in enumerate(t.tolist()):
        ab = _alpha_bar(diffusion.betas, tk)
        assert torch.allclose(mean[k], math.sqrt(ab) * x0[k])
        assert torch.allclose(var[k].flatten()[0], torch.tensor(1 - ab, dtype=torch.float64))
        assert torch.allclose(xt[k], math.sqrt(ab) * x0[k] + math.sqrt(1 - ab) * noise[k])


def test_posterior_closed_form_and_bayes_rule(diffusion):
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(3, 1, 2, 2, 2, dtype=torch.float64, generator=g)
    xt = torch.randn(3, 1, 2, 2, 2, dtype=torch.float64, generator=g)
    t = torch.tensor([1, 20, T - 1])
    mean, var, log_var = diffusion.q_posterior(x0, xt, t)
    for k, tk in enumerate(t.tolist()):
        beta = diffusion.betas[tk]
        ab, ab_prev = _alpha_bar(diffusion.betas, tk), _alpha_bar(diffusion.betas, tk - 1)
        # eq. (6)
        mu = math.sqrt(ab_prev) * beta / (1 - ab) * x0[k] + math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab) * xt[k]
        beta_tilde = (1 - ab_prev) / (1 - ab) * beta
        assert torch.allclose(mean[k], mu)
        assert var[k].flatten()[0].item() == pytest.approx(beta_tilde, rel=1e-12)
        assert log_var[k].flatten()[0].item() == pytest.approx(math.log(beta_tilde), rel=1e-12)
        # the same by Bayes: q(x_{t-1}|x_0) · q(x_t|x_{t-1}), a product of Gaussians in x_{t-1}
        precision = 1 / (1 - ab_prev) + (1 - beta) / beta
        bayes_mean = (math.sqrt(ab_prev) * x0[k] / (1 - ab_prev) + math.sqrt(1 - beta) * xt[k] / beta) / precision
        assert torch.allclose(mean[k], bayes_mean)
        assert 1 / precision == pytest.approx(beta_tilde, rel=1e-10)


def test_posterior_at_t0_returns_x0_and_clips_log_variance(diffusion):
    x0, xt = torch.ones(1, 1, 1, 1, 1), torch.zeros(1, 1, 1, 1, 1)
    mean, var, log_var = diffusion.q_posterior(x0, xt, torch.tensor([0]))
    assert mean.item() == pytest.approx(1.0)
    assert var.item() == 0.0
    assert log_var.item() == pytest.approx(math.log(diffusion.posterior_variance[1]))


def test_learned_variance_interpolates_between_beta_and_beta_tilde(diffusion):
    xt = torch.zeros(2, 1, 1, 1, 1)
    t = torch.tensor([5, 5])
    out = torch.cat([torch.zeros(2, 1, 1, 1, 1), torch.tensor([1.0, -1.0]).view(2, 1, 1, 1, 1)], dim=1)
    _, log_var = diffusion.split_output(out, xt, t)
    assert log_var[0].item() == pytest.approx(math.log(diffusion.betas[5]), rel=1e-6)
    assert log_var[1].item() == pytest.approx(math.log(diffusion.posterior_variance[5]), rel=1e-6)


def test_respacing_keeps_alpha_bar_at_kept_steps(diffusion):
    keep = [0, 9, 10, 30, T - 1]
    r = diffusion.respaced(keep)
    assert r.timestep_map.tolist() == keep
    assert np.allclose(r.alphas_cumprod, diffusion.alphas_cumprod[keep], rtol=1e-12)
    same = diffusion.respaced(range(T))
    assert np.allclose(same.betas, diffusion.betas, rtol=1e-12)
    assert diffusion.evenly_spaced(10).timestep_map[[0, -1]].tolist() == [0, T - 1]


def test_hybrid_loss_vanishes_for_the_true_noise_and_posterior_variance():
    d = GaussianDiffusion.from_config("cosine", T)
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(4, 2, 2, 2, 2, generator=g)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([1, 5, 20, T - 1])

    def oracle(xt, t_model):  # knows the noise; v = -1 selects the posterior variance β̃_t
        return torch.cat([noise, -torch.ones_like(noise)], dim=1)

    terms = d.training_losses(oracle, x0, t, noise)
    assert torch.allclose(terms["mse"], torch.zeros(4), atol=1e-10)
    assert torch.allclose(terms["vlb"], torch.zeros(4), atol=1e-5)

    def wrong(xt, t_model):
        return torch.cat([torch.zeros_like(noise), torch.zeros_like(noise)], dim=1)

    bad = d.training_losses(wrong, x0, t, noise, vlb_weight=0.001)
    assert (bad["mse"] > 0.1).all() and (bad["vlb"] > 0).all()
    assert torch.allclose(bad["loss"], bad["mse"] + 0.001 * T * bad["vlb"])


def _gaussian_oracle(d: GaussianDiffusion, s: float):
    """The exact ε-predictor when the data are N(0, s²): E[ε | x_t] = √(1-ᾱ) x_t / (ᾱ s² + 1 - ᾱ)."""
    full = GaussianDiffusion(make_betas("cosine", 200))

    def model(xt, t_model):
        ab = torch.from_numpy(full.alphas_cumprod).to(xt.dtype)[t_model].view(-1, 1, 1, 1, 1)
        eps = (1 - ab).sqrt() * xt / (ab * s**2 + 1 - ab)
        return torch.cat([eps, -torch.ones_like(eps)], dim=1)

    return model


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_samplers_reproduce_a_known_gaussian(sampler):
    d = GaussianDiffusion(make_betas("cosine", 200))
    s = 0.5
    steps = 200 if sampler == "ancestral" else 40
    smp = make_sampler(sampler, d, steps)
    gens = [torch.Generator().manual_seed(i) for i in range(64)]
    x = smp.sample(_gaussian_oracle(d, s), (4, 4, 4, 4), gens)
    assert x.shape == (64, 4, 4, 4, 4)
    assert x.std().item() == pytest.approx(s, rel=0.05)
    assert abs(x.mean().item()) < 0.03


@pytest.mark.parametrize("cls", [AncestralSampler, DDIMSampler])
def test_sample_i_does_not_depend_on_its_batch(cls):
    d = GaussianDiffusion(make_betas("cosine", 200))
    smp = cls(d, 20)
    model = _gaussian_oracle(d, 0.5)
    together = smp.sample(model, (2, 2, 2, 2), [torch.Generator().manual_seed(i) for i in range(3)])
    alone = torch.cat([smp.sample(model, (2, 2, 2, 2), [torch.Generator().manual_seed(i)]) for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-6)


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="unknown noise schedule"):
        make_betas("quadratic", 10)
    with pytest.raises(ValueError, match="at least 21 timesteps"):
        make_betas("linear", 10)
    with pytest.raises(ValueError, match="unknown sampler"):
        make_sampler("euler", GaussianDiffusion(make_betas("linear", 100)))


def test_predict_eps_inverts_predict_x0(diffusion):
    g = torch.Generator().manual_seed(1)
    xt, eps = torch.randn(5, 2, 3, 3, 3, generator=g, dtype=torch.float64), torch.randn(5, 2, 3, 3, 3, generator=g,
                                                                                       dtype=torch.float64)
    t = torch.tensor([0, 7, 20, 33, T - 1])
    assert torch.allclose(diffusion.predict_eps(xt, t, diffusion.predict_x0(xt, t, eps)), eps, rtol=1e-6, atol=1e-6)


def test_clipped_x0_and_its_eps_agree(diffusion):
    model = _gaussian_oracle(diffusion, 2.0)
    xt = torch.randn(6, 2, 3, 3, 3, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([1, 5, 10, 25, 40, T - 1])
    free = diffusion.p_mean_variance(model, xt, t)
    wide = diffusion.p_mean_variance(model, xt, t, (torch.tensor(-1e9), torch.tensor(1e9)))
    assert all(torch.equal(free[k], wide[k]) for k in ("x0", "mean", "log_variance"))
    lo, hi = torch.tensor([-0.3, -0.1]).view(2, 1, 1, 1), torch.tensor([0.2, 0.4]).view(2, 1, 1, 1)
    out = diffusion.p_mean_variance(model, xt, t, (lo, hi))
    assert (out["x0"] >= lo).all() and (out["x0"] <= hi).all()
    assert torch.equal(out["x0"], torch.maximum(torch.minimum(free["x0"], hi), lo))
    assert torch.allclose(diffusion.predict_x0(xt, t, out["eps"]), out["x0"], atol=1e-4)  # ε re-derived from it
    assert torch.allclose(out["mean"], diffusion.q_posterior(out["x0"], xt, t)[0])


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_clipped_samples_stay_in_the_box(sampler):
    d = GaussianDiffusion(make_betas("cosine", 100))
    smp = make_sampler(sampler, d, 100 if sampler == "ancestral" else 10)
    gens = [torch.Generator().manual_seed(i) for i in range(8)]
    model = _gaussian_oracle(d, 0.5)
    free = smp.sample(model, (2, 4, 4, 4), gens)
    assert free.abs().max() > 0.5  # the target N(0, 0.5²) leaves the box below
    gens = [torch.Generator().manual_seed(i) for i in range(8)]
    clipped = smp.sample(model, (2, 4, 4, 4), gens, clip=(torch.tensor(-0.2), torch.tensor(0.2)))
    assert clipped.abs().max() <= 0.2 + 1e-6  # the last step returns the clipped x_0 itself
