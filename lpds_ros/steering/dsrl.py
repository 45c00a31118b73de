"""The unconstrained noise-space baselines: DSRL-NA and DSRL-SAC (Wagenmaker et al., DSRL).

Both steer the latent with a SAC-style actor w = b · tanh(u), u ~ N(μ_θ(s), σ_θ(s)²), whose entropy
temperature is tuned towards a target entropy (0 in DSRL's settings); neither keeps w near N(0, I).

- ``dsrl`` (DSRL-NA, noise aliasing): the same two critics as LP-DS: Q^A(s, a) by chunk TD on the
  executed actions with the SAC backup min_j Q^A_target(s', Φ(s', w')) − T log π(w'|s'), Q^W(s, w)
  distilled onto Q^A(s, Φ(s, ε)) with prior ε; the actor maximises Q^W(s, w) − T log π(w|s).
- ``dsrl-sac``: plain SAC whose action is the latent w, i.e. the decoder is part of the environment;
  one twin critic Q(s, w) and no decoding inside the update.

Deviation, like for like with LP-DS's E‖Δ‖² (DESIGN §6): E‖μ(s)‖² with μ(s) = b · tanh(μ_θ(s)) the
actor's mean latent.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from lpds_ros.steering.agent import (
    SteeringAgent,
    chunk_td_target,
    distill_loss,
    requires_grad_,
    temperature_loss,
    twin_td_loss,
)
from lpds_ros.steering.config import DSRLConfig
from lpds_ros.steering.lpds import prior_pairs
from lpds_ros.steering.networks import TanhGaussian, TwinQ, mlp, polyak_

METRIC_KEYS = ("critic/td_loss", "critic/q_mean", "critic/distill_loss", "actor/loss", "actor/entropy",
               "actor/deviation", "temperature/value", "temperature/loss")


class DSRLAgent(SteeringAgent):
    """DSRL-NA (``noise_aliasing=True``, the registry's ``dsrl``) or DSRL-SAC (``dsrl-sac``)."""

    name = "dsrl"
    config_class = DSRLConfig
    metric_keys = METRIC_KEYS

    def __init__(self, decoder, config: DSRLConfig, seed: int = 0, device: str = "cpu") -> None:
        super().__init__(decoder, config, seed, device)
        hidden, act = config.hidden_dims, config.activation
        self.nets["actor"] = TanhGaussian(self.obs_dim, self.latent_dim, hidden, act, bound=config.bound)
        # DSRL-NA's critic reads the executed actions; DSRL-SAC's reads the latent itself.
        critic_dim = self.exec_dim if config.noise_aliasing else self.latent_dim
        self.nets["q"] = TwinQ(self.obs_dim, critic_dim, hidden, act)
        self.nets["q_target"] = copy.deepcopy(self.nets["q"]).requires_grad_(False)
        if config.noise_aliasing:
            self.nets["q_w"] = mlp(self.obs_dim + self.latent_dim, 1, hidden, act)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(config.init_temperature)))
        self.target_entropy = config.target_entropy_per_dim * self.latent_dim
        self.to(self.device)
        self.add_optimizer("actor", self.nets["actor"])
        self.add_optimizer("q", self.nets["q"])
        if config.noise_aliasing:
            self.add_optimizer("q_w", self.nets["q_w"])
        self.add_optimizer("temperature", [self.log_temperature])

    @property
    def extra_fields(self):
        fields = {"latent": (self.horizon, self.action_dim)}
        if self.config.noise_aliasing and self.config.distill_noise == "replay":
            fields |= {"prior_latent": (self.horizon, self.action_dim), "prior_action": (self.exec_horizon, self.action_dim)}
        return fields

    # ------------------------------------------------------------------------------------- acting
    def latent(self, obs: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
        """(w [B, H·d], log π(w|s) [B]) for the actor's standard-normal ``noise`` [B, H·d]."""
        return self.nets["actor"].sample(self.features(obs), noise)

    @torch.no_grad()
    def act(self, obs, generator, warmup=False):
        b, shape = obs.shape[0], (obs.shape[0], self.horizon, self.action_dim)
        noise = self.randn(*shape, generator=generator)
        if warmup:  # the base policy; DSRL-SAC's critic reads w, so keep it inside the actor's box
            w = noise.clamp(-self.config.bound, self.config.bound) if not self.config.noise_aliasing else noise
        else:
            w = self.latent(obs, noise.flatten(1))[0].view(shape)
        if not (self.config.noise_aliasing and self.config.distill_noise == "replay"):
            return self.decode(obs, w), {"latent": w}
        eps_prior = self.randn(*shape, generator=generator)
        chunk, prior_chunk = self.decode(torch.cat([obs, obs]), torch.cat([w, eps_prior])).split(b)
        return chunk, {"latent": w, "prior_latent": eps_prior, "prior_action": prior_chunk[:, : self.exec_horizon]}

    @torch.no_grad()
    def policy_chunk(self, obs, eps):
        return self.decode(obs, self.latent(obs, eps.flatten(1))[0].view_as(eps))

    @torch.no_grad()
    def deviation(self, obs):
        return self.nets["actor"].mode(self.features(obs)).pow(2).sum(-1).mean().item()

    # ------------------------------------------------------------------------------------- update
    def update(self, batch: dict[str, Tensor]) -> dict[str, float]:
        c, nets = self.config, self.nets
        obs, next_obs = batch["obs"], batch["next_obs"]
        x, x_next = self.features(obs), self.features(next_obs)
        n = obs.shape[0]
        temperature = self.log_temperature.exp().detach()

        # 1. TD with the SAC backup: y = r + γ^k (1 − done) (min_j Q_target(s', ·) − T log π(w'|s')).
        with torch.no_grad():
            w_next, log_prob_next = self.latent(next_obs, self.randn(n, self.latent_dim))
            critic_in_next = self._critic_input(next_obs, w_next)
            y = chunk_td_target(batch, nets["q_target"].min(x_next, critic_in_next) - temperature * log_prob_next,
                                self.config.reward_scale)
        critic_in = batch["action"].flatten(1) if c.noise_aliasing else batch["latent"].flatten(1)
        td_loss = twin_td_loss(nets["q"], x, critic_in, y)
        self.step("q", td_loss)

        # 2. DSRL-NA only: distil Q^W(s, ε) onto Q^A(s, Φ(s, ε)) with prior noise.
        d_loss = torch.zeros(())
        if c.noise_aliasing:
            prior_latent, prior_action = prior_pairs(self, batch, obs)
            d_loss = distill_loss(nets["q_w"], nets["q"], x, prior_latent, prior_action)
            self.step("q_w", d_loss)

        # 3. Actor: maximise E[Q(s, w) − T log π(w|s)] with Q = Q^W (NA) or the latent critic (SAC).
        w, log_prob = self.latent(obs, self.randn(n, self.latent_dim))
        critic = nets["q_w"] if c.noise_aliasing else nets["q"]
        requires_grad_(critic, False)
        q = nets["q_w"](torch.cat([x, w], dim=-1)).squeeze(-1) if c.noise_aliasing else nets["q"].min(x, w)
        requires_grad_(critic, True)
        actor_loss = (temperature * log_prob - q).mean()
        self.step("actor", actor_loss)

        # 4. Temperature towards the target entropy.
        t_loss = temperature_loss(self.log_temperature, log_prob, self.target_entropy)
        self.step("temperature", t_loss)

        polyak_(nets["q_target"], nets["q"], c.tau)
        self.num_updates += 1
        with torch.no_grad():
            deviation = nets["actor"].mode(x).pow(2).sum(-1).mean().item()
        return {
            "critic/td_loss": td_loss.item(), "critic/q_mean": y.mean().item(), "critic/distill_loss": d_loss.item(),
            "actor/loss": actor_loss.item(), "actor/entropy": -log_prob.mean().item(), "actor/deviation": deviation,
            "temperature/value": self.log_temperature.exp().item(), "temperature/loss": t_loss.item(),
        }

    def _critic_input(self, obs: Tensor, w: Tensor) -> Tensor:
        """What the TD critic reads for latent w [B, H·d]: Φ's executed slice (NA) or w itself (SAC)."""
        if not self.config.noise_aliasing:
            return w
        chunk = self.decode(obs, w.view(-1, self.horizon, self.action_dim))
        return chunk[:, : self.exec_horizon].flatten(1)
