"""The action-space baseline: a bounded residual on top of the frozen policy, learned by SAC.

    a_base = Φ(s, ε),  ε ~ N(0, I);   a = clip(a_base + β · tanh(u), −1, 1),  u ~ N(μ_θ(s, a_base), σ_θ²)

(Policy-Decorator / ResiP style; the paper's "LP-DS-A").  The residual covers the executed slice only:
the H − H_exec steps that are never executed stay the base's.  The critic Q^A(s, a) reads the executed
action, as LP-DS's does; the actor reads the state and the base action it corrects.  Evaluation uses
the mean residual β · tanh(μ_θ) on a fresh (or ε = 0) base chunk.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from lpds_ros.steering.agent import (
    SteeringAgent,
    chunk_td_target,
    requires_grad_,
    temperature_loss,
    twin_td_loss,
)
from lpds_ros.steering.config import ResidualConfig
from lpds_ros.steering.networks import TanhGaussian, TwinQ, polyak_


class ResidualAgent(SteeringAgent):
    name = "residual"
    config_class = ResidualConfig
    metric_keys = ("critic/td_loss", "critic/q_mean", "actor/loss", "actor/entropy", "actor/deviation",
                   "temperature/value", "temperature/loss")

    def __init__(self, decoder, config: ResidualConfig, seed: int = 0, device: str = "cpu") -> None:
        super().__init__(decoder, config, seed, device)
        hidden, act = config.hidden_dims, config.activation
        self.nets["actor"] = TanhGaussian(self.obs_dim + self.exec_dim, self.exec_dim, hidden, act, bound=config.bound,
                                          zero_mean=config.zero_init_mean)
        self.nets["q_a"] = TwinQ(self.obs_dim, self.exec_dim, hidden, act)
        self.nets["q_a_target"] = copy.deepcopy(self.nets["q_a"]).requires_grad_(False)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(config.init_temperature)))
        self.target_entropy = config.target_entropy_per_dim * self.exec_dim
        self.to(self.device)
        self.add_optimizer("actor", self.nets["actor"])
        self.add_optimizer("q_a", self.nets["q_a"])
        self.add_optimizer("temperature", [self.log_temperature])

    @property
    def extra_fields(self):
        return {"base_action": (self.exec_horizon, self.action_dim)}

    def corrected(self, x: Tensor, base_exec: Tensor, noise: Tensor | None) -> tuple[Tensor, Tensor]:
        """(clip(a_base + residual) [B, H_exec·d], log π [B]); ``noise=None`` takes the mean residual."""
        actor_in = torch.cat([x, base_exec], dim=-1)
        if noise is None:
            residual, log_prob = self.nets["actor"].mode(actor_in), torch.zeros(x.shape[0], device=x.device)
        else:
            residual, log_prob = self.nets["actor"].sample(actor_in, noise)
        return (base_exec + residual).clamp(-1.0, 1.0), log_prob

    def _with_exec(self, chunk: Tensor, exec_flat: Tensor) -> Tensor:
        out = chunk.clone()
        out[:, : self.exec_horizon] = exec_flat.view(-1, self.exec_horizon, self.action_dim)
        return out

    # ------------------------------------------------------------------------------------- acting
    @torch.no_grad()
    def act(self, obs, generator, warmup=False):
        b = obs.shape[0]
        base = self.decode(obs, self.randn(b, self.horizon, self.action_dim, generator=generator))
        base_exec = base[:, : self.exec_horizon]
        if warmup:
            return base, {"base_action": base_exec}
        noise = self.randn(b, self.exec_dim, generator=generator)
        a_exec, _ = self.corrected(self.features(obs), base_exec.flatten(1), noise)
        return self._with_exec(base, a_exec), {"base_action": base_exec}

    @torch.no_grad()
    def policy_chunk(self, obs, eps):
        base = self.decode(obs, eps)
        a_exec, _ = self.corrected(self.features(obs), base[:, : self.exec_horizon].flatten(1), None)
        return self._with_exec(base, a_exec)

    @torch.no_grad()
    def deviation(self, obs):
        """E‖β tanh(μ_θ(s, a_base))‖² on a fresh base action."""
        base = self.decode(obs, self.randn(obs.shape[0], self.horizon, self.action_dim))
        actor_in = torch.cat([self.features(obs), base[:, : self.exec_horizon].flatten(1)], dim=-1)
        return self.nets["actor"].mode(actor_in).pow(2).sum(-1).mean().item()

    # ------------------------------------------------------------------------------------- update
    def update(self, batch: dict[str, Tensor]) -> dict[str, float]:
        c, nets = self.config, self.nets
        obs, next_obs = batch["obs"], batch["next_obs"]
        x, x_next = self.features(obs), self.features(next_obs)
        n = obs.shape[0]
        temperature = self.log_temperature.exp().detach()

        # 1. TD: y = r + γ^k (1 − done) (min_j Q^A_target(s', a') − T log π), a' = corrected Φ(s', ε').
        with torch.no_grad():
            base_next = self.decode(next_obs, self.randn(n, self.horizon, self.action_dim))[:, : self.exec_horizon]
            a_next, log_prob_next = self.corrected(x_next, base_next.flatten(1), self.randn(n, self.exec_dim))
            y = chunk_td_target(batch, nets["q_a_target"].min(x_next, a_next) - temperature * log_prob_next,
                                self.config.reward_scale)
        td_loss = twin_td_loss(nets["q_a"], x, batch["action"].flatten(1), y)
        self.step("q_a", td_loss)

        # 2. Actor: maximise E[Q^A(s, clip(a_base + residual)) − T log π] on the replayed base actions.
        a, log_prob = self.corrected(x, batch["base_action"].flatten(1), self.randn(n, self.exec_dim))
        requires_grad_(nets["q_a"], False)
        actor_loss = (temperature * log_prob - nets["q_a"].min(x, a)).mean()
        requires_grad_(nets["q_a"], True)
        self.step("actor", actor_loss)

        # 3. Temperature towards the target entropy.
        t_loss = temperature_loss(self.log_temperature, log_prob, self.target_entropy)
        self.step("temperature", t_loss)

        polyak_(nets["q_a_target"], nets["q_a"], c.tau)
        self.num_updates += 1
        with torch.no_grad():
            actor_in = torch.cat([x, batch["base_action"].flatten(1)], dim=-1)
            deviation = nets["actor"].mode(actor_in).pow(2).sum(-1).mean().item()
        return {
            "critic/td_loss": td_loss.item(), "critic/q_mean": y.mean().item(), "actor/loss": actor_loss.item(),
            "actor/entropy": -log_prob.mean().item(), "actor/deviation": deviation,
            "temperature/value": self.log_temperature.exp().item(), "temperature/loss": t_loss.item(),
        }
