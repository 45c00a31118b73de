"""Franka manipulation tasks as gymnasium envs on top of :class:`~lpds_ros.envs.franka_sim.FrankaSim`.

Tasks (CLI names; horizons live in ``lpds_ros.envs.TASKS``):

* ``franka-lift`` (:class:`FrankaLift`): lift a 5 cm cube so that its bottom is 5 cm above the table.
* ``franka-pickplace`` (:class:`FrankaPickPlace`): put a can (6.6 cm × 10 cm cylinder) into an open bin and
  let go of it.
* ``franka-insert`` (:class:`FrankaInsert`): insert a round peg (4 cm × 10 cm) at least 3 cm deep into the
  5.1 cm square hole of a fixture (5.5 mm clearance a side, an 8 mm chamfer round the mouth): a round peg
  needs no yaw alignment, so a top-down 4-D action can do it.

Common contract:

* **Action** ``Box(-1, 1, (4,), float32)``: ``a[:3]`` moves a persistent TCP target by
  ``a[:3] · action_scale`` metres (base frame, default 0.05 m = robosuite's OSC scale, so action-noise
  levels mean what they mean in robomimic-style data) per control step; the target is then held within
  ``max_lead`` (0.02 m) per axis of the TCP — so it never drifts away while the arm lags — and inside the
  workspace box.  The arm's joint damping caps the TCP near 0.24 m/s (1.2 cm per step), reached from
  |a_i| ≈ 0.4; smaller actions move proportionally.  The gripper keeps a fixed top-down orientation.
  ``a[3] > 0`` closes the gripper, ``a[3] <= 0`` opens it (robomimic: −1 open, +1 close).  20 Hz control
  (25 × 2 ms physics steps).
* **Observation**: flat float32 ``Box``; ``obs_layout`` is the ordered key → size map (robomimic names).
  Positions in metres in the robot base frame, quaternions (x, y, z, w) (see :mod:`lpds_ros.frames`);
  ``object_to_eef_pos`` = eef_pos − object_pos; ``goal_pos`` where the task has a goal (pick-place: the
  bin's centre on its floor; insert: the hole's centre on the fixture's top face).
* **Reward**: 1.0 on the success step, else 0.0; ``dense_reward=True`` adds shaping in [0, 0.9] before
  success.  ``terminated`` is True on success; ``info["success"]`` is set every step.  Truncation comes
  from the ``TimeLimit`` that ``make_env`` adds.
* **Reset**: object start positions and yaw (and the goal fixture's position) are drawn from
  ``self.np_random``; ``reset(seed=s)`` is reproducible bit for bit.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from lpds_ros.envs.franka_sim import CONTROL_HZ, PHYSICS_DT, SUBSTEPS, FrankaSim
from lpds_ros.errors import LpdsError
from lpds_ros.frames import DOWN_QUAT_XYZW, quat_from_yaw

ENV_VERSION = 1  #: bumped whenever dynamics, observations or success change (stored in env_meta)

#: Box the TCP target is kept in (base frame, metres): in front of the robot, fingertips above the table.
WORKSPACE_LOW = np.array([0.25, -0.35, 0.01])
WORKSPACE_HIGH = np.array([0.75, 0.35, 0.40])

ROBOT_LAYOUT = {
    "robot0_joint_pos": 7,
    "robot0_joint_vel": 7,
    "robot0_eef_pos": 3,
    "robot0_eef_quat": 4,
    "robot0_gripper_width": 1,
}
OBJECT_LAYOUT = {"object_pos": 3, "object_quat": 4, "object_to_eef_pos": 3}
ACTION_SEMANTICS = [
    "dx: TCP target +x step, times action_scale metres (base frame)",
    "dy: TCP target +y step, times action_scale metres (base frame)",
    "dz: TCP target +z step, times action_scale metres (base frame)",
    "gripper: > 0 close, <= 0 open",
]


@dataclass
class FrankaTaskConfig:
    """Options shared by the Franka tasks (``make_env(task, **fields)``)."""

    dense_reward: bool = False
    """Add shaping in [0, 0.9] before success (success still gives 1.0)."""
    action_scale: float = 0.05
    """Metres the TCP target moves per control step at |a_i| = 1 (the arm itself tops out near 1.2 cm/step)."""
    max_lead: float = 0.02
    """Metres (per axis) the persistent target may lead the TCP; bounds the drift and the push into contacts
    (a larger lead does not move the arm faster, it only bends the path: ~1 cm sag at 0.03)."""
    render_width: int = 256
    """Width of ``render()`` images (pixels)."""
    render_height: int = 256
    """Height of ``render()`` images (pixels)."""
    camera: str = "frontview"
    """Scene camera for ``render()``: frontview, sideview or birdview."""

    def __post_init__(self):
        if not 0.0 < self.action_scale <= 0.1:
            raise LpdsError(f"action_scale must be in (0, 0.1] metres, got {self.action_scale}")
        if not 0.0 < self.max_lead <= 0.1:
            raise LpdsError(f"max_lead must be in (0, 0.1] metres, got {self.max_lead}")
        if not (16 <= self.render_width <= 1024 and 16 <= self.render_height <= 1024):
            raise LpdsError(f"render_width/render_height must be in [16, 1024], got {self.render_width}x{self.render_height}")
        if self.camera not in ("frontview", "sideview", "birdview"):
            raise LpdsError(f"camera must be one of frontview, sideview, birdview; got {self.camera!r}")


class FrankaTask(gym.Env):
    """The shared gymnasium plumbing; a task names its scene and object and defines reset/success/shaping."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": CONTROL_HZ}
    task_name: str = ""
    scene_file: str = ""
    object_body: str = ""
    has_goal: bool = False
    success_description: str = ""

    def __init__(self, render_mode: str | None = None, dense_reward: bool = False, action_scale: float = 0.05,
                 max_lead: float = 0.02, render_width: int = 256, render_height: int = 256, camera: str = "frontview"):
        if render_mode not in (None, "rgb_array"):
            raise LpdsError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.config = FrankaTaskConfig(dense_reward=dense_reward, action_scale=action_scale, max_lead=max_lead,
                                       render_width=render_width, render_height=render_height, camera=camera)
        self.render_mode = render_mode
        self.sim = FrankaSim(self.scene_file)
        self._obj_id = self.sim.model.body(self.object_body).id
        layout = self.layout()
        self.obs_layout: dict[str, int] = layout
        self.obs_dim = sum(layout.values())
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
        self._obs = np.zeros(self.obs_dim, dtype=np.float32)
        self._target = np.zeros(3)
        self._goal = np.zeros(3)

    @classmethod
    def layout(cls) -> dict[str, int]:
        """The ordered observation layout (key -> size) of this task, without building an env."""
        layout = {**ROBOT_LAYOUT, **OBJECT_LAYOUT}
        if cls.has_goal:
            layout["goal_pos"] = 3
        return layout

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.sim.reset()
        self._place_objects(self.np_random)
        self.sim.forward()
        self._target = self.sim.ee_pose()[0]
        self.sim.set_target(self._target, DOWN_QUAT_XYZW, 0.0)
        return self._observation(), {"success": False}

    def step(self, action):
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (4,):
            raise LpdsError(f"{self.task_name}: action must have shape (4,), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise LpdsError(f"{self.task_name}: action has non-finite values {a.tolist()}")
        a = np.clip(a, -1.0, 1.0)
        tcp = self.sim.tcp_position()
        lead = self.config.max_lead
        self._target = np.clip(self._target + a[:3] * self.config.action_scale, tcp - lead, tcp + lead)
        self._target = np.clip(self._target, WORKSPACE_LOW, WORKSPACE_HIGH)
        self.sim.set_target(self._target, DOWN_QUAT_XYZW, 1.0 if a[3] > 0.0 else 0.0)
        self.sim.step_control()
        success = self._success()
        return self._observation(), self.reward(success), success, False, {"success": success}

    def reward(self, success: bool) -> float:
        """This step's reward: 1.0 on success, else the shaping (dense) or 0.0 (the sim bridge uses it too)."""
        return 1.0 if success else (self._shaping() if self.config.dense_reward else 0.0)

    def render(self):
        if self.render_mode != "rgb_array":
            raise LpdsError(f"{self.task_name}: create the env with render_mode='rgb_array' to render")
        return self.sim.render(self.config.render_width, self.config.render_height, self.config.camera)

    def close(self):
        self.sim.close()

    # ------------------------------------------------------------------ observation and metadata
    def _observation(self) -> np.ndarray:
        sim = self.sim
        eef_pos, eef_quat = sim.ee_pose()
        obj_pos, obj_quat = sim.object_pose(self.object_body)
        parts = [sim.joint_positions(), sim.joint_velocities(), eef_pos, eef_quat, [sim.gripper_width()],
                 obj_pos, obj_quat, eef_pos - obj_pos]
        if self.has_goal:
            parts.append(self._goal)
        np.concatenate(parts, out=self._obs, casting="same_kind")
        return self._obs.copy()

    def env_meta(self) -> dict:
        """JSON-safe description of this env (stored in demo files and run results)."""
        from lpds_ros.envs import TASKS

        return {
            "task": self.task_name,
            "env_class": type(self).__name__,
            "env_version": ENV_VERSION,
            "kwargs": dataclasses.asdict(self.config),
            "max_episode_steps": TASKS[self.task_name].max_episode_steps,
            "control_hz": CONTROL_HZ,
            "physics_dt": PHYSICS_DT,
            "substeps": SUBSTEPS,
            "obs_layout": dict(self.obs_layout),
            "obs_dim": self.obs_dim,
            "action": {
                "dim": 4,
                "low": -1.0,
                "high": 1.0,
                "semantics": list(ACTION_SEMANTICS),
                "action_scale_m": self.config.action_scale,
                "max_lead_m": self.config.max_lead,
                "orientation": "fixed top-down TCP orientation, quaternion (x, y, z, w) = (1, 0, 0, 0)",
                "workspace_low": WORKSPACE_LOW.tolist(),
                "workspace_high": WORKSPACE_HIGH.tolist(),
            },
            "frames": "metres in the robot base frame; quaternions (x, y, z, w); TCP = fingertip centre",
            "reward": "dense" if self.config.dense_reward else "sparse: 1.0 on the success step, else 0.0",
            "success": self.success_description,
        }

    # ------------------------------------------------------------------ task hooks
    def _place_objects(self, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def _success(self) -> bool:
        raise NotImplementedError

    def _shaping(self) -> float:
        raise NotImplementedError

    # shared helpers
    def _place_upright(self, rng: np.random.Generator, low_xy, high_xy, yaw_range: float, z: float) -> None:
        xy = rng.uniform(low_xy, high_xy)
        yaw = rng.uniform(-yaw_range, yaw_range)
        self.sim.set_object_pose(self.object_body, [xy[0], xy[1], z], quat_from_yaw(yaw))

    def _reach_grasp(self) -> tuple[float, bool]:
        """Shaping terms: closeness of the TCP to the object in [0, 1], and whether both fingers touch it."""
        dist = np.linalg.norm(self.sim.ee_pose()[0] - self.sim.object_pose(self.object_body)[0])
        return float(1.0 - np.tanh(10.0 * dist)), self.sim.grasping(self.object_body)


class FrankaLift(FrankaTask):
    """Lift a 5 cm cube (random x, y, yaw) until its bottom is 5 cm above the table."""

    task_name = "franka-lift"
    scene_file = "franka_lift.xml"
    object_body = "cube"
    half_height = 0.025
    lift_height = 0.05
    start_low = (0.42, -0.08)
    start_high = (0.58, 0.08)
    success_description = "cube centre at least 5 cm above its resting height (bottom 5 cm above the table)"

    def _place_objects(self, rng):
        self._place_upright(rng, self.start_low, self.start_high, np.pi / 4, self.half_height)

    def _success(self):
        return bool(self.sim.data.xpos[self._obj_id, 2] >= self.half_height + self.lift_height)

    def _shaping(self):
        reach, grasp = self._reach_grasp()
        height = self.sim.object_pose(self.object_body)[0][2] - self.half_height
        lift = float(np.clip(height / self.lift_height, 0.0, 1.0)) if grasp else 0.0
        return 0.3 * reach + 0.2 * grasp + 0.4 * lift


class FrankaPickPlace(FrankaTask):
    """Pick a can (random x, y, yaw) and put it into a bin (random position); success once it rests in the
    bin and the fingers no longer hold it."""

    task_name = "franka-pickplace"
    scene_file = "franka_pickplace.xml"
    object_body = "can"
    has_goal = True
    half_height = 0.05
    start_low = (0.42, -0.20)
    start_high = (0.58, -0.08)
    bin_low = (0.47, 0.15)
    bin_high = (0.53, 0.21)
    bin_floor = 0.01  # height of the bin floor's top surface
    bin_inner = 0.08  # inner half-extent of the bin
    success_description = ("can centre within 7 cm (x and y) of the bin centre, at most 1 cm above resting on the "
                           "bin floor, and not held by both fingers")

    def _place_objects(self, rng):
        self._place_upright(rng, self.start_low, self.start_high, np.pi / 2, self.half_height)
        bin_xy = rng.uniform(self.bin_low, self.bin_high)
        self.sim.set_object_pose("bin", [bin_xy[0], bin_xy[1], 0.0], [0.0, 0.0, 0.0, 1.0])
        self._goal = np.array([bin_xy[0], bin_xy[1], self.bin_floor])

    def _in_bin(self, pos: np.ndarray) -> bool:
        return bool(np.all(np.abs(pos[:2] - self._goal[:2]) < self.bin_inner - 0.01)
                    and pos[2] < self.bin_floor + self.half_height + 0.01)

    def _success(self):
        pos = self.sim.data.xpos[self._obj_id]
        return self._in_bin(pos) and not self.sim.grasping(self.object_body)

    def _shaping(self):
        reach, grasp = self._reach_grasp()
        pos = self.sim.object_pose(self.object_body)[0]
        carry = float(1.0 - np.tanh(5.0 * np.linalg.norm(pos[:2] - self._goal[:2]))) if grasp else 0.0
        placed = 0.1 if self._in_bin(pos) else 0.0
        return 0.2 * reach + 0.2 * grasp + 0.4 * carry + placed


class FrankaInsert(FrankaTask):
    """Pick a round peg (random x, y, yaw) and insert it at least 3 cm into a fixture's hole (random position)."""

    task_name = "franka-insert"
    scene_file = "franka_insert.xml"
    object_body = "peg"
    has_goal = True
    half_height = 0.05
    start_low = (0.42, -0.18)
    start_high = (0.58, -0.06)
    fixture_low = (0.46, 0.10)
    fixture_high = (0.54, 0.16)
    fixture_top = 0.05
    hole_half = 0.0255
    depth = 0.03
    success_description = "peg centre inside the hole's footprint and its bottom at least 3 cm below the fixture top"

    def _place_objects(self, rng):
        self._place_upright(rng, self.start_low, self.start_high, np.pi / 2, self.half_height)
        xy = rng.uniform(self.fixture_low, self.fixture_high)
        self.sim.set_object_pose("fixture", [xy[0], xy[1], 0.0], [0.0, 0.0, 0.0, 1.0])
        self._goal = np.array([xy[0], xy[1], self.fixture_top])

    def _success(self):
        pos = self.sim.data.xpos[self._obj_id]
        return bool(np.all(np.abs(pos[:2] - self._goal[:2]) < self.hole_half)
                    and pos[2] - self.half_height <= self.fixture_top - self.depth)

    def _shaping(self):
        reach, grasp = self._reach_grasp()
        pos = self.sim.object_pose(self.object_body)[0]
        align = float(1.0 - np.tanh(10.0 * np.linalg.norm(pos[:2] - self._goal[:2]))) if grasp else 0.0
        down = float(np.clip((self.fixture_top + 0.03 - (pos[2] - self.half_height)) / 0.06, 0.0, 1.0)) * align
        return 0.2 * reach + 0.2 * grasp + 0.3 * align + 0.2 * down
