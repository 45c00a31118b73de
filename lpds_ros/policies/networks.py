"""The denoiser network shared by both backbones: a residual MLP over the flattened action chunk.

It predicts the noise (diffusion) or the velocity (flow matching) of a chunk, conditioned on the
normalised observation and the time of the process.  All shapes are static and there are no
data-dependent branches, so it exports to ONNX as is.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class SinusoidalTimeEmbedding(nn.Module):
    """t [B] in [0, 1] -> [B, dim]: sin/cos features of 1000 t at geometric frequencies."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        half = dim // 2
        freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        angles = (1000.0 * t)[:, None] * self.freqs[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class ResidualBlock(nn.Module):
    """h [B, hidden], c [B, cond] -> h + Mish(Linear([LayerNorm(h), c]))."""

    def __init__(self, hidden_dim: int, cond_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden_dim)
        self.linear = nn.Linear(hidden_dim + cond_dim, hidden_dim)
        self.act = nn.Mish()

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        return h + self.act(self.linear(torch.cat([self.norm(h), c], dim=-1)))


class MLPDenoiser(nn.Module):
    """(x [B, H*d], obs_n [B, obs_dim], t [B] in [0, 1]) -> [B, H*d].

    The observation and the time embedding make one conditioning vector c [B, cond_dim], which is
    concatenated to the input of every residual block (cheaper than FiLM at equal quality here).
    """

    def __init__(self, sample_dim: int, obs_dim: int, hidden_dim: int, num_layers: int,
                 cond_dim: int, time_embed_dim: int) -> None:
        super().__init__()
        self.time_embed = SinusoidalTimeEmbedding(time_embed_dim)
        self.cond = nn.Sequential(
            nn.Linear(obs_dim + time_embed_dim, cond_dim), nn.Mish(), nn.Linear(cond_dim, cond_dim)
        )
        self.inp = nn.Linear(sample_dim + cond_dim, hidden_dim)
        self.blocks = nn.ModuleList(ResidualBlock(hidden_dim, cond_dim) for _ in range(num_layers))
        self.out_norm = nn.LayerNorm(hidden_dim)
        self.out = nn.Linear(hidden_dim, sample_dim)

    def forward(self, x: Tensor, obs_n: Tensor, t: Tensor) -> Tensor:
        c = self.cond(torch.cat([obs_n, self.time_embed(t)], dim=-1))
        h = self.inp(torch.cat([x, c], dim=-1))
        for block in self.blocks:
            h = block(h, c)
        return self.out(self.out_norm(h))
