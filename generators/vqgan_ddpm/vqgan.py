"""Stage 1: the 3D VQGAN autoencoder (encoder → EMA vector quantiser → decoder).

Reads top to bottom like the paper's figure. Volumes are ``(N, 1, D, H, W)`` float32 in [-1, 1];
"compression c" means c× per axis (the paper's text, not its tables): c = 4 turns 64×128×128 into a
latent ``(N, 8, 16, 32, 32)``. Downsampling is by strided convolutions only (no pooling), upsampling
by transposed convolutions; the bottleneck is a stack of attention residual blocks (3D convolution +
2-head axial attention over D, H and W), with batch norm and ReLU throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def downsample_steps(compression: int) -> int:
    """Number of stride-2 stages for a per-axis compression factor (a power of two >= 2)."""
    steps = int(round(math.log2(compression))) if compression > 0 else -1
    if steps < 1 or 2**steps != compression:
        raise ValueError(f"compression must be a power of two >= 2, got {compression}")
    return steps


class AxialAttention(nn.Module):
    """Multi-head self-attention along each of D, H and W separately, summed.

    Input and output ``(N, C, D, H, W)``; uses ``F.scaled_dot_product_attention`` (flash / memory-
    efficient kernels on CUDA).
    """

    def __init__(self, channels: int, heads: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads = heads
        self.qkv = nn.Conv3d(channels, 3 * channels, 1)
        self.out = nn.Conv3d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=1)
        h = self.heads
        patterns = {
            "d": ("n (h c) d y x -> (n y x) h d c", "(n y x) h d c -> n (h c) d y x"),
            "h": ("n (h c) d y x -> (n d x) h y c", "(n d x) h y c -> n (h c) d y x"),
            "w": ("n (h c) d y x -> (n d y) h x c", "(n d y) h x c -> n (h c) d y x"),
        }
        sizes = dict(n=x.shape[0], d=x.shape[2], y=x.shape[3], x=x.shape[4])
        out = 0
        for split, merge in patterns.values():
            qa, ka, va = (rearrange(t, split, h=h) for t in (q, k, v))
            a = F.scaled_dot_product_attention(qa, ka, va)
            out = out + rearrange(a, merge, h=h, **sizes)
        return self.out(out)


class AttentionResidualBlock(nn.Module):
    """``x + f(x)`` with f = BN-ReLU-conv3 (C→C/2) - BN-ReLU-conv1 (C/2→C) - BN-ReLU - axial attention."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm3d(channels),
            nn.ReLU(),
            nn.Conv3d(channels, channels // 2, 3, padding=1, bias=False),
            nn.BatchNorm3d(channels // 2),
            nn.ReLU(),
            nn.Conv3d(channels // 2, channels, 1, bias=False),
            nn.BatchNorm3d(channels),
            nn.ReLU(),
            AxialAttention(channels, heads),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Encoder(nn.Module):
    """``(N, 1, D, H, W)`` → pre-quantisation latents ``(N, embed_dim, D/c, H/c, W/c)``."""

    def __init__(self, base_channels: int, compression: int, embed_dim: int, n_res_blocks: int, attn_heads: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv3d(1, base_channels, 3, padding=1)]
        ch = base_channels
        for _ in range(downsample_steps(compression)):
            layers += [nn.Conv3d(ch, 2 * ch, 4, stride=2, padding=1, bias=False), nn.BatchNorm3d(2 * ch), nn.ReLU()]
            ch *= 2
        layers += [AttentionResidualBlock(ch, attn_heads) for _ in range(n_res_blocks)]
        layers += [nn.BatchNorm3d(ch), nn.ReLU(), nn.Conv3d(ch, embed_dim, 1)]
        self.net = nn.Sequential(*layers)
        self.out_channels = ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """Quantised latents ``(N, embed_dim, d, h, w)`` → volume ``(N, 1, d·c, h·c, w·c)`` (unbounded; ≈[-1, 1])."""

    def __init__(self, base_channels: int, compression: int, embed_dim: int, n_res_blocks: int, attn_heads: int):
        super().__init__()
        steps = downsample_steps(compression)
        ch = base_channels * 2**steps
        layers: list[nn.Module] = [nn.Conv3d(embed_dim, ch, 1)]
        layers += [AttentionResidualBlock(ch, attn_heads) for _ in range(n_res_blocks)]
        layers += [nn.BatchNorm3d(ch), nn.ReLU()]
        for i in range(steps):
            out = ch // 2
            layers.append(nn.ConvTranspose3d(ch, out, 4, stride=2, padding=1, bias=False))
            if i < steps - 1:
                layers += [nn.BatchNorm3d(out), nn.ReLU()]
            ch = out
        layers.append(nn.Conv3d(ch, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


@dataclass
class QuantizerOutput:
    """What :class:`EMAQuantizer` returns for latents ``z`` of shape ``(N, C, d, h, w)``."""

    z_q: torch.Tensor
    """Quantised latents with the straight-through gradient: ``z + (e - z).detach()``, same shape as z."""
    indices: torch.Tensor
    """Code indices ``(N, d, h, w)`` int64."""
    commitment_loss: torch.Tensor
    """``β · mean ||z - sg(e)||²`` (a scalar; zero when β = 0)."""
    perplexity: torch.Tensor
    """exp(entropy) of the code usage in this batch: how many codes are effectively used."""


class EMAQuantizer(nn.Module):
    """Nearest-neighbour vector quantiser with an exponential-moving-average codebook.

    The codebook (``K × C``) is a buffer, not a parameter: it learns only through the EMA update
    (``ema_update=True``), which plays the role of the codebook loss L_cb. It is initialised on the
    first training batch from random encoder outputs, and codes whose EMA usage falls below
    ``restart_threshold`` are restarted at random encoder outputs of the current batch
    (``dead_code_restart=True``). With several processes the EMA statistics are summed over ranks and
    initialisation / restarts are broadcast from rank 0, so every rank keeps the same codebook.

    "Without L_cb" (variants ``rec``, ``rec+disc``) means ``ema_update=False`` and
    ``dead_code_restart=False``: the codebook stays frozen at its data initialisation. "Without L_cm"
    means ``commitment_weight=0``.
    """

    def __init__(
        self,
        codebook_size: int,
        dim: int,
        *,
        commitment_weight: float = 0.25,
        decay: float = 0.99,
        eps: float = 1e-5,
        ema_update: bool = True,
        dead_code_restart: bool = True,
        restart_threshold: float = 1.0,
    ):
        super().__init__()
        self.codebook_size, self.dim = codebook_size, dim
        self.commitment_weight, self.decay, self.eps = commitment_weight, decay, eps
        self.ema_update, self.dead_code_restart = ema_update, dead_code_restart
        self.restart_threshold = restart_threshold
        self.register_buffer("embedding", torch.randn(codebook_size, dim))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed_sum", self.embedding.clone())
        self.register_buffer("initialized", torch.tensor(False))

    def _random_rows(self, flat: torch.Tensor, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """``n`` rows drawn from ``flat`` (repeated with small noise when it has fewer), same on every rank."""
        reps = math.ceil(n / flat.shape[0])
        pool = flat.repeat(reps, 1)
        if reps > 1:
            noise = torch.randn(pool.shape, generator=generator).to(pool) * 0.01 / math.sqrt(self.dim)
            pool = pool + noise
        idx = torch.randperm(pool.shape[0], generator=generator)[:n].to(pool.device)
        rows = pool[idx].contiguous()
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(rows, src=0)
        return rows

    @torch.no_grad()
    def _initialise(self, flat: torch.Tensor, generator: torch.Generator | None) -> None:
        rows = self._random_rows(flat, self.codebook_size, generator)
        self.embedding.copy_(rows)
        self.embed_sum.copy_(rows)
        self.cluster_size.fill_(1.0)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema(self, flat: torch.Tensor, indices: torch.Tensor, generator: torch.Generator | None) -> None:
        counts = torch.bincount(indices, minlength=self.codebook_size).to(flat.dtype)
        sums = torch.zeros_like(self.embed_sum).index_add_(0, indices, flat)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.codebook_size * self.eps) * n
        self.embedding.copy_(self.embed_sum / smoothed[:, None])
        if self.dead_code_restart:
            dead = self.cluster_size < self.restart_threshold
            n_dead = int(dead.sum())
            if n_dead:
                rows = self._random_rows(flat, n_dead, generator)
                self.embedding[dead] = rows
                self.embed_sum[dead] = rows * self.restart_threshold
                self.cluster_size[dead] = self.restart_threshold

    def forward(self, z: torch.Tensor, generator: torch.Generator | None = None) -> QuantizerOutput:
        """Quantise ``z`` ``(N, C, d, h, w)``; in training mode also update the codebook (see class doc).

        ``generator`` (CPU) drives initialisation and restarts, so training is reproducible.
        """
        n, c, d, h, w = z.shape
        flat = rearrange(z, "n c d h w -> (n d h w) c").float()
        if self.training and not bool(self.initialized):
            self._initialise(flat.detach(), generator)
        indices = self.nearest(flat)
        e = self.embedding[indices]
        if self.training and self.ema_update:
            self._ema(flat.detach(), indices, generator)
        commitment = self.commitment_weight * F.mse_loss(flat, e.detach()) if self.commitment_weight else flat.sum() * 0
        z_q = flat + (e - flat).detach()
        usage = torch.bincount(indices, minlength=self.codebook_size).float() / indices.numel()
        perplexity = torch.exp(-(usage * torch.log(usage + 1e-10)).sum())
        return QuantizerOutput(
            z_q=rearrange(z_q, "(n d h w) c -> n c d h w", n=n, d=d, h=h, w=w).to(z.dtype),
            indices=indices.view(n, d, h, w),
            commitment_loss=commitment,
            perplexity=perplexity,
        )

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code (Euclidean) for each row of ``flat`` ``(M, C)`` → ``(M,)`` int64.

        Works in chunks of rows so the ``M × K`` distance matrix never exceeds ~256 MB. Always in fp32,
        also under bf16 autocast: bf16's 8-bit mantissa would pick wrong neighbours among 16,384 codes.
        """
        emb = self.embedding.float()
        emb_sq = emb.pow(2).sum(1)[None]
        chunk = max(1, (1 << 26) // self.codebook_size)
        with torch.autocast(flat.device.type, enabled=False):
            return torch.cat(
                [(-2 * f.float() @ emb.t() + emb_sq).argmin(1) for f in flat.split(chunk)]
            )  # ||f||² is the same for every code and cannot change the argmin

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors for indices ``(N, d, h, w)`` → ``(N, C, d, h, w)``."""
        return rearrange(self.embedding[indices], "n d h w c -> n c d h w")


@dataclass
class VQGANOutput:
    """One autoencoder pass: reconstruction ``(N, 1, D, H, W)`` plus the quantiser's losses and stats."""

    reconstruction: torch.Tensor
    quantized: QuantizerOutput


class VQGAN(nn.Module):
    """Encoder + EMA quantiser + decoder. ``forward(x)`` reconstructs ``(N, 1, D, H, W)`` volumes."""

    def __init__(
        self,
        *,
        base_channels: int = 16,
        compression: int = 4,
        embed_dim: int = 8,
        codebook_size: int = 16384,
        n_res_blocks: int = 2,
        attn_heads: int = 2,
        quantizer: dict | None = None,
    ):
        super().__init__()
        self.compression, self.embed_dim = compression, embed_dim
        self.encoder = Encoder(base_channels, compression, embed_dim, n_res_blocks, attn_heads)
        self.quantizer = EMAQuantizer(codebook_size, embed_dim, **(quantizer or {}))
        self.decoder = Decoder(base_channels, compression, embed_dim, n_res_blocks, attn_heads)

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> QuantizerOutput:
        """Volumes ``(N, 1, D, H, W)`` → quantised latents (see :class:`QuantizerOutput`)."""
        return self.quantizer(self.encoder(x), generator)

    def decode(self, z: torch.Tensor, *, quantize: bool = True) -> torch.Tensor:
        """Latents ``(N, C, d, h, w)`` → volumes ``(N, 1, D, H, W)``; snaps ``z`` to the codebook first if asked."""
        if quantize:
            idx = self.quantizer.nearest(rearrange(z, "n c d h w -> (n d h w) c").float())
            n, _, d, h, w = z.shape
            z = self.quantizer.lookup(idx.view(n, d, h, w)).to(z.dtype)
        return self.decoder(z)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> VQGANOutput:
        q = self.encode(x, generator)
        return VQGANOutput(self.decoder(q.z_q), q)
