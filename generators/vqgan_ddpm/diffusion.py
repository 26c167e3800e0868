"""The Gaussian diffusion process on latents: noise schedule, q(x_t | x_0), the posterior, and the
hybrid training loss of improved DDPM (L_simple + λ·L_vlb with a learned variance).

Paper eq. (5): ``q(x_t | x_0) = N(√ᾱ_t x_0, (1 - ᾱ_t) I)``; eq. (6): the posterior
``q(x_{t-1} | x_t, x_0) = N(μ̃_t, β̃_t I)`` with ``μ̃_t = √ᾱ_{t-1} β_t / (1 - ᾱ_t) · x_0 + √α_t (1 - ᾱ_{t-1}) /
(1 - ᾱ_t) · x_t`` and ``β̃_t = (1 - ᾱ_{t-1}) / (1 - ᾱ_t) · β_t``. The model outputs ε and v ∈ [-1, 1];
its log-variance is ``((v + 1)/2) log β_t + (1 - (v + 1)/2) log β̃_t``.

Tensors are latents ``(N, C, d, h, w)``; timesteps ``(N,)`` int64 in ``[0, T)``. All schedule arrays are
float64 on the CPU and cast on use. The network is an argument, never a member: samplers and the
schedule are separate from the model, as in diffusers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``model(x_t, t) -> (N, 2C, ...)``: ε prediction then the variance value v."""
Bounds = tuple[torch.Tensor, torch.Tensor]
"""``(lo, hi)`` bounds of x_0, each broadcastable to the latents ``(N, C, d, h, w)``."""


def make_betas(schedule: str, timesteps: int) -> np.ndarray:
    """β_1..β_T (float64): ``linear`` (DDPM, 1e-4 → 0.02 scaled to T) or ``cosine`` (improved DDPM)."""
    if schedule == "linear":
        scale = 1000 / timesteps
        if scale * 0.02 >= 1:
            raise ValueError(f"the linear schedule needs at least 21 timesteps, got {timesteps}")
        return np.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=np.float64)
    if schedule == "cosine":
        def f(t: float) -> float:
            return math.cos((t / timesteps + 0.008) / 1.008 * math.pi / 2) ** 2

        return np.array([min(1 - f(i + 1) / f(i), 0.999) for i in range(timesteps)], dtype=np.float64)
    raise ValueError(f"unknown noise schedule {schedule!r}; known: linear, cosine")


def _take(arr: np.ndarray, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``arr[t]`` broadcast to ``like``'s shape ``(N, 1, 1, ...)``, in its dtype and device."""
    out = torch.from_numpy(arr).to(device=t.device)[t].to(like.dtype)
    return out.view(-1, *([1] * (like.ndim - 1)))


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) per element, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """-log N(x; mean, e^logvar) per element, in nats (continuous latents: no discretisation)."""
    return 0.5 * (math.log(2 * math.pi) + logvar + (x - mean) ** 2 * torch.exp(-logvar))


