"""Steering a frozen generative policy online: LP-DS, its baselines, the loop and the benchmark.

    from lpds_ros.steering import make_agent, train, FinetuneConfig
    agent = make_agent("lpds", decoder, task="franka-lift")      # w = ε + Δ_θ(s) under E‖Δ‖² ≤ δ
    metrics = agent.update(batch)                                # {"critic/td_loss": ..., "dual/alpha": ...}
    result = train(FinetuneConfig(task="franka-lift", policy="models/franka-lift-diffusion", method="lpds"))

Importing this package is cheap (no torch): names are loaded on first use.
Modules: ``config`` (dataclasses, δ per task), ``registry`` (method names), ``agent`` (base class and the
shared TD / distillation steps), ``lpds``, ``dsrl``, ``residual``, ``base``, ``networks``, ``buffer``,
``entropy`` (k-NN estimator), ``loop`` (online loop, checkpoints), ``ros_learner`` (the same loop fed by
the ROS sim graph, with hot swap: ``lpds finetune --via-ros``), ``bench`` (the comparison table),
``toy`` (a bimodal toy decoder and tasks).
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "METHODS": "lpds_ros.steering.registry",
    "make_agent": "lpds_ros.steering.registry",
    "get_method": "lpds_ros.steering.registry",
    "FinetuneConfig": "lpds_ros.steering.config",
    "LPDSConfig": "lpds_ros.steering.config",
    "DSRLConfig": "lpds_ros.steering.config",
    "ResidualConfig": "lpds_ros.steering.config",
    "BaseConfig": "lpds_ros.steering.config",
    "TASK_DELTA": "lpds_ros.steering.config",
    "ReplayBuffer": "lpds_ros.steering.buffer",
    "knn_entropy": "lpds_ros.steering.entropy",
    "entropy_ratio": "lpds_ros.steering.entropy",
    "train": "lpds_ros.steering.loop",
    "load_agent": "lpds_ros.steering.loop",
    "load_steering": "lpds_ros.steering.loop",
    "load_steering_act_fn": "lpds_ros.steering.loop",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lpds_ros.steering' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
