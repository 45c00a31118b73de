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
PREDICTION_TYPES = ("epsilon", "sample")
TIMESTEP_SPACINGS = ("leading", "trailing")


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
    prediction_type: str = "epsilon"
    """Diffusion only: what the denoiser predicts, ``epsilon`` (the noise, DDPM's) or ``sample`` (the clean
    chunk x_0).  Measured on Adroit relocate (240-d chunks, docs/gym_adroit.md): the same 3 x 512 MLP fits
    the finger commands with ``sample`` (error 0.015, 58% success) and not with ``epsilon`` (0.15-0.18, 0%)."""
    timestep_spacing: str = "leading"
    """Diffusion only: DDIM timesteps ``leading`` ((K-1-k)·T/K: 80, 60, 40, 20, 0 for T=100, K=5) or
    ``trailing`` (T-1-k·T/K: 99, 79, 59, 39, 19; each step lands on the next, the last on x_0).  Leading
    treats the latent z as x_80, which in training still held sqrt(abar_80) = 0.29 of the clean chunk;
    trailing starts where x_t is (almost) pure noise, as z is (Lin et al. 2024), and suits ``sample``
    prediction (an epsilon prediction is divided by sqrt(abar_99) = 5e-4 there).  Changes only the sampler:
    the same weights decode either way."""
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
        if self.prediction_type not in PREDICTION_TYPES:
            raise bad("prediction_type", f"must be one of {list(PREDICTION_TYPES)}")
        if self.timestep_spacing not in TIMESTEP_SPACINGS:
            raise bad("timestep_spacing", f"must be one of {list(TIMESTEP_SPACINGS)}")
        k = self.num_inference_steps
        if k is not None:
            if not isinstance(k, int) or isinstance(k, bool) or k < 1:
                raise bad("num_inference_steps", "must be a positive integer or null (the backbone's default)")
            if self.backbone == "diffusion" and k > self.num_train_timesteps:
                raise bad("num_inference_steps", f"must be <= num_train_timesteps ({self.num_train_timesteps})")
