"""Gymnasium locomotion (Hopper, Walker2d, HalfCheetah v5) and Adroit hand tasks behind the Franka tasks' contract.

Tasks (CLI names; horizons live in ``lpds_ros.envs.TASKS``):

    task             wraps                   obs  action  horizon  info["success"]
    hopper           Hopper-v5               11   3       1000     never (locomotion has no success event)
    walker2d         Walker2d-v5             17   6       1000     never
    halfcheetah      HalfCheetah-v5          17   6       1000     never
    adroit-pen       AdroitHandPen-v1        45   24      100      pen within 7.5 cm of the target, orientation cos > 0.95
    adroit-door      AdroitHandDoor-v1       39   28      200      door hinge opened >= 1.35 rad
    adroit-hammer    AdroitHandHammer-v1     46   26      200      nail within 1 cm of its goal (driven in)
    adroit-relocate  AdroitHandRelocate-v1   39   30      200      ball within 10 cm of the target

Contract (the same as :mod:`lpds_ros.envs.franka_tasks`):

* **Action** ``Box(-1, 1, (d,), float32)``, clipped, mapped linearly onto the wrapped env's action box (all seven
  already use [-1, 1]: the v5 locomotion actuators' ctrlrange, and Adroit's own rescaling to its actuators).
  A wrong shape or a non-finite value is an ``LpdsError``.
* **Observation**: the wrapped env's observation as flat float32; ``obs_layout`` names its parts (locomotion:
  ``qpos`` without the root's x, then ``qvel``, which Hopper/Walker2d v5 clip to ±10; Adroit: one ``state``
  block in the order gymnasium-robotics documents).
* **Reward**: the wrapped env's dense reward, unchanged (locomotion: forward + healthy − control;
  Adroit: the "dense" variant), so returns compare with the published numbers.
* **Termination**: locomotion ends on the env's own termination (Hopper/Walker2d fall: unhealthy; HalfCheetah
  never).  Adroit never terminates on its own; by default it does **not** terminate on success either
  (``terminate_on_success=False``): the dense reward keeps paying +10/+50 while the goal is held, so ending
  the episode on success would make success cost return, and the standard Adroit protocol runs every
  episode to the horizon.  ``info["success"]`` turns True once the goal has been achieved on ``success_hold``
  steps of the episode (DAPG's criterion: 20 for the pen, 25 for the others; ``success_hold=1`` is the raw
  per-step signal): the pen swings through its target now and then under random actions (50 seeded
  episodes: 14% any-step success with ``success_hold=1``, 2% with 20), and with zero action 8% of episodes
  succeed either way (targets drawn near the start orientation).  An episode succeeds if the signal was
  True at any step (what the evaluator records).
  ``terminate_on_success=True`` gives the Franka convention instead.
* **Reset**: ``reset(seed=s)`` seeds the wrapped env's ``np_random``: bit-for-bit reproducible.
* Truncation comes from the ``TimeLimit`` that ``make_env`` adds (the wrapped env is built without one).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from lpds_ros.errors import LpdsError

ENV_VERSION = 1  #: bumped whenever observations, rewards or success change (stored in env_meta)


@dataclass(frozen=True)
class WrappedSpec:
    gym_id: str
    """The id of the wrapped env in gymnasium / gymnasium-robotics."""
    entry_point: str
    """``module:Class`` of the wrapped env (imported directly: no registration needed)."""
    family: str
    """``locomotion`` or ``adroit``."""
    obs_layout: tuple[tuple[str, int], ...]
    success: str
    env_kwargs: tuple[tuple[str, Any], ...] = ()
    success_hold: int = 1
    """Default steps the goal must have been achieved in the episode before ``info["success"]`` turns True
    (DAPG's Adroit criterion: more than 20 of the pen's steps, 25 of the others')."""


WRAPPED: dict[str, WrappedSpec] = {
    "hopper": WrappedSpec("Hopper-v5", "gymnasium.envs.mujoco.hopper_v5:HopperEnv", "locomotion",
                          (("qpos", 5), ("qvel", 6)), "none (locomotion): always False"),
    "walker2d": WrappedSpec("Walker2d-v5", "gymnasium.envs.mujoco.walker2d_v5:Walker2dEnv", "locomotion",
                            (("qpos", 8), ("qvel", 9)), "none (locomotion): always False"),
    "halfcheetah": WrappedSpec("HalfCheetah-v5", "gymnasium.envs.mujoco.half_cheetah_v5:HalfCheetahEnv", "locomotion",
                               (("qpos", 8), ("qvel", 9)), "none (locomotion): always False"),
    "adroit-pen": WrappedSpec("AdroitHandPen-v1", "gymnasium_robotics.envs.adroit_hand.adroit_pen:AdroitHandPenEnv",
                              "adroit", (("state", 45),),
                              "pen within 7.5 cm of the target and orientation cosine > 0.95",
                              (("reward_type", "dense"),), 20),
    "adroit-door": WrappedSpec("AdroitHandDoor-v1", "gymnasium_robotics.envs.adroit_hand.adroit_door:AdroitHandDoorEnv",
                               "adroit", (("state", 39),), "door hinge angle >= 1.35 rad", (("reward_type", "dense"),), 25),
    "adroit-hammer": WrappedSpec("AdroitHandHammer-v1",
                                 "gymnasium_robotics.envs.adroit_hand.adroit_hammer:AdroitHandHammerEnv",
                                 "adroit", (("state", 46),), "nail within 1 cm of its goal (driven in)",
                                 (("reward_type", "dense"),), 25),
    "adroit-relocate": WrappedSpec("AdroitHandRelocate-v1",
                                   "gymnasium_robotics.envs.adroit_hand.adroit_relocate:AdroitHandRelocateEnv",
                                   "adroit", (("state", 39),), "ball within 10 cm of the target",
                                   (("reward_type", "dense"),), 25),
}


def _build_inner(spec: WrappedSpec, render_mode: str | None, width: int, height: int):
    """The wrapped env, without gymnasium's TimeLimit/checker wrappers.  The v5 Walker2d/HalfCheetah XMLs use
    MuJoCo's deprecated ``settotalmass``; that one compile warning (otherwise printed and appended to
    ./MUJOCO_LOG.TXT on every env built) is dropped, any other warning goes to the previous handler or stderr."""
    import contextlib
    import io
    import sys

    import mujoco

    module, name = spec.entry_point.split(":")
    # gymnasium-robotics prints a notice on import: the Door/Hammer/Relocate dense rewards changed in 1.2.1
    # without a version bump (docs/gym_adroit.md records the version used); keep it off every CLI run.
    with contextlib.redirect_stderr(io.StringIO()):
        cls = getattr(importlib.import_module(module), name)
    extra = {"width": width, "height": height} if render_mode else {}
    previous = mujoco.get_mju_user_warning()

    def on_warning(message: str) -> None:
        if "settotalmass" in message:
            return
        if previous is not None:
            previous(message)
        else:
            print(f"MuJoCo warning: {message}", file=sys.stderr)

    mujoco.set_mju_user_warning(on_warning)
    try:
        return cls(render_mode=render_mode, **dict(spec.env_kwargs), **extra)
    finally:
        mujoco.set_mju_user_warning(previous)


class GymTask(gym.Env):
    """A wrapped gymnasium / gymnasium-robotics env with the project's task contract; subclasses name the task."""

    metadata = {"render_modes": ["rgb_array"]}
    task_name: str = ""
    options: tuple[str, ...] = ("render_mode", "terminate_on_success", "success_hold", "render_width", "render_height")
    """The keyword options ``make_env`` accepts for this task."""

    def __init__(self, render_mode: str | None = None, terminate_on_success: bool = False,
                 success_hold: int | None = None, render_width: int = 256, render_height: int = 256) -> None:
        if render_mode not in (None, "rgb_array"):
            raise LpdsError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if not isinstance(terminate_on_success, bool):
            raise LpdsError(f"terminate_on_success must be true or false, got {terminate_on_success!r}")
        if not (16 <= render_width <= 1024 and 16 <= render_height <= 1024):
            raise LpdsError(f"render_width/render_height must be in [16, 1024], got {render_width}x{render_height}")
        self.spec_ = spec = WRAPPED[self.task_name]
        if success_hold is None:
            success_hold = spec.success_hold
        if isinstance(success_hold, bool) or not isinstance(success_hold, int) or success_hold < 1:
            raise LpdsError(f"success_hold must be a positive integer (steps), got {success_hold!r}")
        self.family = spec.family
        self.render_mode = render_mode
        self.kwargs = {"terminate_on_success": terminate_on_success, "success_hold": success_hold,
                       "render_width": render_width, "render_height": render_height}
        self._goal_steps = 0
        self.env = _build_inner(spec, render_mode, render_width, render_height)
        self.obs_layout: dict[str, int] = dict(spec.obs_layout)
        self.obs_dim = sum(self.obs_layout.values())
        if self.env.observation_space.shape != (self.obs_dim,):
            raise LpdsError(f"{self.task_name}: {spec.gym_id} observes {self.env.observation_space.shape}, "
                            f"expected ({self.obs_dim},); incompatible gymnasium version")
        inner = self.env.action_space
        self.action_dim = int(inner.shape[0])
        self._low, self._high = inner.low.astype(np.float64), inner.high.astype(np.float64)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.action_dim,), np.float32)

    @classmethod
    def layout(cls) -> dict[str, int]:
        return dict(WRAPPED[cls.task_name].obs_layout)

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs, _ = self.env.reset(seed=seed)
        self._goal_steps = 0
        return np.asarray(obs, dtype=np.float32), {"success": False}

    def step(self, action):
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (self.action_dim,):
            raise LpdsError(f"{self.task_name}: action must have shape ({self.action_dim},), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise LpdsError(f"{self.task_name}: action has non-finite values")
        a = np.clip(a, -1.0, 1.0)
        inner = self._low + (a + 1.0) * 0.5 * (self._high - self._low)
        obs, reward, terminated, truncated, info = self.env.step(inner)
        self._goal_steps += bool(info.get("success", False))
        success = self._goal_steps >= self.kwargs["success_hold"]
        if self.kwargs["terminate_on_success"] and success:
            terminated = True
        return (np.asarray(obs, dtype=np.float32), float(reward), bool(terminated), bool(truncated),
                {"success": success})

    # ------------------------------------------------------------------ pickling (exact resume)
    # The wrapped envs pickle through gymnasium's EzPickle, which rebuilds a fresh, un-reset env: a snapshot
    # would silently lose the episode.  Pickle the simulation state instead: the MjData (the loop's
    # ``envstate`` turns it into MuJoCo's integration state), the model fields the Adroit resets randomise
    # (body/site placements), and the wrapped env's plain attributes (its RNG, pen lengths, ...).
    _MODEL_FIELDS = ("body_pos", "body_quat", "site_pos", "site_quat")

    def __getstate__(self):
        state = {k: v for k, v in self.__dict__.items() if k != "env"}
        inner = {k: v for k, v in self.env.__dict__.items()
                 if isinstance(v, (bool, int, float, np.ndarray, np.generic, np.random.Generator))}
        model = {name: getattr(self.env.model, name).copy() for name in self._MODEL_FIELDS}
        state["_inner"] = {"attrs": inner, "model": model, "data": self.env.data}
        return state

    def __setstate__(self, state):
        import mujoco

        inner = state.pop("_inner")
        self.__dict__.update(state)
        self.env = env = _build_inner(self.spec_, self.render_mode, self.kwargs["render_width"],
                                      self.kwargs["render_height"])
        env.__dict__.update(inner["attrs"])
        for field, value in inner["model"].items():
            getattr(env.model, field)[:] = value
        saved = inner["data"]
        what = mujoco.mjtState.mjSTATE_INTEGRATION
        buf = np.empty(mujoco.mj_stateSize(saved.model, what))
        mujoco.mj_getState(saved.model, saved, buf, what)
        mujoco.mj_setState(env.model, env.data, buf, what)
        mujoco.mj_forward(env.model, env.data)

    def render(self):
        if self.render_mode is None:
            return None
        try:
            return self.env.render()
        except Exception as exc:  # noqa: BLE001 - no GL context on a headless box
            raise LpdsError(f"offscreen rendering failed ({exc.__class__.__name__}: {exc}); set MUJOCO_GL=egl or osmesa") from None

    def close(self):
        self.env.close()

    # ------------------------------------------------------------------ description
    def env_meta(self) -> dict:
        """JSON-safe description of this env (stored in demo files and policy configs)."""
        from lpds_ros.envs import TASKS

        spec = self.spec_
        termination = ("the wrapped env's own (falling / unhealthy)" if self.task_name != "halfcheetah" else "never")
        if spec.family == "adroit":
            termination = "on success" if self.kwargs["terminate_on_success"] else "never (runs to the horizon)"
        return {
            "task": self.task_name,
            "env_class": type(self).__name__,
            "env_version": ENV_VERSION,
            "wrapped_env": spec.gym_id,
            "family": spec.family,
            "kwargs": dict(self.kwargs),
            "max_episode_steps": TASKS[self.task_name].max_episode_steps,
            "control_dt": float(self.env.dt),
            "obs_layout": dict(self.obs_layout),
            "obs_dim": self.obs_dim,
            "action": {"dim": self.action_dim, "low": -1.0, "high": 1.0,
                       "semantics": f"{spec.gym_id}'s action box, mapped linearly from [-1, 1]"},
            "reward": f"{spec.gym_id}'s dense reward",
            "success": (f"{spec.success}, at {self.kwargs['success_hold']} or more steps of the episode so far"
                        if spec.family == "adroit" else spec.success),
            "termination": termination,
        }


def _task_class(task: str, class_name: str) -> type:
    return type(class_name, (GymTask,), {"task_name": task, "__module__": __name__,
                                         "__doc__": f"``{task}``: {WRAPPED[task].gym_id} (see the module docstring)."})


Hopper = _task_class("hopper", "Hopper")
Walker2d = _task_class("walker2d", "Walker2d")
HalfCheetah = _task_class("halfcheetah", "HalfCheetah")
AdroitPen = _task_class("adroit-pen", "AdroitPen")
AdroitDoor = _task_class("adroit-door", "AdroitDoor")
AdroitHammer = _task_class("adroit-hammer", "AdroitHammer")
AdroitRelocate = _task_class("adroit-relocate", "AdroitRelocate")
