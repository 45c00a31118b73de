"""Diffusion backbone: DDPM training (epsilon or x_0 prediction), DDIM sampling with eta = 0.

Training (Ho et al. 2020): x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t ~ U{0..T-1},
loss = ||eps_theta(x_t, s, t) - eps||^2  (``prediction_type = "sample"``: ||x0_theta(x_t, s, t) - x_0||^2).

Decoding (Song et al. 2021, DDIM with eta = 0) is a deterministic map from z (taken as x_t at the first
step) to x_0 in K steps at "leading" timesteps t_k = (K - 1 - k) * (T // K)  (T = 100, K = 5: 80, 60, 40,
20, 0), the spacing of diffusers' DDIMScheduler default and of diffusion_policy:
    x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)        (clipped to [-1, 1] if clip_sample)
                                                                 (x_0 prediction: the network's output)
    x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev) eps   (abar_prev = 1 after the last step)
Why not start at t = T - 1 ("trailing") with epsilon prediction?  The cosine schedule ends at abar_99 =
2.4e-7, so the first x0_hat multiplies the network's error by ~2000: on a bimodal toy, decoding then jumps
between modes inside tiny latent balls (local Lipschitz constant up to ~130, against ~12 when starting at
t = 80) and mode balance gets worse.  A smooth z -> chunk map is what latent steering needs.

``prediction_type = "sample"`` (x_0 prediction) never divides by sqrt(abar_t), so it can start at t = 99
(``timestep_spacing = "trailing"``: 99, 79, ..., 19), where training's x_t is pure noise, as z is (Lin et
al. 2024).  On the bimodal toy that is smoother still (local Lipschitz constant ~7).  On Adroit relocate's
240-d chunks x_0 prediction fits the finger commands and epsilon prediction does not, with either spacing
(docs/gym_adroit.md).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from lpds_ros.policies.base import GenerativePolicy
from lpds_ros.policies.config import PolicyConfig


def alphas_cumprod(num_timesteps: int, schedule: str) -> list[float]:
    """abar_t for t = 0..T-1 as Python floats (float64 arithmetic)."""
    if schedule == "squaredcos_cap_v2":  # Nichol & Dhariwal's cosine schedule, betas capped at 0.999
        def f(t: float) -> float:
            return math.cos((t / num_timesteps + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = [min(1 - f(i + 1) / f(i), 0.999) for i in range(num_timesteps)]
    elif schedule == "linear":  # DDPM's 1e-4..0.02 over 1000 steps, rescaled to T steps
        scale = 1000 / num_timesteps
        lo, hi = scale * 1e-4, scale * 0.02
        betas = [lo + (hi - lo) * i / max(num_timesteps - 1, 1) for i in range(num_timesteps)]
    else:
        raise ValueError(f"unknown beta schedule {schedule!r}")
    out, prod = [], 1.0
    for beta in betas:
        prod *= 1 - beta
        out.append(prod)
    return out


def ddim_timesteps(num_timesteps: int, k: int, spacing: str = "leading") -> list[int]:
    """K DDIM timesteps, noisiest first: "leading" (K - 1 - i)·(T // K), "trailing" round(T - i·T/K) - 1."""
    if spacing == "leading":
        ratio = num_timesteps // k
        return [(k - 1 - i) * ratio for i in range(k)]
    if spacing == "trailing":
        return [max(round(num_timesteps - i * num_timesteps / k) - 1, 0) for i in range(k)]
    raise ValueError(f"unknown timestep spacing {spacing!r}")


class DiffusionPolicy(GenerativePolicy):
    """DDPM-trained, DDIM-decoded action-chunk policy.  See the module docstring for the math."""

    backbone = "diffusion"
    default_inference_steps = 5

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__(config)
        self.num_train_timesteps = config.num_train_timesteps
        self._abar = alphas_cumprod(config.num_train_timesteps, config.beta_schedule)
        self.register_buffer("alphas_cumprod", torch.tensor(self._abar, dtype=torch.float32), persistent=False)

    def _sample(self, obs_n: Tensor, z: Tensor) -> Tensor:
        T, batch = self.num_train_timesteps, z.shape[0]
        steps = ddim_timesteps(T, self.num_inference_steps, self.config.timestep_spacing)
        predicts_sample = self.config.prediction_type == "sample"
        x = z
        for i, t in enumerate(steps):  # a Python loop over constants: unrolled by the ONNX exporter
            abar_t = self._abar[t]
            abar_prev = self._abar[steps[i + 1]] if i + 1 < len(steps) else 1.0
            tt = torch.full((1,), t / T, dtype=x.dtype, device=x.device).expand(batch)
            out = self.denoiser(x, obs_n, tt)
            if predicts_sample:
                x0 = out
            else:
                eps = out
                x0 = (x - math.sqrt(1 - abar_t) * eps) / math.sqrt(abar_t)
            if self.config.clip_sample:
                x0 = x0.clamp(-1.0, 1.0)
            if predicts_sample or self.config.clip_sample:  # the noise that the (clipped) x0 implies
                eps = (x - math.sqrt(abar_t) * x0) / math.sqrt(1 - abar_t)
            x = math.sqrt(abar_prev) * x0 + math.sqrt(1 - abar_prev) * eps
        return x

    def _loss(self, obs_n: Tensor, x1: Tensor, generator: torch.Generator | None) -> Tensor:
        T, batch = self.num_train_timesteps, x1.shape[0]
        t = (self._rand(batch, x1, generator) * T).long().clamp_(max=T - 1)
        eps = self._randn(x1, generator)
        abar = self.alphas_cumprod[t][:, None]
        x_t = abar.sqrt() * x1 + (1 - abar).sqrt() * eps
        target = x1 if self.config.prediction_type == "sample" else eps
        return F.mse_loss(self.denoiser(x_t, obs_n, t.to(x1.dtype) / T), target)
