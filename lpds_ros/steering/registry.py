"""Every steering method by name: one dict literal, heavy modules imported only when a method is built.

``METHODS[name]`` gives the method's config class, the config fields that make it that method (e.g.
``lpds-nolagrange`` is LP-DS with ``lagrange=False``) and a one-line summary.  ``make_agent`` builds one
on a frozen decoder.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from lpds_ros.errors import LpdsError
from lpds_ros.steering.config import (
    AgentConfig,
    BaseConfig,
    DSRLConfig,
    LPDSConfig,
    ResidualConfig,
    task_delta,
)


def _build_base(decoder, config, seed, device):
    from lpds_ros.steering.base import BaseAgent

    return BaseAgent(decoder, config, seed, device)


def _build_lpds(decoder, config, seed, device):
    from lpds_ros.steering.lpds import LPDSAgent

    return LPDSAgent(decoder, config, seed, device)


def _build_dsrl(decoder, config, seed, device):
    from lpds_ros.steering.dsrl import DSRLAgent

    return DSRLAgent(decoder, config, seed, device)


def _build_residual(decoder, config, seed, device):
    from lpds_ros.steering.residual import ResidualAgent

    return ResidualAgent(decoder, config, seed, device)


@dataclass(frozen=True)
class Method:
    build: Callable[..., Any]
    """(decoder, config, seed, device) -> SteeringAgent."""
    config_class: type[AgentConfig]
    """The dataclass a YAML ``--agent-config`` for this method loads into."""
    fixed: dict[str, Any] = field(default_factory=dict)
    """Config fields that define this method; a user config may not change them."""
    summary: str = ""
    learns: bool = True
    """False for a method that never updates (the base policy): the training settings cannot change its runs."""


METHODS: dict[str, Method] = {
    "base": Method(_build_base, BaseConfig, {}, "the frozen policy, w = ε ~ N(0, I)", learns=False),
    "lpds": Method(_build_lpds, LPDSConfig, {"lagrange": True, "learn_scale": False},
                   "LP-DS: w = ε + Δ(s) under E‖Δ‖² ≤ δ with a learned multiplier"),
    "lpds-nolagrange": Method(_build_lpds, LPDSConfig, {"lagrange": False, "learn_scale": False},
                              "ablation: LP-DS with α fixed at 0 and no bound"),
    "lpds-gauss": Method(_build_lpds, LPDSConfig, {"lagrange": True, "learn_scale": True},
                         "variant: w = μ(s) + σ(s)·ε under E[2 KL(N(μ, σ²) ‖ N(0, I))] ≤ δ"),
    "dsrl": Method(_build_dsrl, DSRLConfig, {"noise_aliasing": True},
                   "DSRL-NA: tanh-bounded SAC latent actor on a distilled noise critic"),
    "dsrl-sac": Method(_build_dsrl, DSRLConfig, {"noise_aliasing": False},
                       "DSRL-SAC: plain SAC in noise space (decoder inside the env)"),
    "residual": Method(_build_residual, ResidualConfig, {}, "SAC on a bounded action residual"),
}


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise LpdsError(f"unknown steering method {name!r}; valid methods: {', '.join(METHODS)}") from None


def method_config(name: str, config: AgentConfig | None = None, task: str | None = None,
                  delta: float | None = None) -> AgentConfig:
    """The full config of method ``name``: ``config`` (or the defaults) with the method's fixed fields,
    and for LP-DS δ resolved: ``delta`` if given, else the config's, else the task's ``TASK_DELTA``."""
    method = get_method(name)
    if config is None:
        config = method.config_class()
    elif type(config) is not method.config_class:
        raise LpdsError(f"method {name!r} takes a {method.config_class.__name__}, got {type(config).__name__}")
    for key, value in method.fixed.items():
        if getattr(config, key) != value and getattr(config, key) != getattr(method.config_class(), key):
            raise LpdsError(f"{method.config_class.__name__}.{key} = {getattr(config, key)!r} contradicts method {name!r}")
    config = dataclasses.replace(config, **method.fixed)
    if isinstance(config, LPDSConfig):
        resolved = delta if delta is not None else config.delta
        if resolved is None:
            resolved = task_delta(task or "")
        config = dataclasses.replace(config, delta=float(resolved))
    return config


def make_agent(name: str, decoder: Any, config: AgentConfig | None = None, seed: int = 0, device: str = "cpu",
               task: str | None = None, delta: float | None = None):
    """Build method ``name`` on a frozen ``decoder``; see ``method_config`` for how the config is completed."""
    method = get_method(name)
    return method.build(decoder, method_config(name, config, task, delta), seed, device)
