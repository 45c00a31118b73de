"""Gymnasium tasks by name: ``make_env("franka-lift")``.

``TASKS`` is the one registry (a dict literal); entry points are imported when a task is made, so importing
this package does not load MuJoCo.  Horizons (``max_episode_steps``, at 20 Hz) leave about twice the noise-free
scripted demonstrator's longest episode (100 episodes each, ``python -m lpds_ros.data.scripted``):

    task               horizon        demonstrator, noise 0        noise 0.1
    franka-lift        100 (5 s)      33 steps (max 35)            37 steps (max 78)
    franka-pickplace   200 (10 s)     73 steps (max 87)            86 steps
    franka-insert      200 (10 s)     70 steps (max 83)            100 steps

The action, observation, reward and reset contract is documented in :mod:`lpds_ros.envs.franka_tasks`.

Gymnasium locomotion (``hopper``, ``walker2d``, ``halfcheetah``: the v5 envs, horizon 1000) and Adroit
(``adroit-pen`` 100, ``adroit-door``/``-hammer``/``-relocate`` 200: gymnasium-robotics v1) follow the same contract
through the wrappers of :mod:`lpds_ros.envs.gym_tasks` (dense reward; see there for termination and success).
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any

from lpds_ros.errors import LpdsError


@dataclass(frozen=True)
class TaskSpec:
    """How to build one task."""

    entry_point: str
    """``"module:Class"`` of the gymnasium env, imported when the task is made."""
    max_episode_steps: int
    """Horizon: the ``TimeLimit`` truncates the episode after this many control steps."""
    gym_id: str
    """The id ``register_gym_ids()`` registers with gymnasium."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Default constructor kwargs (``make_env`` kwargs override them)."""


TASKS: dict[str, TaskSpec] = {
    "franka-lift": TaskSpec("lpds_ros.envs.franka_tasks:FrankaLift", 100, "lpds/FrankaLift-v0"),
    "franka-pickplace": TaskSpec("lpds_ros.envs.franka_tasks:FrankaPickPlace", 200, "lpds/FrankaPickPlace-v0"),
    "franka-insert": TaskSpec("lpds_ros.envs.franka_tasks:FrankaInsert", 200, "lpds/FrankaInsert-v0"),
    # Wrapped gymnasium / gymnasium-robotics tasks (lpds_ros.envs.gym_tasks); horizons are the usual ones
    # (D4RL's 100 for the pen, gymnasium-robotics' 200 for the other Adroit tasks).
    "hopper": TaskSpec("lpds_ros.envs.gym_tasks:Hopper", 1000, "lpds/Hopper-v0"),
    "walker2d": TaskSpec("lpds_ros.envs.gym_tasks:Walker2d", 1000, "lpds/Walker2d-v0"),
    "halfcheetah": TaskSpec("lpds_ros.envs.gym_tasks:HalfCheetah", 1000, "lpds/HalfCheetah-v0"),
    "adroit-pen": TaskSpec("lpds_ros.envs.gym_tasks:AdroitPen", 100, "lpds/AdroitPen-v0"),
    "adroit-door": TaskSpec("lpds_ros.envs.gym_tasks:AdroitDoor", 200, "lpds/AdroitDoor-v0"),
    "adroit-hammer": TaskSpec("lpds_ros.envs.gym_tasks:AdroitHammer", 200, "lpds/AdroitHammer-v0"),
    "adroit-relocate": TaskSpec("lpds_ros.envs.gym_tasks:AdroitRelocate", 200, "lpds/AdroitRelocate-v0"),
}
FRANKA_TASKS = [name for name in TASKS if name.startswith("franka-")]
GYM_TASKS = [name for name in TASKS if not name.startswith("franka-")]


def task_spec(task: str) -> TaskSpec:
    """The spec of ``task``; an unknown name raises ``LpdsError`` listing the valid ones."""
    try:
        return TASKS[task]
    except KeyError:
        raise LpdsError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}") from None


def env_class(task: str) -> type:
    """The env class of ``task`` (imports its module), e.g. for ``env_class(task).layout()`` without an env."""
    module, name = task_spec(task).entry_point.split(":")
    return getattr(importlib.import_module(module), name)


def _check_kwargs(task: str, kwargs: dict[str, Any]) -> None:
    cls = env_class(task)
    if hasattr(cls, "options"):  # the wrapped gymnasium tasks declare theirs
        valid = list(cls.options)
    else:
        from lpds_ros.envs.franka_tasks import FrankaTaskConfig

        valid = ["render_mode"] + [f.name for f in dataclasses.fields(FrankaTaskConfig)]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise LpdsError(f"{task}: unknown option(s) {unknown}; valid options: {valid}")


def make_env(task: str, **kwargs: Any):
    """A new env for ``task`` (a ``TASKS`` name) wrapped in ``TimeLimit(max_episode_steps)``.

    kwargs: ``render_mode`` (None or "rgb_array") and the fields of ``FrankaTaskConfig``
    (dense_reward, action_scale, max_lead, render_width, render_height, camera); for the wrapped gymnasium
    tasks ``GymTask.options`` (terminate_on_success, render_width, render_height).
    """
    from gymnasium.wrappers import TimeLimit

    spec = task_spec(task)
    cls = env_class(task)
    merged = {**spec.kwargs, **kwargs}
    _check_kwargs(task, merged)
    return TimeLimit(cls(**merged), max_episode_steps=spec.max_episode_steps)


def make_vector_env(task: str, num_envs: int, seed: int | None = None, **kwargs: Any):
    """``num_envs`` copies of ``make_env(task, **kwargs)`` in one process (gymnasium ``SyncVectorEnv``,
    default next-step autoreset).  With ``seed``, the envs are reset once with ``seed`` (env i gets
    ``seed + i``) and the action space is seeded, so the caller's later ``reset()`` calls are reproducible."""
    from gymnasium.vector import SyncVectorEnv

    task_spec(task)
    if num_envs < 1:
        raise LpdsError(f"num_envs must be >= 1, got {num_envs}")
    envs = SyncVectorEnv([lambda: make_env(task, **kwargs) for _ in range(num_envs)])
    if seed is not None:
        envs.reset(seed=seed)
        envs.action_space.seed(seed)
    return envs


def register_gym_ids() -> list[str]:
    """Register every task with gymnasium (``gymnasium.make("lpds/FrankaLift-v0")``); idempotent.

    Returns the registered ids.  Nothing is registered on import: call this where ``gymnasium.make`` is wanted.
    """
    import gymnasium

    ids = []
    for spec in TASKS.values():
        if spec.gym_id not in gymnasium.registry:
            gymnasium.register(id=spec.gym_id, entry_point=spec.entry_point,
                               max_episode_steps=spec.max_episode_steps, kwargs=dict(spec.kwargs))
        ids.append(spec.gym_id)
    return ids


__all__ = ["FRANKA_TASKS", "GYM_TASKS", "TASKS", "TaskSpec", "env_class", "make_env", "make_vector_env", "register_gym_ids", "task_spec"]
