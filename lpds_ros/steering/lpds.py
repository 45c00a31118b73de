"""LP-DS: a state-conditioned shift of the prior noise under a Lagrangian trust region (DESIGN §3).

    w = ε + Δ_θ(s),  ε ~ N(0, I) in R^{H×d},  a = Φ(s, w)          (Δ_θ's output layer starts at 0)
    maximise  E_s[ Q^W(s, ε + Δ_θ(s)) ]   subject to   E_s‖Δ_θ(s)‖² ≤ δ

Each ``update`` is, in order: one chunk-TD step of the action critic Q^A, one distillation step of the
noise critic Q^W onto Q^A(s, Φ(s, ε)) with prior ε (``distill_executed``: and on the replayed executed
(w, Φ(s, w))), one actor step on
E[Q^W(s, ε + Δ_θ(s)) − α'(‖Δ_θ(s)‖² − δ)], one projected dual step α ← max(0, α + η_α E[‖Δ‖² − δ]),
and the Polyak step of Q^A's targets; ``actor_delay`` > 0 skips the actor and dual steps of the first
updates (a critic warm-up).  ``actor_gradient="decoder"`` climbs min_j Q^A_j(s, Φ(s, w)) instead of Q^W, by
back-propagating through the frozen decoder, and skips the distillation step.  The actor's multiplier
α' = max(0, α + k_p E[‖Δ‖² − δ]) adds a proportional term to the dual variable (PI-Lagrangian); k_p = 0 is
the plain scheme of DESIGN §3, which oscillates around the bound (see ``LPDSConfig.dual_kp``).
``lagrange=False`` is the ablation: α stays 0 and there is no bound.

``learn_scale=True`` is the Gaussian variant (``lpds-gauss``): the head outputs (μ, log σ), w = μ(s) + σ(s) ⊙ ε,
and the constrained divergence is 2·KL(N(μ, σ²) ‖ N(0, I)) = ‖μ‖² + Σ(σ² − 1 − 2 log σ), which is ‖Δ‖² at
σ = 1; both heads start at 0, so step 0 is still the base policy.  The deployment runtime applies
w = ε + Δ(s) only, so this variant is not exported.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor

from lpds_ros.steering.agent import (
    SteeringAgent,
    chunk_td_target,
    distill_loss,
    requires_grad_,
    twin_td_loss,
)
from lpds_ros.steering.config import LPDSConfig
from lpds_ros.errors import LpdsError
from lpds_ros.steering.networks import TwinQ, mlp, polyak_

LOG_SCALE_MIN, LOG_SCALE_MAX = -2.0, 1.0
"""Clamp of lpds-gauss's log σ (σ in [0.14, 2.7]); the trust region keeps it far inside."""


