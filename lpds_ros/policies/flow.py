"""Flow-matching backbone: conditional flow matching on the linear (rectified-flow) path.

Path from the latent at t = 0 to the data at t = 1:  x_t = (1 - t) z + t x_1,  velocity u = x_1 - z.
Training (Lipman et al. 2023; Liu et al. 2023): t ~ U[0, 1], z ~ N(0, I), loss = ||v_theta(x_t, s, t) - u||^2.
Decoding integrates dx/dt = v_theta from x_0 = z with K explicit Euler steps of size 1/K, a
deterministic map z -> chunk.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lpds_ros.policies.base import GenerativePolicy


class FlowPolicy(GenerativePolicy):
    """Rectified-flow action-chunk policy decoded by K Euler steps.  See the module docstring."""

    backbone = "flow"
    default_inference_steps = 10

    def _sample(self, obs_n: Tensor, z: Tensor) -> Tensor:
        k, batch = self.num_inference_steps, z.shape[0]
        x = z
        for i in range(k):  # a Python loop over constants: unrolled by the ONNX exporter
            tt = torch.full((1,), i / k, dtype=x.dtype, device=x.device).expand(batch)
            x = x + self.denoiser(x, obs_n, tt) / k
        return x

    def _loss(self, obs_n: Tensor, x1: Tensor, generator: torch.Generator | None) -> Tensor:
        t = self._rand(x1.shape[0], x1, generator)[:, None]
        z = self._randn(x1, generator)
        x_t = (1 - t) * z + t * x1
        return F.mse_loss(self.denoiser(x_t, obs_n, t[:, 0]), x1 - z)
