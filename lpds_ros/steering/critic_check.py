"""How well the distilled noise critic Q^W stands in for the action critic where the LP-DS actor reads it.

Q^W(s, w) is regressed onto min_j Q^A_j(s, Φ(s, w)) on prior latents w = ε (DESIGN §3), but the actor climbs it
at the steered latents ε + Δ(s).  ``noise_critic_check`` compares the two at ε, at ε + Δ(s) and at the mean
latent Δ(s), the gain of the shift as each sees it, and their slopes in w (the exact one through the frozen
decoder).  Q^A is itself an estimate: this checks the distillation, not the returns.
``benchmarks/noise_critic_check.py`` runs it on trained run folders.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

LATENTS = ("prior ε", "ε + Δ(s)", "Δ(s)")


def noise_critic_check(agent, obs: Tensor, latents: int = 16, seed: int = 0) -> dict:
    """For an LP-DS agent with a noise critic and states ``obs`` [N, obs_dim] (replayed ones, say), with
    ``latents`` prior draws per state: {latent: {q_w, q_a, bias, rmse}} for each of ``LATENTS``, ``gain``
    (E_ε[Q(s, ε + Δ) − Q(s, ε)] per state as Q^W and Q^A∘Φ see it: means, correlation, sign agreement) and
    ``slope`` (cosine of ∇_w Q^W and ∇_w Q^A(s, Φ(s, w)) at ε + Δ, per sample and averaged over ε per state)."""
    if "q_w" not in agent.nets:
        raise ValueError(f"a {agent.name} agent with actor_gradient={getattr(agent.config, 'actor_gradient', None)} "
                         "has no noise critic to check")
    n, k = obs.shape[0], latents
    h, d, h_exec = agent.horizon, agent.action_dim, agent.exec_horizon
    obs_k = obs.repeat_interleave(k, 0)
    x = agent.features(obs_k)
    eps = torch.randn(n * k, h * d, generator=torch.Generator().manual_seed(seed))
    q_w, q_a = agent.nets["q_w"], agent.nets["q_a"]

    def noise_q(w: Tensor) -> Tensor:
        return q_w(torch.cat([x, w], -1)).squeeze(-1)

    def action_q(w: Tensor) -> Tensor:
        chunk = agent.decoder.decode(obs_k, w.view(-1, h, d))
        return q_a.min(x, chunk[:, :h_exec].flatten(1)).squeeze(-1)

    with torch.no_grad():
        at = dict(zip(LATENTS, (eps, agent.latent(obs_k, eps), agent.latent(obs_k, torch.zeros_like(eps)))))
        values = {name: (noise_q(w), action_q(w)) for name, w in at.items()}
    out: dict = {}
    for name, (qw_v, qa_v) in values.items():
        err = qw_v - qa_v
        out[name] = {"q_w": qw_v.mean().item(), "q_a": qa_v.mean().item(), "bias": err.mean().item(),
                     "rmse": err.pow(2).mean().sqrt().item()}
    gain_w = (values["ε + Δ(s)"][0] - values["prior ε"][0]).view(n, k).mean(1)
    gain_a = (values["ε + Δ(s)"][1] - values["prior ε"][1]).view(n, k).mean(1)
    out["gain"] = {"q_w": gain_w.mean().item(), "q_a": gain_a.mean().item(), "corr": _corr(gain_w, gain_a),
                   "sign_agreement": ((gain_w > 0) == (gain_a > 0)).float().mean().item()}

    slopes = []
    for value in (noise_q, action_q):  # the decoder's weights stay frozen: only w takes a gradient
        w = at["ε + Δ(s)"].clone().requires_grad_(True)
        slopes.append(torch.autograd.grad(value(w).sum(), w)[0])
    mean_w, mean_a = (s.view(n, k, -1).mean(1) for s in slopes)
    out["slope"] = {"cosine_per_state": F.cosine_similarity(mean_w, mean_a, dim=-1).mean().item(),
                    "cosine_per_sample": F.cosine_similarity(*slopes, dim=-1).mean().item(),
                    "norm_ratio": (mean_w.norm(dim=-1) / mean_a.norm(dim=-1).clamp_min(1e-12)).median().item()}
    return out


def _corr(a: Tensor, b: Tensor) -> float:
    """Pearson correlation; NaN when either side is constant (an unshifted Δ = 0)."""
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a.numpy(), b.numpy())[0, 1])