class LPDSAgent(SteeringAgent):
    name = "lpds"
    config_class = LPDSConfig
    metric_keys = ("critic/td_loss", "critic/q_mean", "critic/distill_loss", "actor/loss", "actor/q",
                   "actor/delta_sq", "actor/deviation", "actor/latent_std", "dual/alpha", "dual/alpha_effective",
                   "dual/violation")

    def __init__(self, decoder, config: LPDSConfig, seed: int = 0, device: str = "cpu") -> None:
        super().__init__(decoder, config, seed, device)
        if config.delta is None:
            raise ValueError("LPDSConfig.delta must be resolved (the task's δ) before building the agent")
        c, hidden, act = config, config.hidden_dims, config.activation
        heads = 2 if c.learn_scale else 1  # (μ, log σ) for lpds-gauss
        self.nets["delta"] = mlp(self.obs_dim, heads * self.latent_dim, hidden, act, zero_last=True)
        self.nets["q_a"] = TwinQ(self.obs_dim, self.exec_dim, hidden, act)
        self.nets["q_a_target"] = copy.deepcopy(self.nets["q_a"]).requires_grad_(False)
        if self.uses_noise_critic:
            self.nets["q_w"] = mlp(self.obs_dim + self.latent_dim, 1, hidden, act)
        self.register_buffer("alpha", torch.tensor(float(c.alpha_init) if c.lagrange else 0.0))
        self.to(self.device)
        self.add_optimizer("delta", self.nets["delta"])
        self.add_optimizer("q_a", self.nets["q_a"])
        if self.uses_noise_critic:
            self.add_optimizer("q_w", self.nets["q_w"])

    @property
    def uses_noise_critic(self) -> bool:
        """Whether the actor climbs Q^W (DESIGN §3) rather than Q^A through the decoder (``actor_gradient``)."""
        return self.config.actor_gradient == "noise_critic"

    @property
    def stores_prior_pairs(self) -> bool:
        """Whether acting decodes a prior (ε, Φ(s, ε)) pair for the replay buffer (Q^W's distillation reads it)."""
        return self.uses_noise_critic and self.config.distill_noise == "replay"

    @property
    def extra_fields(self) -> dict[str, tuple[int, ...]]:
        fields = {"latent": (self.horizon, self.action_dim)}
        if self.stores_prior_pairs:
            fields |= {"prior_latent": (self.horizon, self.action_dim), "prior_action": (self.exec_horizon, self.action_dim)}
        return fields

    def shift(self, obs: Tensor) -> Tensor:
        """Δ_θ(s): [B, obs_dim] -> [B, H·d]."""
        if self.config.learn_scale:
            raise LpdsError("lpds-gauss draws w = μ(s) + σ(s)·ε: it has no latent shift Δ(s) for the runtime "
                            "(which applies w = ε + Δ(s)); export or deploy an lpds checkpoint")
        return self.nets["delta"](self.features(obs))

    def _head(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Features [B, F] -> (μ or Δ [B, H·d], log σ [B, H·d] for lpds-gauss, else None)."""
        out = self.nets["delta"](x)
        if not self.config.learn_scale:
            return out, None
        mu, log_sigma = out.chunk(2, dim=-1)
        return mu, log_sigma.clamp(LOG_SCALE_MIN, LOG_SCALE_MAX)

    def latent(self, obs: Tensor, eps: Tensor) -> Tensor:
        """w for prior noise ``eps`` [B, H·d]: ε + Δ(s), or μ(s) + σ(s) ⊙ ε (lpds-gauss)."""
        return _latent(*self._head(self.features(obs)), eps)

    @staticmethod
    def divergence(mu: Tensor, log_sigma: Tensor | None) -> Tensor:
        """[B]: ‖Δ‖², or 2·KL(N(μ, σ²) ‖ N(0, I)) = ‖μ‖² + Σ(σ² − 1 − 2 log σ) for lpds-gauss."""
        d = mu.pow(2).sum(-1)
        if log_sigma is not None:
            d = d + (torch.expm1(2 * log_sigma) - 2 * log_sigma).sum(-1)
        return d

    # ------------------------------------------------------------------------------------- acting
    @torch.no_grad()
    def act(self, obs, generator, warmup=False):
        b = obs.shape[0]
        eps = self.randn(b, self.horizon, self.action_dim, generator=generator)
        w = eps if warmup else self.latent(obs, eps.flatten(1)).view_as(eps)
        if not self.stores_prior_pairs:
            return self.decode(obs, w), {"latent": w}
        eps_prior = self.randn(b, self.horizon, self.action_dim, generator=generator)
        chunk, prior_chunk = self.decode(torch.cat([obs, obs]), torch.cat([w, eps_prior])).split(b)
        return chunk, {"latent": w, "prior_latent": eps_prior, "prior_action": prior_chunk[:, : self.exec_horizon]}

    @torch.no_grad()
    def policy_chunk(self, obs, eps):
        return self.decode(obs, self.latent(obs, eps.flatten(1)).view_as(eps))

    @torch.no_grad()
    def deviation(self, obs):
        return self.divergence(*self._head(self.features(obs))).mean().item()

    # ------------------------------------------------------------------------------------- update
    def update(self, batch: dict[str, Tensor]) -> dict[str, float]:
        c, nets = self.config, self.nets
        obs, next_obs = batch["obs"], batch["next_obs"]
        x, x_next = self.features(obs), self.features(next_obs)
        n = obs.shape[0]

        # 1. Chunk TD for Q^A: y = r + γ^k (1 − done) min_j Q^A_target(s', Φ(s', ε' + Δ_θ(s'))).
        with torch.no_grad():
            w_next = _latent(*self._head(x_next), self.randn(n, self.latent_dim))
            a_next = self.decode(next_obs, w_next.view(n, self.horizon, self.action_dim))[:, : self.exec_horizon]
            y = chunk_td_target(batch, nets["q_a_target"].min(x_next, a_next.flatten(1)),
                                self.config.reward_scale)
        td_loss = twin_td_loss(nets["q_a"], x, batch["action"].flatten(1), y)
        self.step("q_a", td_loss)

        # 2. Distil Q^W(s, ε) onto Q^A(s, Φ(s, ε)) with prior noise ε ~ N(0, I) (not needed when the actor
        # reads Q^A through the decoder).
        d_loss = torch.zeros(())
        if self.uses_noise_critic:
            d_loss = distill_loss(nets["q_w"], nets["q_a"], *self.distillation_pairs(batch, obs, x))
            self.step("q_w", d_loss)

        # 3. Actor: maximise E[Q^W(s, ε + Δ_θ(s)) − α' (‖Δ_θ(s)‖² − δ)], α' = max(0, α + k_p (E‖Δ‖² − δ)),
        # 4. then projected dual ascent α ← max(0, α + η_α (E‖Δ‖² − δ)); both wait for the critic warm-up.
        # (lpds-gauss: w = μ + σ ⊙ ε, reparameterised, and the divergence in place of ‖Δ‖²)
        train_actor = self.num_updates >= c.actor_delay
        with torch.set_grad_enabled(train_actor):  # the warm-up only logs the actor's terms
            delta, log_sigma = self._head(x)
            divergence = self.divergence(delta, log_sigma).mean()
            w = _latent(delta, log_sigma, self.randn(n, self.latent_dim))
            q_actor = self._actor_value(obs, x, w)
            violation = divergence.detach() - c.delta
            alpha = (self.alpha + c.dual_kp * violation).clamp_min(0.0) if c.lagrange else self.alpha
            actor_loss = -q_actor + alpha * (divergence - c.delta)
        if train_actor:
            self.step("delta", actor_loss)
            if c.lagrange:
                self.alpha.copy_((self.alpha + c.dual_lr * violation).clamp_min(0.0))

        polyak_(nets["q_a_target"], nets["q_a"], c.tau)
        self.num_updates += 1
        return {
            "critic/td_loss": td_loss.item(), "critic/q_mean": y.mean().item(), "critic/distill_loss": d_loss.item(),
            "actor/loss": actor_loss.item(), "actor/q": q_actor.item(), "actor/delta_sq": delta.pow(2).sum(-1).mean().item(),
            "actor/deviation": divergence.item(),
            "actor/latent_std": 1.0 if log_sigma is None else log_sigma.detach().exp().mean().item(),
            "dual/alpha": self.alpha.item(), "dual/alpha_effective": float(alpha),
            "dual/violation": violation.item(),
        }

    def distillation_pairs(self, batch: dict[str, Tensor], obs: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(features, w, Φ(s, w)[:, :H_exec]) that Q^W regresses onto Q^A: the prior pairs, and with
        ``distill_executed`` also the replayed executed ones (the latents the actor itself queries)."""
        latent, action = prior_pairs(self, batch, obs)
        if not self.config.distill_executed:
            return x, latent, action
        return (torch.cat([x, x]), torch.cat([latent, batch["latent"].flatten(1)]),
                torch.cat([action, batch["action"].flatten(1)]))

    def _actor_value(self, obs: Tensor, x: Tensor, w: Tensor) -> Tensor:
        """E[Q(s, w)] for the actor, differentiable in w [B, H·d]: Q^W(s, w), or min_j Q^A_j(s, Φ(s, w)) with the
        gradient through the frozen decoder (its weights need none: they stay frozen)."""
        critic = self.nets["q_w"] if self.uses_noise_critic else self.nets["q_a"]
        requires_grad_(critic, False)
        if self.uses_noise_critic:
            q = critic(torch.cat([x, w], dim=-1))
        else:
            chunk = self.decoder.decode(obs, w.view(-1, self.horizon, self.action_dim))
            q = critic.min(x, chunk[:, : self.exec_horizon].flatten(1))
        requires_grad_(critic, True)
        return q.mean()


def _latent(mu: Tensor, log_sigma: Tensor | None, eps: Tensor) -> Tensor:
    return eps + mu if log_sigma is None else mu + log_sigma.exp() * eps


def prior_pairs(agent: SteeringAgent, batch: dict[str, Tensor], obs: Tensor) -> tuple[Tensor, Tensor]:
    """(ε [B, H·d], Φ(s, ε)[:, :H_exec] flattened) for the noise critic: stored beside each transition
    (``distill_noise="replay"``) or drawn and decoded now (``"fresh"``)."""
    n = obs.shape[0]
    if agent.config.distill_noise == "replay":
        return batch["prior_latent"].flatten(1), batch["prior_action"].flatten(1)
    eps = agent.randn(n, agent.horizon, agent.action_dim)
    return eps.flatten(1), agent.decode(obs, eps)[:, : agent.exec_horizon].flatten(1)
