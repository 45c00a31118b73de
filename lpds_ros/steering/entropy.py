"""Action-space entropy: the Kozachenko–Leonenko k-nearest-neighbour estimator and the entropy ratio.

For N samples x_i in R^D with ρ_i the distance from x_i to its k-th nearest other sample,

    Ĥ = ψ(N) − ψ(k) + log V_D + (D / N) Σ_i log ρ_i,      V_D = π^{D/2} / Γ(D/2 + 1)

(nats; V_D is the volume of the unit D-ball).  Differential entropy can be negative and scales with D,
so methods are compared per dimension (DESIGN §6): ratio = exp((H_method − H_base) / D), the geometric
mean spread of the method's actions relative to the base policy's.  It is estimated on the first
executed action (D = d) with >= 256 latents per state, averaged over states; the chunk-level estimate
(D = H·d) is reported beside it but is biased in 30+ dimensions.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

MIN_DISTANCE = 1e-8
"""Floor on nearest-neighbour distances: exact duplicates (e.g. actions clipped to the same corner of the
box) would otherwise give log 0.  A collapsed policy therefore reads as very low, finite entropy."""


def knn_entropy(x: Tensor, k: int = 3) -> Tensor:
    """x [..., N, D] samples -> [...] Kozachenko–Leonenko entropy estimate in nats (float64)."""
    if x.dim() < 2:
        raise ValueError(f"x must have shape [..., N, D], got {tuple(x.shape)}")
    n, dim = x.shape[-2], x.shape[-1]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, N-1] = [1, {n - 1}], got {k}")
    x = x.to(torch.float64)
    dist = torch.cdist(x, x)
    dist.diagonal(dim1=-2, dim2=-1).fill_(float("inf"))  # a point is not its own neighbour
    rho = dist.kthvalue(k, dim=-1).values.clamp_min(MIN_DISTANCE)
    log_unit_ball = 0.5 * dim * math.log(math.pi) - math.lgamma(0.5 * dim + 1.0)
    digamma = torch.special.digamma(torch.tensor([float(n), float(k)], dtype=torch.float64))
    return digamma[0] - digamma[1] + log_unit_ball + dim * rho.log().mean(dim=-1)


def gaussian_entropy(cov: Tensor) -> float:
    """Closed form ½ log det(2πe Σ) of N(μ, Σ), for the estimator's tests."""
    dim = cov.shape[-1]
    return 0.5 * (dim * math.log(2 * math.pi * math.e) + torch.logdet(cov.to(torch.float64)).item())


def action_entropy(chunks: Tensor, k: int = 3) -> dict[str, float]:
    """chunks [S, M, H, d] (M decoded latents at each of S states) -> mean entropy over states.

    ``first``: of the first executed action (D = d); ``chunk``: of the whole chunk (D = H·d).
    """
    if chunks.dim() != 4:
        raise ValueError(f"chunks must have shape [S, M, H, d], got {tuple(chunks.shape)}")
    s, m = chunks.shape[:2]
    return {
        "first": knn_entropy(chunks[:, :, 0, :], k).mean().item(),
        "chunk": knn_entropy(chunks.reshape(s, m, -1), k).mean().item(),
    }


def entropy_ratio(h_method: float, h_base: float, dim: int) -> float:
    """exp((H_method − H_base) / D): 1 = the base's spread; DESIGN §6 targets >= 0.8 for LP-DS."""
    return math.exp((h_method - h_base) / dim)
