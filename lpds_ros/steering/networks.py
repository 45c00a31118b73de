"""The networks steering uses, all built by one MLP builder.

``mlp`` is the only place a network's layers are chosen: Linear → LayerNorm → activation blocks and a
plain Linear output (DSRL's settings: LayerNorm + Tanh).  ``TwinQ`` holds the twin critics (and, as a
separate instance, their target copies); ``TanhGaussian`` is the SAC-style bounded actor used by DSRL,
DSRL-SAC and the residual baseline.  Shapes are flat: callers flatten chunks (B, H, d) → (B, H·d).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
"""Clamp of the SAC actors' log standard deviation."""


def mlp(in_dim: int, out_dim: int, hidden_dims: tuple[int, ...], activation: str = "tanh",
        layer_norm: bool = True, zero_last: bool = False) -> nn.Sequential:
    """[B, in_dim] -> [B, out_dim]: (Linear, LayerNorm, activation) per hidden width, then a Linear.

    ``zero_last`` sets the output layer's weight and bias to zero, so the network outputs exactly 0
    at initialisation (LP-DS's Δ_θ: step 0 is the base policy).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation {activation!r}: choose one of {sorted(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    width = in_dim
    for hidden in hidden_dims:
        layers.append(nn.Linear(width, hidden))
        if layer_norm:
            layers.append(nn.LayerNorm(hidden))
        layers.append(ACTIVATIONS[activation]())
        width = hidden
    last = nn.Linear(width, out_dim)
    if zero_last:
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    layers.append(last)
    return nn.Sequential(*layers)


class TwinQ(nn.Module):
    """Q_j(x, a) for j = 1..n: ``forward`` -> [n, B]; ``min`` -> [B] (the clipped double-Q value)."""

    def __init__(self, in_dim: int, action_dim: int, hidden_dims: tuple[int, ...], activation: str,
                 n: int = 2) -> None:
        super().__init__()
        self.qs = nn.ModuleList(mlp(in_dim + action_dim, 1, hidden_dims, activation) for _ in range(n))

    def forward(self, x: Tensor, a: Tensor) -> Tensor:
        xa = torch.cat([x, a], dim=-1)
        return torch.stack([q(xa).squeeze(-1) for q in self.qs])

    def min(self, x: Tensor, a: Tensor) -> Tensor:
        return self(x, a).min(dim=0).values


class TanhGaussian(nn.Module):
    """A bounded stochastic policy y = bound · tanh(u), u ~ N(μ(x), σ(x)²), per SAC.

    ``sample(x, noise)`` takes the standard-normal ``noise`` [B, D] explicitly (so a caller's generator,
    or ε = 0 for the mean, fixes it) and returns (y [B, D], log π [B]).  The log-density is that of the
    unit-bounded tanh(u) (the constant −D·log(bound) is left out), so a target entropy means the same
    thing whatever the bound, as in SAC implementations that rescale to the action box outside.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dims: tuple[int, ...], activation: str,
                 bound: float, zero_mean: bool = False) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.net = mlp(in_dim, 2 * out_dim, hidden_dims, activation)
        if zero_mean:  # μ ≡ 0 at initialisation, so mode() is exactly 0 (σ keeps its usual random start)
            last = self.net[-1]
            with torch.no_grad():
                last.weight[:out_dim].zero_()
                last.bias[:out_dim].zero_()
        self.register_buffer("bound", torch.tensor(float(bound)))

    def mean_and_log_std(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_std = self.net(x).chunk(2, dim=-1)
        return mu, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, x: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_std = self.mean_and_log_std(x)
        u = mu + log_std.exp() * noise
        y = torch.tanh(u)
        log_normal = -0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)
        # log|d tanh(u)/du| = log(1 − tanh²u) = 2 (log 2 − u − softplus(−2u)), numerically stable.
        log_jac = 2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))
        return self.bound * y, (log_normal - log_jac).sum(dim=-1)

    def mode(self, x: Tensor) -> Tensor:
        """The deterministic action bound · tanh(μ(x)) (the policy's mean latent)."""
        return self.bound * torch.tanh(self.mean_and_log_std(x)[0])


def polyak_(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target ← (1 − τ) target + τ source, in place (parameters only; the MLPs have no buffers)."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)
