"""The simulated arm as the robot computer presents it: absolute TCP targets in, gripper goals with
franka_gripper's semantics, a robot mode, episodes with a seed and a success flag.  No ROS here: the ROS
``sim_node`` is a thin shell over ``SimBridge`` (and the tests drive it directly).

* **Arm**: ``set_target(position, quaternion)`` is what crisp_controllers' ``target_pose`` is; the
  ``FrankaSim`` core tracks it compliantly (clipped-error differential IK on the Panda's joint servos).
* **Time**: ``step`` advances one control period (20 Hz, 25 x 2 ms physics steps); ``taps`` splits it so a
  state can be published in between (the robot state at 50 Hz).  ``time`` is monotonic across episodes.
* **Gripper** (franka_gripper's actions): ``start_gripper("move", width)`` drives the fingers to a width,
  ``"grasp"`` closes them until they stop and succeeds only if the width they stopped at lies in
  (width - epsilon_inner, width + epsilon_outer), as libfranka's ``Gripper::grasp``; ``"homing"`` opens
  fully.  A goal ends when the fingers have stopped (speed below ``stop_speed`` for ``stop_steps``
  control steps) or after ``timeout_s``.  A new goal preempts the running one.  The requested speed is
  not modelled: the simulated fingers close at their servo's own pace (about 0.5 s).
* **Robot mode** (franka_msgs FrankaRobotState.robot_mode): IDLE after a reset, MOVE once a target is
  followed, REFLEX / USER_STOPPED when injected (``inject_fault``) -- the arm then stops where it is and
  ignores targets until ``recover`` (franka's ErrorRecovery) or a reset.
* **Episodes**: ``reset(seed)`` is the task's ``reset(seed=seed)`` (same objects, same poses as the gym
  loop); an episode ends on success or after the task's horizon.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lpds_ros.envs import FRANKA_TASKS, TASKS, make_env
from lpds_ros.envs.franka_sim import (
    ARM_JOINTS,
    CONTROL_DT,
    FINGER_OPEN,
    PHYSICS_DT,
    SUBSTEPS,
)
from lpds_ros.errors import LpdsError
from lpds_ros.frames import DOWN_QUAT_XYZW, canonical_quat

#: franka_msgs/FrankaRobotState robot_mode values used by the sim.
MODE_IDLE, MODE_MOVE, MODE_REFLEX, MODE_USER_STOPPED = 1, 2, 4, 5
FAULTS = {"reflex": MODE_REFLEX, "user_stopped": MODE_USER_STOPPED}
GRIPPER_KINDS = ("move", "grasp", "homing")
MAX_WIDTH = 2.0 * FINGER_OPEN  #: m, fully open
#: Franka's joint angles = the MJCF's + these.  The gymnasium-robotics Panda builds links 6 and 7 with extra
#: fixed rotations (joint 6 range -1.66..2.11 instead of Franka's -0.02..3.75), so its joints 6 and 7 read
#: pi/2 and pi/4 less than a real Panda / FR3 in the same pose.  The bridge reports Franka's convention
#: (what franka_ros2 publishes, what the safety filter's kinematics use); the gym tasks observe the MJCF's.
JOINT_OFFSETS = np.array([0.0, 0.0, 0.0, 0.0, 0.0, np.pi / 2, np.pi / 4])


@dataclass
class GripperGoal:
    """One gripper goal and, once ``done``, its result (franka_msgs Grasp/Move/Homing result fields)."""

    kind: str
    width: float = MAX_WIDTH
    epsilon_inner: float = 0.005
    epsilon_outer: float = 0.005
    force: float = 0.0
    started: float = 0.0  # sim time
    done: bool = False
    success: bool = False
    error: str = ""
    still_steps: int = 0
    final_width: float = float("nan")


@dataclass
class StepReport:
    time: float
    steps: int  # control steps in this episode
    success: bool  # the task's success this step
    done: bool  # the episode is over (success or horizon)
    finished_goals: list[GripperGoal] = field(default_factory=list)
    reward: float = 0.0  # the task's reward for this step (as the gym task's ``step`` returns it)
    terminated: bool = False  # the episode ended on success (gymnasium's terminated)
    truncated: bool = False  # the episode ended at the horizon without success (gymnasium's truncated)


class SimBridge:
    """A Franka task (``lpds_ros.envs.TASKS``) driven the way the robot computer is driven."""

    def __init__(self, task: str = "franka-lift", gripper_timeout_s: float = 3.0, stop_speed: float = 0.005,
                 stop_steps: int = 2, apply_grasp_force: bool = False, max_episode_steps: int | None = None):
        if task not in FRANKA_TASKS:
            raise LpdsError(f"unknown task {task!r}; valid tasks: {', '.join(FRANKA_TASKS)}")
        self.task_name = task
        self.env = make_env(task)
        self.task = self.env.unwrapped
        self.sim = self.task.sim
        self.max_episode_steps = int(max_episode_steps or TASKS[task].max_episode_steps)
        self.gripper_timeout_s, self.stop_speed, self.stop_steps = gripper_timeout_s, stop_speed, stop_steps
        self.apply_grasp_force = apply_grasp_force
        self.object_body = self.task.object_body
        m = self.sim.model
        self._arm_dofs = np.array([m.jnt_dofadr[m.joint(j).id] for j in ARM_JOINTS])
        self._finger_acts = [m.actuator(n).id for n in ("r_gripper_finger_joint", "l_gripper_finger_joint")]
        self._default_forcerange = m.actuator_forcerange[self._finger_acts].copy()
        self.time = 0.0
        self.robot_mode = MODE_IDLE
        self.seed: int | None = None
        self.episode = -1
        self.steps = 0
        self.success = False
        self.done = True  # no episode until reset()
        self.goal: GripperGoal | None = None
        self.min_object_distance = float("inf")  # closest TCP-object distance this episode (m)
        self._last_width = self.sim.gripper_width()

    # ------------------------------------------------------------------ episodes
    def reset(self, seed: int) -> list[GripperGoal]:
        """Start an episode: the task's ``reset(seed=seed)``, robot mode IDLE.  Returns a running gripper
        goal, aborted (its action must report failure)."""
        aborted = self._end_goal(False, "episode reset") if self.goal is not None else []
        if self.episode >= 0:  # one control period between episodes: every stamp names one state
            self.time = round(self.time + CONTROL_DT, 9)
        self.env.reset(seed=int(seed))
        self.sim.model.actuator_forcerange[self._finger_acts] = self._default_forcerange
        self.seed, self.episode = int(seed), self.episode + 1
        self.steps, self.success, self.done = 0, False, False
        self.min_object_distance = float(np.linalg.norm(self.ee_pose()[0] - self.object_pose()[0]))
        self.robot_mode = MODE_IDLE
        self._last_width = self.sim.gripper_width()
        return aborted

    # ------------------------------------------------------------------ commands
    def set_target(self, position, orientation_xyzw) -> bool:
        """Follow a new TCP target (base frame, quaternion x y z w).  False (ignored) in REFLEX/USER_STOPPED."""
        if self.robot_mode in (MODE_REFLEX, MODE_USER_STOPPED):
            return False
        self.sim.set_target(position, orientation_xyzw, None)
        self.robot_mode = MODE_MOVE
        return True

    def start_gripper(self, kind: str, width: float = MAX_WIDTH, epsilon_inner: float = 0.005,
                      epsilon_outer: float = 0.005, force: float = 0.0) -> tuple[GripperGoal, list[GripperGoal]]:
        """Start a gripper goal; returns it and the preempted goal (if one was running), already ended."""
        if kind not in GRIPPER_KINDS:
            raise ValueError(f"gripper goal kind must be one of {GRIPPER_KINDS}, got {kind!r}")
        values = np.array([width, epsilon_inner, epsilon_outer, force], dtype=np.float64)
        if not np.isfinite(values).all() or width < 0 or epsilon_inner < 0 or epsilon_outer < 0 or force < 0:
            raise ValueError(f"gripper goal values must be finite and >= 0, got {values.tolist()}")
        preempted = self._end_goal(False, "preempted by a new goal") if self.goal is not None else []
        goal = GripperGoal(kind, float(width), float(epsilon_inner), float(epsilon_outer), float(force), self.time)
        if kind == "homing":
            closed = 0.0
        elif kind == "grasp":
            closed = 1.0
            if self.apply_grasp_force and force > 0:
                limit = min(force, float(self._default_forcerange[0, 1]))
                self.sim.model.actuator_forcerange[self._finger_acts] = [-limit, limit]
        else:
            closed = 1.0 - float(np.clip(width / MAX_WIDTH, 0.0, 1.0))
        if kind != "grasp":
            self.sim.model.actuator_forcerange[self._finger_acts] = self._default_forcerange
        pos, quat, _ = self.sim.target()
        self.sim.set_target(pos, quat, closed)
        self.goal = goal
        return goal, preempted

    def cancel_gripper(self) -> list[GripperGoal]:
        """Stop the running goal where the fingers are (it ends unsuccessful)."""
        if self.goal is None:
            return []
        width = self.sim.gripper_width()
        pos, quat, _ = self.sim.target()
        self.sim.set_target(pos, quat, 1.0 - float(np.clip(width / MAX_WIDTH, 0.0, 1.0)))
        return self._end_goal(False, "canceled")

    def inject_fault(self, name: str) -> None:
        """Put the robot into REFLEX or USER_STOPPED: the arm stops where it is and ignores targets."""
        if name not in FAULTS:
            raise ValueError(f"fault must be one of {sorted(FAULTS)}, got {name!r}")
        self.robot_mode = FAULTS[name]
        pos, quat = self.sim.ee_pose()
        self.sim.set_target(pos, quat, None)

    def recover(self) -> bool:
        """franka's ErrorRecovery: leave REFLEX / USER_STOPPED (to IDLE).  False if there was nothing to recover."""
        if self.robot_mode not in (MODE_REFLEX, MODE_USER_STOPPED):
            return False
        self.robot_mode = MODE_IDLE
        return True

    # ------------------------------------------------------------------ time
    def taps(self, rate_hz: float) -> list[int]:
        """Substep counts that split one control period so that a state can be published at ``rate_hz``
        (on the sim-time grid, e.g. 50 Hz -> every 10 physics steps); always ends with the period's end."""
        start = int(round(self.time / PHYSICS_DT))
        cuts: list[int] = []
        if rate_hz > 0:
            every = max(1, int(round(1.0 / (rate_hz * PHYSICS_DT))))
            cuts = [k - start for k in range(start + 1, start + SUBSTEPS + 1) if k % every == 0]
        if not cuts or cuts[-1] != SUBSTEPS:
            cuts.append(SUBSTEPS)
        return cuts

    def step(self, cuts: list[int] | None = None, on_tap=None) -> StepReport:
        """Advance one control period.  ``cuts`` (from ``taps``) splits it; ``on_tap(time)`` is called at
        each cut but the last (the state there is the mid-period state).  Updates gripper goals and success."""
        if self.done:
            raise LpdsError("no episode is running: call reset(seed) first")
        self.sim.apply_control()
        start, done_substeps = self.time, 0
        for cut in cuts or [SUBSTEPS]:
            self.sim.advance(cut - done_substeps)
            done_substeps = cut
            if cut != SUBSTEPS and on_tap is not None:
                on_tap(round(start + cut * PHYSICS_DT, 9))
        self.time = round(start + CONTROL_DT, 9)
        self.steps += 1
        self.min_object_distance = min(self.min_object_distance,
                                       float(np.linalg.norm(self.ee_pose()[0] - self.object_pose()[0])))
        finished = self._update_goal()
        self.success = bool(self.task._success())
        self.done = self.success or self.steps >= self.max_episode_steps
        return StepReport(self.time, self.steps, self.success, self.done, finished, reward=float(self.task.reward(self.success)),
                          terminated=self.success, truncated=self.done and not self.success)

    def _update_goal(self) -> list[GripperGoal]:
        width = self.sim.gripper_width()
        speed = abs(width - self._last_width) / CONTROL_DT
        self._last_width = width
        goal = self.goal
        if goal is None:
            return []
        goal.still_steps = goal.still_steps + 1 if speed < self.stop_speed else 0
        elapsed = self.time - goal.started
        if goal.still_steps < self.stop_steps and elapsed < self.gripper_timeout_s:
            return []
        if goal.kind == "grasp":
            ok = goal.width - goal.epsilon_inner < width < goal.width + goal.epsilon_outer
            why = "" if ok else (f"the fingers stopped at {width * 1000:.1f} mm, outside "
                                 f"({(goal.width - goal.epsilon_inner) * 1000:.1f}, {(goal.width + goal.epsilon_outer) * 1000:.1f}) mm: no object grasped")
        else:
            target = MAX_WIDTH if goal.kind == "homing" else goal.width
            ok = abs(width - target) < 0.005
            why = "" if ok else f"the fingers stopped at {width * 1000:.1f} mm, not at {target * 1000:.1f} mm"
        if goal.still_steps < self.stop_steps:
            ok, why = False, f"timed out after {self.gripper_timeout_s} s at {width * 1000:.1f} mm"
        return self._end_goal(ok, why)

    def _end_goal(self, success: bool, error: str) -> list[GripperGoal]:
        goal = self.goal
        self.goal = None
        goal.done, goal.success, goal.error = True, bool(success), "" if success else error
        goal.final_width = self.sim.gripper_width()
        return [goal]

    # ------------------------------------------------------------------ readout
    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """TCP position and (x, y, z, w) orientation, sign as the tasks give it."""
        return self.sim.ee_pose()

    def joint_positions(self) -> np.ndarray:
        """The 7 arm joint angles in Franka's convention (the MJCF's + ``JOINT_OFFSETS``)."""
        return self.sim.joint_positions() + JOINT_OFFSETS

    def joint_velocities(self) -> np.ndarray:
        return self.sim.joint_velocities()

    def joint_efforts(self) -> np.ndarray:
        """Actuator torques on the 7 arm joints (N m; gravity is compensated in the model, not here)."""
        return self.sim.data.qfrc_actuator[self._arm_dofs].copy()

    def finger_positions(self) -> np.ndarray:
        return self.sim.finger_positions()

    def gripper_width(self) -> float:
        return self.sim.gripper_width()

    def object_pose(self) -> tuple[np.ndarray, np.ndarray]:
        return self.sim.object_pose(self.object_body)

    def target(self) -> tuple[np.ndarray, np.ndarray]:
        pos, quat, _ = self.sim.target()
        return pos, canonical_quat(quat, DOWN_QUAT_XYZW)

    def render(self, width: int, height: int, camera: str) -> np.ndarray:
        return self.sim.render(width, height, camera)

    def close(self) -> None:
        self.env.close()
