"""The one base class of every steering method, and the update steps the methods share.

A method steers a frozen decoder Φ(s, w) -> chunk [B, H, d].  The online loop only calls:

- ``act(obs, generator, warmup)`` -> (chunk [B, H, d], extras): one decision per env, with the fields
  the method stores in the replay buffer beside the common ones (``extra_fields`` gives their shapes);
- ``policy_chunk(obs, eps)`` -> chunk: the policy as a deterministic function of its standard-normal
  input noise eps [B, H, d] (eps = 0 is the "mean" policy); evaluation and the entropy metric use it;
- ``update(batch)`` -> {metric: float} with the fixed keys ``metric_keys``;
- ``deviation(obs)``: E‖Δ(s)‖² for LP-DS, E‖μ(s)‖² (the mean latent or residual) for the SAC baselines;
- ``state()`` / ``load_state(state)``: networks, α or temperature, optimisers and the update RNG.

The decoder is held outside the module tree: it is frozen, never saved with the steering state, and
its SHA-256 is recorded by the checkpoint instead.  Network weights are initialised from torch's global
RNG, which the loop seeds before building an agent.  Networks see the decoder's normalised observation
when it has one (``normalize_obs``), else the raw observation.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from lpds_ros.steering.config import AgentConfig
from lpds_ros.steering.networks import TwinQ


class SteeringAgent(nn.Module):
    """Base of the steering methods; subclasses define the class attributes and ``act``/``update``."""

    name: ClassVar[str]
    """The registry name (``lpds``, ``dsrl``, ...)."""
    config_class: ClassVar[type[AgentConfig]]
    """The method's config dataclass."""
    metric_keys: ClassVar[tuple[str, ...]]
    """The keys ``update`` returns, always all of them."""
    learns: ClassVar[bool] = True
    """False for ``base``: the loop skips updates."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for attr in ("name", "config_class", "metric_keys"):
            if attr not in cls.__dict__:
                raise TypeError(f"{cls.__name__} must define the class attribute {attr!r}")

    def __init__(self, decoder: Any, config: AgentConfig, seed: int = 0, device: str = "cpu") -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.__dict__["decoder"] = decoder  # not a submodule: frozen, not part of the steering state
        self.config = config
        self.obs_dim = int(decoder.obs_dim)
        self.horizon = int(decoder.horizon)
        self.exec_horizon = int(decoder.exec_horizon)
        self.action_dim = int(decoder.action_dim)
        self.latent_dim = self.horizon * self.action_dim
        self.exec_dim = self.exec_horizon * self.action_dim
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        """Noise of the updates (next latents, actor samples); saved with the state."""
        self.nets = nn.ModuleDict()
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.num_updates = 0

    # ------------------------------------------------------------------------------------ helpers
    @property
    def extra_fields(self) -> dict[str, tuple[int, ...]]:
        """Per-row shapes of the replay fields this method adds to the common ones."""
        return {}

    def features(self, obs: Tensor) -> Tensor:
        """[B, obs_dim] raw -> what the networks read: the decoder's normalised observation if it has one."""
        normalize = getattr(self.decoder, "normalize_obs", None)
        return normalize(obs) if normalize is not None else obs

    @torch.no_grad()
    def decode(self, obs: Tensor, w: Tensor) -> Tensor:
        """Φ(s, w): obs [B, obs_dim], w [B, H, d] -> chunk [B, H, d] (frozen, no gradient)."""
        return self.decoder.decode(obs, w)

    def randn(self, *shape: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(shape, generator=generator or self.generator, device=self.device)

    def add_optimizer(self, name: str, params: nn.Module | list[nn.Parameter]) -> None:
        params = list(params.parameters()) if isinstance(params, nn.Module) else list(params)
        self.optimizers[name] = torch.optim.Adam(params, lr=self.config.lr)

    def step(self, name: str, loss: Tensor) -> None:
        """One gradient step of optimiser ``name`` on ``loss``."""
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    # ------------------------------------------------------------------------------- the interface
    def act(self, obs: Tensor, generator: torch.Generator, warmup: bool = False) -> tuple[Tensor, dict[str, Tensor]]:
        """obs [B, obs_dim] -> (chunk [B, H, d], extras {field: [B, *shape]}); ``warmup``: the prior latent."""
        raise NotImplementedError

    def policy_chunk(self, obs: Tensor, eps: Tensor) -> Tensor:
        """obs [B, obs_dim], eps [B, H, d] standard normal -> chunk [B, H, d]; eps = 0 is the mean policy."""
        raise NotImplementedError

    def update(self, batch: dict[str, Tensor]) -> dict[str, float]:
        raise NotImplementedError

    def deviation(self, obs: Tensor) -> float:
        return 0.0

    # ------------------------------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        return {
            "modules": self.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "generator": self.generator.get_state(),
            "num_updates": self.num_updates,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.load_state_dict(state["modules"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        self.generator.set_state(state["generator"])
        self.num_updates = int(state["num_updates"])


# ------------------------------------------------------------------------------ shared update steps
def chunk_td_target(batch: dict[str, Tensor], next_value: Tensor, reward_scale: float = 1.0) -> Tensor:
    """y = c·r + γ^k (1 − done) V(s'): r the chunk's discounted reward over its k executed steps, c the config's
    ``reward_scale``, γ^k stored as ``discount``, done = termination only (a truncated chunk still bootstraps
    from its final obs).  With ``n_step`` > 1 the replay buffer has already summed r, γ^k, done and s' over the
    next decisions (``ReplayBuffer.gather``), so the same formula is the n-step target."""
    return reward_scale * batch["reward"] + batch["discount"] * (1.0 - batch["done"]) * next_value


def twin_td_loss(q: TwinQ, x: Tensor, action: Tensor, y: Tensor) -> Tensor:
    """Σ_j mean_B (Q_j(x, a) − y)²."""
    return (q(x, action) - y).pow(2).mean(dim=1).sum()


def distill_loss(q_w: nn.Module, q_a: TwinQ, x: Tensor, prior_latent: Tensor, prior_action: Tensor) -> Tensor:
    """mean_B (Q^W(s, ε) − min_j Q^A_j(s, Φ(s, ε)))²; prior_latent [B, H·d], prior_action [B, H_exec·d]."""
    with torch.no_grad():
        target = q_a.min(x, prior_action)
    return (q_w(torch.cat([x, prior_latent], dim=-1)).squeeze(-1) - target).pow(2).mean()


def requires_grad_(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def temperature_loss(log_temperature: Tensor, log_prob: Tensor, target_entropy: float) -> Tensor:
    """SAC's temperature objective −log T · (log π + H_target): T grows while the entropy is below target."""
    return -(log_temperature * (log_prob.detach() + target_entropy)).mean()
