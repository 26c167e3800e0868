"""Stage 2 network: a 3D UNet that predicts noise and a variance interpolation on VQGAN latents.

Input latents ``(N, C, d, h, w)`` (paper: ``(N, 8, 16, 32, 32)``) and integer timesteps ``(N,)``;
output ``(N, 2C, d, h, w)``: the first C channels are the predicted noise ε, the last C the
variance-interpolation value v in [-1, 1] of improved DDPM (see :mod:`.diffusion`). The network knows
nothing about the noise schedule: schedules and samplers live in :mod:`.diffusion` and :mod:`.samplers`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of timesteps ``(N,)`` → ``(N, dim)`` (float32)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` that also accepts a group holding a single value (it normalises to 0, giving the bias).

    ``F.group_norm`` refuses that case, which a batch of one 1×1×1 latent hits at the UNet's lowest
    level (``@c16`` on the tiny config: latents 1×2×2). The computation is the same op.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


def _norm(channels: int) -> GroupNorm:
    return GroupNorm(math.gcd(32, channels), channels)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, add the timestep embedding (scale/shift), GroupNorm-SiLU-conv; residual."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(in_ch), nn.Conv3d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2, self.conv2 = _norm(out_ch), nn.Conv3d(out_ch, out_ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv3d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over all d·h·w positions, via ``F.scaled_dot_product_attention``."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads = heads
        self.norm = _norm(channels)
        self.qkv = nn.Conv3d(channels, 3 * channels, 1)
        self.out = nn.Conv3d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, d, h, w = x.shape
        q, k, v = (
            rearrange(t, "n (m c) d h w -> n m (d h w) c", m=self.heads) for t in self.qkv(self.norm(x)).chunk(3, 1)
        )
        a = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(rearrange(a, "n m (d h w) c -> n (m c) d h w", d=d, h=h, w=w))


class Upsample(nn.Module):
    """Nearest-neighbour upsampling to the size of the matching skip connection, then a 3×3×3 conv.

    Upsampling to the skip's size (not a fixed ×2) keeps odd and size-1 axes working: a stride-2 conv
    maps 1 → 1 and 3 → 2, which ×2 would not undo (e.g. ``@c16`` on the tiny config: latents 1×2×2).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, size: torch.Size) -> torch.Tensor:
        return self.conv(F.interpolate(x, size=tuple(size), mode="nearest"))


class UNet3D(nn.Module):
    """3D UNet: ``num_res_blocks`` ResBlocks per level, attention at ``attn_levels``, stride-2 down/upsampling.

    Level ``i`` works at ``base_channels · channel_mult[i]`` channels and spatial size ``/2**i``.
    """

    def __init__(
        self,
        *,
        in_channels: int = 8,
        base_channels: int = 256,
        channel_mult: tuple[int, ...] | list[int] = (1, 2, 2),
        num_res_blocks: int = 2,
        attn_levels: tuple[int, ...] | list[int] = (1, 2),
        attn_heads: int = 4,
        learn_sigma: bool = True,
    ):
        super().__init__()
        self.in_channels, self.base_channels = in_channels, base_channels
        emb_dim = 4 * base_channels
        self.time_mlp = nn.Sequential(nn.Linear(base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.stem = nn.Conv3d(in_channels, base_channels, 3, padding=1)

        self.down = nn.ModuleList()
        skips, ch = [base_channels], base_channels
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                out = base_channels * mult
                self.down.append(self._block(ch, out, emb_dim, level in attn_levels, attn_heads))
                ch = out
                skips.append(ch)
            if level < len(channel_mult) - 1:
                self.down.append(nn.Conv3d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.mid = nn.ModuleList(
            [ResBlock(ch, ch, emb_dim), SelfAttention(ch, attn_heads), ResBlock(ch, ch, emb_dim)]
        )
        self.up = nn.ModuleList()
        for level in reversed(range(len(channel_mult))):
            out = base_channels * channel_mult[level]
            for i in range(num_res_blocks + 1):
                self.up.append(self._block(ch + skips.pop(), out, emb_dim, level in attn_levels, attn_heads))
                ch = out
                if level > 0 and i == num_res_blocks:
                    self.up.append(Upsample(ch))
        self.head = nn.Sequential(_norm(ch), nn.SiLU(), nn.Conv3d(ch, in_channels * (2 if learn_sigma else 1), 3,
                                                                  padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    @staticmethod
    def _block(in_ch: int, out_ch: int, emb_dim: int, attn: bool, heads: int) -> nn.ModuleList:
        return nn.ModuleList([ResBlock(in_ch, out_ch, emb_dim)] + ([SelfAttention(out_ch, heads)] if attn else []))

    @staticmethod
    def _run(layers: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in layers:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        return h

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Latents ``(N, C, d, h, w)``, timesteps ``(N,)`` → ``(N, 2C, d, h, w)`` (ε, then v)."""
        emb = self.time_mlp(timestep_embedding(t, self.base_channels).to(x.dtype))
        h = self.stem(x)
        hs = [h]
        for module in self.down:
            h = self._run(module, h, emb) if isinstance(module, nn.ModuleList) else module(h)
            hs.append(h)
        h = self._run(self.mid, h, emb)
        for module in self.up:
            if isinstance(module, Upsample):
                h = module(h, hs[-1].shape[2:])
            else:
                h = self._run(module, torch.cat([h, hs.pop()], dim=1), emb)
        return self.head(h)
