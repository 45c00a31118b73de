"""``PolicyConfig``: everything that fixes a backbone's architecture and its decoder.

A policy folder's ``config.json`` holds this dataclass under ``"policy"``; the weights in
``model.safetensors`` only load into a network built from the same config.  Training settings
(epochs, learning rate, ...) live in ``lpds_ros.policies.train.TrainConfig``: they do not change what
the frozen decoder computes.
"""
from __future__ import annotations

from dataclasses import dataclass

from lpds_ros.config import ConfigError

# Names a config may give as ``backbone``.  ``lpds_ros.policies.BACKBONES`` maps each to its class
# (a test keeps the two in step).
BACKBONE_NAMES = ("diffusion", "flow")
BETA_SCHEDULES = ("squaredcos_cap_v2", "linear")


@dataclass
class PolicyConfig:
    """Architecture and sampler of a frozen generative policy (diffusion or flow matching)."""

    obs_dim: int
    """Length of the flat observation vector the policy reads (set from the demos by ``lpds pretrain``)."""
    action_dim: int
    """d: the environment's action size per control step (set from the demos)."""
    backbone: str = "diffusion"
    """``diffusion`` (DDPM training, DDIM sampling with eta = 0) or ``flow`` (rectified flow, Euler sampling)."""
    horizon: int = 8
    """H: control steps per predicted action chunk; the decoder's latent z has shape (H, d)."""
    exec_horizon: int = 4
    """H_exec: how many of the H predicted steps are executed before the next decision (1 <= H_exec <= H)."""
    num_inference_steps: int | None = None
    """K: denoising (DDIM) or integration (Euler) steps per decode.  ``None`` means the backbone's default
    (diffusion 5, flow 10); the built policy's config holds the resolved number."""
    num_train_timesteps: int = 100
    """T: diffusion steps of the DDPM forward process (diffusion only; K <= T)."""
    beta_schedule: str = "squaredcos_cap_v2"
    """Diffusion noise schedule: ``squaredcos_cap_v2`` (cosine alpha-bar, Nichol & Dhariwal) or ``linear``."""
    clip_sample: bool = True
    """Diffusion only: clip each DDIM step's predicted clean chunk to the normalised action range [-1, 1]."""
    hidden_dim: int = 512
    """Width of the denoiser's residual MLP blocks."""
    num_layers: int = 3
    """Number of residual MLP blocks in the denoiser."""
    cond_dim: int = 128
    """Width of the (observation, time) conditioning vector fed to every block."""
    time_embed_dim: int = 64
    """Size of the sinusoidal time embedding (even)."""

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> ConfigError:
            return ConfigError(f"PolicyConfig.{field} = {getattr(self, field)!r}: {why}")

        for name in ("obs_dim", "action_dim", "horizon", "exec_horizon", "num_train_timesteps",
                     "hidden_dim", "num_layers", "cond_dim", "time_embed_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise bad(name, "must be a positive integer")
        if self.backbone not in BACKBONE_NAMES:
            raise bad("backbone", f"must be one of {list(BACKBONE_NAMES)}")
        if self.exec_horizon > self.horizon:
            raise bad("exec_horizon", f"must be <= horizon ({self.horizon})")
        if self.time_embed_dim % 2:
            raise bad("time_embed_dim", "must be even")
        if self.beta_schedule not in BETA_SCHEDULES:
            raise bad("beta_schedule", f"must be one of {list(BETA_SCHEDULES)}")
        if not isinstance(self.clip_sample, bool):
            raise bad("clip_sample", "must be true or false")
        k = self.num_inference_steps
        if k is not None:
            if not isinstance(k, int) or isinstance(k, bool) or k < 1:
                raise bad("num_inference_steps", "must be a positive integer or null (the backbone's default)")
            if self.backbone == "diffusion" and k > self.num_train_timesteps:
                raise bad("num_inference_steps", f"must be <= num_train_timesteps ({self.num_train_timesteps})")
