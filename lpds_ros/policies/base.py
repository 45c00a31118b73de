"""The decoder interface every backbone satisfies, and the small base class both backbones share.

Steering (LP-DS, DSRL, residual RL), evaluation and the ONNX runtime only ever call
``decode(obs, z) -> chunk``: a deterministic map from a raw observation and a latent z ~ N(0, I) of
shape (H, d) to a chunk of raw environment actions.  The latent is always passed in; no backbone
samples noise inside ``decode``, so the same z always gives the same chunk.

``GenerativePolicy`` owns what is common: the observation/action normalisers (registered buffers, so
they follow ``.to(device)`` and are saved with the weights), the denoiser network, shape checks at the
edges, clipping to the action bounds, and ``save``.  A backbone adds two methods: ``_sample`` (the
fixed-K decode loop in normalised action space) and ``_loss`` (its training objective).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from safetensors.torch import save as safetensors_save
from torch import Tensor, nn

from lpds_ros.config import ConfigError, config_to_dict
from lpds_ros.policies.config import PolicyConfig
from lpds_ros.policies.networks import MLPDenoiser
from lpds_ros.utils import atomic_write_bytes, atomic_write_text, sha256_file

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "lpds_ros.policy"
FORMAT_VERSION = 1

# Raw environment actions live in this box; decoded chunks are clipped to it.
ACTION_LOW, ACTION_HIGH = -1.0, 1.0
# Normalised observations are clipped to +-OBS_CLIP standard deviations (out-of-distribution guard).
OBS_CLIP = 10.0


@runtime_checkable
class Decoder(Protocol):
    """What steering and evaluation need from a frozen policy (torch module or ONNX session alike)."""

    obs_dim: int
    action_dim: int
    horizon: int
    exec_horizon: int
    num_inference_steps: int

    def decode(self, obs: Tensor, z: Tensor) -> Tensor:
        """obs [B, obs_dim] raw, z [B, H, d] -> raw env actions [B, H, d] in [-1, 1]; deterministic in z."""
        ...


class GenerativePolicy(nn.Module):
    """Shared base of ``DiffusionPolicy`` and ``FlowPolicy``.

    Attributes: ``config`` (``PolicyConfig`` with K resolved), ``obs_dim``, ``action_dim`` (d),
    ``horizon`` (H), ``exec_horizon`` (H_exec), ``num_inference_steps`` (K, settable),
    ``latent_shape`` = (H, d), ``checkpoint_sha256`` (set by ``save`` and ``load_policy``) and
    ``metadata`` (the training record from config.json).
    """

    backbone: ClassVar[str]
    """The ``PolicyConfig.backbone`` name of the subclass."""
    default_inference_steps: ClassVar[int]
    """K used when the config leaves ``num_inference_steps`` unset."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for attr in ("backbone", "default_inference_steps"):
            if attr not in cls.__dict__:
                raise TypeError(f"{cls.__name__} must define the class attribute {attr!r}")

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        if config.backbone != self.backbone:
            raise ConfigError(f"PolicyConfig.backbone = {config.backbone!r}: {type(self).__name__} needs {self.backbone!r}")
        k = config.num_inference_steps if config.num_inference_steps is not None else self.default_inference_steps
        self.config = dataclasses.replace(config, num_inference_steps=k)
        self.obs_dim = config.obs_dim
        self.action_dim = config.action_dim
        self.horizon = config.horizon
        self.exec_horizon = config.exec_horizon
        self.checkpoint_sha256: str | None = None
        self.metadata: dict[str, Any] = {}
        # Normalisers: obs -> (obs - mean) / std;  action -> (action - center) / scale, so the demos' range is [-1, 1].
        self.register_buffer("obs_mean", torch.zeros(config.obs_dim))
        self.register_buffer("obs_std", torch.ones(config.obs_dim))
        self.register_buffer("action_center", torch.zeros(config.action_dim))
        self.register_buffer("action_scale", torch.ones(config.action_dim))
        self.denoiser = MLPDenoiser(
            sample_dim=config.horizon * config.action_dim,
            obs_dim=config.obs_dim,
            hidden_dim=config.hidden_dim,
            num_layers=config.num_layers,
            cond_dim=config.cond_dim,
            time_embed_dim=config.time_embed_dim,
        )

    # ----------------------------------------------------------------------------------- attributes
    @property
    def num_inference_steps(self) -> int:
        """K: denoising / integration steps per decode (a Python int, so the decode loop unrolls)."""
        return int(self.config.num_inference_steps)

    @num_inference_steps.setter
    def num_inference_steps(self, k: int) -> None:
        self.config = dataclasses.replace(self.config, num_inference_steps=k)  # __post_init__ validates k

    @property
    def latent_shape(self) -> tuple[int, int]:
        """(H, d): the shape of one latent z (and of one decoded chunk)."""
        return (self.horizon, self.action_dim)

    # ---------------------------------------------------------------------------------- normalisers
    @torch.no_grad()
    def set_normalizer(self, obs: Tensor, actions: Tensor) -> None:
        """Fit the normalisers: obs [N, obs_dim] -> mean/std; actions [..., d] -> min/max mapped to [-1, 1].

        A constant dimension gets scale 1 (it normalises to 0 instead of dividing by ~0).
        """
        obs = torch.as_tensor(obs, dtype=torch.float32).reshape(-1, self.obs_dim)
        actions = torch.as_tensor(actions, dtype=torch.float32).reshape(-1, self.action_dim)
        std = obs.std(dim=0, unbiased=False)
        self.obs_mean.copy_(obs.mean(dim=0))
        self.obs_std.copy_(torch.where(std < 1e-4, torch.ones_like(std), std))
        low, high = actions.min(dim=0).values, actions.max(dim=0).values
        scale = (high - low) / 2
        self.action_center.copy_((high + low) / 2)
        self.action_scale.copy_(torch.where(scale < 1e-4, torch.ones_like(scale), scale))

    def normalize_obs(self, obs: Tensor) -> Tensor:
        """[B, obs_dim] raw -> normalised, clipped to +-OBS_CLIP."""
        return ((obs - self.obs_mean) / self.obs_std).clamp(-OBS_CLIP, OBS_CLIP)

    def normalize_actions(self, actions: Tensor) -> Tensor:
        """[B, H, d] raw -> normalised (the demos' range maps to [-1, 1])."""
        return (actions - self.action_center) / self.action_scale

    def unnormalize_actions(self, x: Tensor) -> Tensor:
        """[B, H, d] normalised -> raw, clipped to the action box [-1, 1]."""
        return (x * self.action_scale + self.action_center).clamp(ACTION_LOW, ACTION_HIGH)

    # ------------------------------------------------------------------------------- decode / loss
    def _check(self, obs: Tensor, chunk: Tensor, name: str) -> None:
        if torch.jit.is_tracing():  # the legacy ONNX exporter: shapes are fixed by the example inputs
            return
        if obs.dim() != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(f"obs must have shape [B, {self.obs_dim}], got {tuple(obs.shape)}")
        if chunk.dim() != 3 or tuple(chunk.shape[1:]) != self.latent_shape:
            raise ValueError(f"{name} must have shape [B, {self.horizon}, {self.action_dim}], got {tuple(chunk.shape)}")

    def decode(self, obs: Tensor, z: Tensor) -> Tensor:
        """obs [B, obs_dim] raw, z [B, H, d] -> raw env actions [B, H, d] clipped to [-1, 1].

        Deterministic in z (DDIM with eta = 0 / Euler); K = ``num_inference_steps`` fixed Python steps.
        """
        self._check(obs, z, "z")
        x = self._sample(self.normalize_obs(obs), z.reshape(z.shape[0], -1))
        return self.unnormalize_actions(x.reshape(z.shape))

    def forward(self, obs: Tensor, z: Tensor) -> Tensor:
        """Same as ``decode`` (so ``torch.onnx.export(policy, (obs, z))`` exports the decoder)."""
        return self.decode(obs, z)

    def loss(self, obs: Tensor, actions: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """obs [B, obs_dim] raw, actions [B, H, d] raw demo chunks -> scalar training loss.

        ``generator`` (optional) draws the noise and times, for reproducible training.
        """
        self._check(obs, actions, "actions")
        x1 = self.normalize_actions(actions).reshape(actions.shape[0], -1)
        return self._loss(self.normalize_obs(obs), x1, generator)

    def _sample(self, obs_n: Tensor, z: Tensor) -> Tensor:
        """obs_n [B, obs_dim] normalised, z [B, H*d] -> normalised chunk [B, H*d]."""
        raise NotImplementedError

    def _loss(self, obs_n: Tensor, x1: Tensor, generator: torch.Generator | None) -> Tensor:
        """obs_n [B, obs_dim] normalised, x1 [B, H*d] normalised demo chunk -> scalar loss."""
        raise NotImplementedError

    def _randn(self, like: Tensor, generator: torch.Generator | None) -> Tensor:
        device = generator.device if generator is not None else like.device
        return torch.randn(like.shape, generator=generator, device=device, dtype=like.dtype).to(like.device)

    def _rand(self, n: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
        device = generator.device if generator is not None else like.device
        return torch.rand((n,), generator=generator, device=device, dtype=like.dtype).to(like.device)

    # ------------------------------------------------------------------------------------------ save
    def save(self, directory: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        """Write ``config.json`` (policy config + training ``metadata``) and ``model.safetensors``.

        Each file is written atomically.  Sets ``checkpoint_sha256`` and returns the folder.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if metadata is not None:
            self.metadata = dict(metadata)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        atomic_write_bytes(directory / WEIGHTS_FILE, safetensors_save(tensors))
        document = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "policy": config_to_dict(self.config),
            "training": self.metadata,
        }
        atomic_write_text(directory / CONFIG_FILE, json.dumps(document, indent=2) + "\n")
        self.checkpoint_sha256 = sha256_file(directory / WEIGHTS_FILE)
        return directory

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
