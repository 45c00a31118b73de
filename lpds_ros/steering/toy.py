"""Small stand-ins for a frozen decoder and a task, for tests and smoke runs of the steering code.

``BimodalDecoder`` is a frozen "policy" whose actions fall in two modes: a = tanh(sharpness · z), so the
sign of each latent coordinate picks the mode and the prior N(0, I) puts half the mass in each.
``OneStepEnv`` rewards one mode in a single decision; ``ReachEnv`` is a short 1-D reaching task with
a sparse success reward, termination on success and a time limit, shaped like the Franka tasks.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn


class BimodalDecoder(nn.Module):
    """decode(obs [B, obs_dim], z [B, H, d]) -> tanh(sharpness · z) (+ a small state-dependent offset)."""

    def __init__(self, obs_dim: int = 1, action_dim: int = 1, horizon: int = 2, exec_horizon: int = 1,
                 sharpness: float = 2.0, checkpoint_sha256: str = "toy-bimodal") -> None:
        super().__init__()
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.horizon, self.exec_horizon = horizon, exec_horizon
        self.num_inference_steps = 1
        self.sharpness = sharpness
        self.checkpoint_sha256 = checkpoint_sha256

    def decode(self, obs: Tensor, z: Tensor) -> Tensor:
        assert obs.shape[1] == self.obs_dim and tuple(z.shape[1:]) == (self.horizon, self.action_dim)
        return torch.tanh(self.sharpness * z + 0.1 * obs[:, :1, None].tanh())


class OneStepEnv(gym.Env):
    """One decision per episode: reward 1 (and success) when the first action's first coordinate is > 0."""

    def __init__(self, obs_dim: int = 1, action_dim: int = 1) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (action_dim,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(self.observation_space.shape, np.float32), {}

    def step(self, action):
        success = bool(action[0] > 0.0)
        obs = np.zeros(self.observation_space.shape, np.float32)
        return obs, float(success), True, False, {"success": success}


class ReachEnv(gym.Env):
    """x ∈ R starts near 0; x += 0.1 · a; success (reward 1, terminated) when x > 0.5; 40-step limit."""

    max_steps = 40

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.x, self.t = 0.0, 0

    def _obs(self):
        return np.array([self.x, self.t / self.max_steps], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.t = float(self.np_random.uniform(-0.1, 0.1)), 0
        return self._obs(), {}

    def step(self, action):
        self.x += 0.1 * float(np.clip(action[0], -1.0, 1.0))
        self.t += 1
        success = self.x > 0.5
        return self._obs(), float(success), success, self.t >= self.max_steps and not success, {"success": success}


TOY_TASKS = {"toy-onestep": OneStepEnv, "toy-reach": ReachEnv}