class GaussianDiffusion:
    """A discrete-time Gaussian diffusion given its β's.

    ``timestep_map[k]`` is the timestep passed to the network at step k: the identity for the full
    process, the kept original steps for a respaced one (see :meth:`respaced`).
    """

    def __init__(self, betas: Sequence[float] | np.ndarray, timestep_map: Sequence[int] | None = None):
        self.betas = np.asarray(betas, dtype=np.float64)
        if self.betas.ndim != 1 or not ((self.betas > 0) & (self.betas <= 1)).all():
            raise ValueError("betas must be a 1-D array in (0, 1]")
        self.num_timesteps = len(self.betas)
        self.timestep_map = np.asarray(timestep_map if timestep_map is not None else range(self.num_timesteps))
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = np.cumprod(self.alphas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.posterior_variance = self.betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        # β̃_0 = 0: clip its log to β̃_1 (as improved DDPM does)
        variance_tail = self.posterior_variance[1:] if self.num_timesteps > 1 else self.betas
        self.posterior_log_variance_clipped = np.log(np.append(variance_tail[0], variance_tail))
        self.posterior_mean_coef1 = self.betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        one_minus_ac = 1.0 - self.alphas_cumprod
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(self.alphas) / one_minus_ac

    @classmethod
    def from_config(cls, schedule: str, timesteps: int) -> GaussianDiffusion:
        return cls(make_betas(schedule, timesteps))

    def respaced(self, use_timesteps: Sequence[int]) -> GaussianDiffusion:
        """The process restricted to the kept steps, with β's recomputed so ᾱ matches at every kept step."""
        keep = sorted(set(int(t) for t in use_timesteps))
        if not keep or keep[0] < 0 or keep[-1] >= self.num_timesteps:
            raise ValueError(f"timesteps to keep must lie in [0, {self.num_timesteps})")
        betas, last = [], 1.0
        for t in keep:
            betas.append(1.0 - self.alphas_cumprod[t] / last)
            last = self.alphas_cumprod[t]
        return GaussianDiffusion(betas, [int(self.timestep_map[t]) for t in keep])

    def ddim_spaced(self, steps: int) -> GaussianDiffusion:
        """:meth:`respaced` onto timesteps ⌊k·T/steps⌋, k = 0 … steps-1 (the DDIM paper's and improved DDPM's).

        The chain starts at T - T/steps, not at T - 1: there ᾱ ≈ 0 (cosine: ~1e-6), and x_0 predicted from ε
        carries ε's error × 1/√ᾱ (~10³), which a deterministic DDIM chain never recovers from.
        """
        if not 1 <= steps <= self.num_timesteps:
            raise ValueError(f"steps must be in [1, {self.num_timesteps}], got {steps}")
        return self.respaced(np.arange(steps) * self.num_timesteps // steps)

    def evenly_spaced(self, steps: int) -> GaussianDiffusion:
        """:meth:`respaced` onto ``steps`` evenly spaced timesteps (always keeping the last, t = T-1)."""
        if not 1 <= steps <= self.num_timesteps:
            raise ValueError(f"steps must be in [1, {self.num_timesteps}], got {steps}")
        return self.respaced(np.round(np.linspace(0, self.num_timesteps - 1, steps)).astype(int))

    # -- forward process -------------------------------------------------------------------------
    def q_mean_variance(self, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``√ᾱ_t x_0`` and variance ``1 - ᾱ_t`` of q(x_t | x_0) (eq. 5)."""
        return _take(np.sqrt(self.alphas_cumprod), t, x0) * x0, _take(1.0 - self.alphas_cumprod, t, x0)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Draw x_t ~ q(x_t | x_0) with the given standard-normal ``noise``."""
        mean, var = self.q_mean_variance(x0, t)
        return mean + var.sqrt() * noise

    def q_posterior(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0) (eq. 6)."""
        mean = _take(self.posterior_mean_coef1, t, xt) * x0 + _take(self.posterior_mean_coef2, t, xt) * xt
        return mean, _take(self.posterior_variance, t, xt), _take(self.posterior_log_variance_clipped, t, xt)

    # -- reverse process -------------------------------------------------------------------------
    def predict_x0(self, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_0 = (x_t - √(1-ᾱ_t) ε) / √ᾱ_t."""
        return _take(np.sqrt(1.0 / self.alphas_cumprod), t, xt) * xt - _take(
            np.sqrt(1.0 / self.alphas_cumprod - 1.0), t, xt
        ) * eps

    def predict_eps(self, xt: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """ε = (x_t / √ᾱ_t - x_0) / √(1/ᾱ_t - 1): the noise that takes ``x0`` to ``xt`` (inverts :meth:`predict_x0`)."""
        return (_take(np.sqrt(1.0 / self.alphas_cumprod), t, xt) * xt - x0) / _take(
            np.sqrt(1.0 / self.alphas_cumprod - 1.0), t, xt
        )

    def split_output(self, out: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Model output ``(N, 2C, ...)`` → (ε, log-variance), the log-variance interpolated as in improved DDPM."""
        eps, v = out.float().chunk(2, dim=1)
        frac = (v + 1) / 2
        min_log = _take(self.posterior_log_variance_clipped, t, xt)
        log_var = frac * _take(np.log(self.betas), t, xt) + (1 - frac) * min_log
        return eps, log_var

    def p_mean_variance(
        self, model: ModelFn, xt: torch.Tensor, t: torch.Tensor, clip: Bounds | None = None
    ) -> dict[str, torch.Tensor]:
        """p(x_{t-1} | x_t): ``mean``, ``log_variance``, plus the predicted ``eps`` and ``x0``.

        ``clip``: ``(lo, hi)`` broadcastable to ``xt``; the predicted x_0 is clamped to them and ε re-derived from
        the clamped x_0, so every sampler steps from the same, clipped prediction (medicaldiffusion's
        ``clip_denoised``). None: no clipping.
        """
        out = model(xt, torch.from_numpy(self.timestep_map).to(xt.device)[t])
        eps, log_var = self.split_output(out, xt, t)
        x0 = self.predict_x0(xt, t, eps)
        if clip is not None:
            x0 = torch.maximum(torch.minimum(x0, clip[1]), clip[0])
            eps = self.predict_eps(xt, t, x0)
        mean, _, _ = self.q_posterior(x0, xt, t)
        return {"mean": mean, "log_variance": log_var, "eps": eps, "x0": x0}

    # -- training ----------------------------------------------------------------------------------
    def training_losses(
        self, model: ModelFn, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, vlb_weight: float = 0.001
    ) -> dict[str, torch.Tensor]:
        """Hybrid loss per sample ``(N,)``: ``mse`` (L_simple) + λ · L_vlb, λ = ``vlb_weight``.

        ``vlb`` is the one-term estimate L_t (bits/dim) at the drawn t; L_vlb = Σ_t L_t is estimated by
        T · L_t, so the loss is ``mse + λ · T · vlb`` (with λ = 0.001 and T = 1000 this is improved DDPM's
        ``mse + vb``).

        As in improved DDPM, L_vlb trains only the variance: the mean enters it through a stopped
        gradient, so L_simple alone shapes ε. At t = 0 L_vlb is the Gaussian NLL of x_0 (continuous
        latents), otherwise KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)).
        """
        xt = self.q_sample(x0, t, noise)
        out = model(xt, torch.from_numpy(self.timestep_map).to(xt.device)[t])
        eps, log_var = self.split_output(out, xt, t)
        dims = tuple(range(1, x0.ndim))
        mse = ((eps - noise.float()) ** 2).mean(dims)
        x0_frozen = self.predict_x0(xt.float(), t, eps.detach())
        mean, _, _ = self.q_posterior(x0_frozen, xt.float(), t)
        true_mean, _, true_log_var = self.q_posterior(x0.float(), xt.float(), t)
        kl = normal_kl(true_mean, true_log_var, mean, log_var).mean(dims) / math.log(2.0)
        nll = gaussian_nll(x0.float(), mean, log_var).mean(dims) / math.log(2.0)
        vlb = torch.where(t == 0, nll, kl)
        return {"loss": mse + vlb_weight * self.num_timesteps * vlb, "mse": mse, "vlb": vlb}
