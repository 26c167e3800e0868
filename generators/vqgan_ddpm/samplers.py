"""Samplers for :class:`~.diffusion.GaussianDiffusion`, separate from the network (diffusers style).

* :class:`AncestralSampler`: the DDPM reverse chain ``x_{t-1} ~ p(x_{t-1} | x_t)`` with the learned
  variance; all T steps by default, or a respaced chain of fewer steps (improved DDPM §4).
* :class:`DDIMSampler`: DDIM on the subset ⌊k·T/steps⌋ of steps (``eta = 0`` is deterministic).

Every random draw of sample i comes from its own CPU ``torch.Generator`` (one per sample, see
:mod:`ctbench.seeding`), so sample i never depends on the batch it was drawn in.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ctbench.core.progress import progress_bar

from .diffusion import Bounds, GaussianDiffusion, ModelFn


def per_sample_noise(
    shape: tuple[int, ...], generators: list[torch.Generator], device: torch.device | str
) -> torch.Tensor:
    """``(len(generators), *shape)`` standard normal float32, row k drawn from ``generators[k]`` on the CPU."""
    return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device)


class _ChainSampler:
    """The reverse loop shared by both samplers; a subclass says how to take one step."""

    name = ""
    diffusion: GaussianDiffusion

    @torch.no_grad()
    def sample(
        self,
        model: ModelFn,
        shape: tuple[int, ...],
        generators: list[torch.Generator],
        device: torch.device | str = "cpu",
        progress: bool = False,
        clip: Bounds | None = None,
    ) -> torch.Tensor:
        """Latents ``(N, *shape)`` float32, N = ``len(generators)``, from ``model`` (``(x_t, t) → (N, 2C, ...)``).

        ``clip``: bounds of the predicted x_0 at every step (:meth:`~.diffusion.GaussianDiffusion.p_mean_variance`).
        """
        d = self.diffusion
        x = per_sample_noise(shape, generators, device)
        for i in progress_bar(range(d.num_timesteps - 1, -1, -1), desc=self.name, enabled=progress, leave=False):
            t = torch.full((x.shape[0],), i, device=x.device, dtype=torch.long)
            x = self._step(d.p_mean_variance(model, x, t, clip), i, lambda: per_sample_noise(shape, generators, device))
        return x

    def _step(self, p: dict[str, torch.Tensor], i: int, noise: Callable[[], torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


class AncestralSampler(_ChainSampler):
    """Ancestral sampling with the learned variance; ``steps`` < T samples a respaced chain."""

    name = "ancestral"

    def __init__(self, diffusion: GaussianDiffusion, steps: int | None = None):
        full = steps is None or steps == diffusion.num_timesteps
        self.diffusion = diffusion if full else diffusion.evenly_spaced(steps)

    def _step(self, p: dict[str, torch.Tensor], i: int, noise: Callable[[], torch.Tensor]) -> torch.Tensor:
        """x_{t-1} = mean + σ_t · z (no noise at the last step)."""
        return p["mean"] + torch.exp(0.5 * p["log_variance"]) * noise() if i > 0 else p["mean"]


class DDIMSampler(_ChainSampler):
    """DDIM (Song et al. 2021) on timesteps ⌊k·T/steps⌋ (:meth:`~.diffusion.GaussianDiffusion.ddim_spaced`);
    ``eta`` scales the injected noise."""

    name = "ddim"

    def __init__(self, diffusion: GaussianDiffusion, steps: int = 50, eta: float = 0.0):
        self.diffusion = diffusion.ddim_spaced(steps)
        self.eta = eta

    def _step(self, p: dict[str, torch.Tensor], i: int, noise: Callable[[], torch.Tensor]) -> torch.Tensor:
        """x_{t-1} = √ᾱ_{t-1} x̂_0 + √(1 - ᾱ_{t-1} - σ²) ε̂ (+ σ z when η > 0)."""
        d = self.diffusion
        ac, ac_prev = d.alphas_cumprod[i], d.alphas_cumprod_prev[i]
        sigma = self.eta * math.sqrt((1 - ac_prev) / (1 - ac) * (1 - ac / ac_prev))
        x = math.sqrt(ac_prev) * p["x0"] + math.sqrt(max(1 - ac_prev - sigma**2, 0.0)) * p["eps"]
        return x + sigma * noise() if sigma > 0 and i > 0 else x


def make_sampler(
    name: str, diffusion: GaussianDiffusion, steps: int | None = None, eta: float = 0.0
) -> AncestralSampler | DDIMSampler:
    """``ancestral`` (``steps`` None = all T) or ``ddim`` (``steps`` None = 50)."""
    if name == "ancestral":
        return AncestralSampler(diffusion, steps)
    if name == "ddim":
        return DDIMSampler(diffusion, steps or 50, eta)
    raise ValueError(f"unknown sampler {name!r}; known: ancestral, ddim")
