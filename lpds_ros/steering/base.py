"""``base``: the frozen behaviour-cloned policy itself, w = ε ~ N(0, I), run through the same harness."""
from __future__ import annotations

import torch

from lpds_ros.steering.agent import SteeringAgent
from lpds_ros.steering.config import BaseConfig


class BaseAgent(SteeringAgent):
    name = "base"
    config_class = BaseConfig
    metric_keys = ()
    learns = False

    @torch.no_grad()
    def act(self, obs, generator, warmup=False):
        eps = self.randn(obs.shape[0], self.horizon, self.action_dim, generator=generator)
        return self.decode(obs, eps), {}

    @torch.no_grad()
    def policy_chunk(self, obs, eps):
        return self.decode(obs, eps)

    def update(self, batch):
        return {}
