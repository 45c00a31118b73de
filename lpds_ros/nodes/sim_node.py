"""sim_node: the MuJoCo Franka task behind the robot computer's interfaces (``lpds_ros.envs.SimBridge``).

Subscribes  target_pose (PoseStamped; the TCP target, tracked compliantly), reset_episode (Int64 seed),
            sim_fault (String "reflex" / "user_stopped")
Publishes   current_pose (PoseStamped), /joint_states (<prefix>_joint1..7), /franka_gripper/joint_states
            (<prefix>_finger_joint1/2), robot_state (FrankaRobotState, ``robot_state_rate_hz``),
            object_pose (PoseStamped, ground truth), /clock, episode (String JSON), camera_image (optional),
            step_report (labelled vector after every control step: reward, success, terminated, truncated,
            step, episode; stamped with the state after the step -- what a learner needs besides the observation)
Serves      /franka_gripper/{homing,move,grasp} and /action_server/error_recovery (franka_msgs actions)

Time.  Lockstep (default): the sim publishes the state at sim time t, then waits until a target_pose
stamped >= t arrives (the safety filter stamps each command with the observation stamp it came from), or
``lockstep_timeout_s`` of wall time passes, then steps one control period.  Every other node runs on
/clock (use_sim_time), so the graph runs as fast as it computes and the results do not depend on the
machine's load.  Free-running (lockstep false): the sim steps at ``real_time_factor`` x real time on the
wall clock and follows whatever target arrived last.

Episodes.  A reset_episode message resets the task with that seed; the sim publishes
{"event": "start", "seed", "episode", "stamp"}, waits ``episode_settle_s`` (lockstep) so that every node
sees it before the first state, and runs until success or the task's horizon, then publishes
{"event": "end", "seed", "episode", "success", "steps", "stamp"} and (lockstep) pauses until the next reset.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

import numpy as np
from franka_msgs.action import ErrorRecovery, Grasp, Homing, Move
from franka_msgs.msg import FrankaRobotState
from geometry_msgs.msg import PoseStamped
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Int64, String

from lpds_ros.config import ConfigError
from lpds_ros.envs.franka_sim import CONTROL_DT
from lpds_ros.nodes import convert
from lpds_ros.nodes.params import (
    check_choice,
    check_positive,
    declare_params,
    param,
    run_node,
)
from lpds_ros.nodes.topics import load_topics


@dataclass(frozen=True)
class SimParams:
    topics_file: str = param("", "names YAML (empty: the package's config/topics.yaml)")
    task: str = param("franka-lift", "task name (lpds_ros.envs.TASKS)")
    arm_prefix: str = param("fr3", "joint name prefix: <prefix>_joint1..7, <prefix>_finger_joint1/2")
    base_frame: str = param("", "frame_id of the poses (empty: <prefix>_link0)")
    lockstep: bool = param(True, "step only when the command for the last state arrived (sim time on /clock)")
    lockstep_timeout_s: float = param(1.0, "lockstep: wall seconds to wait for a command before stepping anyway")
    episode_settle_s: float = param(0.05, "lockstep: wall seconds between the episode start event and its first state")
    real_time_factor: float = param(1.0, "free-running: sim seconds per wall second")
    publish_clock: bool = param(True, "publish /clock and stamp with sim time (false: stamp with this node's clock)")
    robot_state_rate_hz: float = param(50.0, "FrankaRobotState rate in sim time (0: off)")
    camera_rate_hz: float = param(0.0, "rendered camera image rate in sim time (0: off)")
    camera: str = param("frontview", "scene camera: frontview, sideview or birdview")
    camera_width: int = param(320, "image width (pixels)")
    camera_height: int = param(240, "image height (pixels)")
    auto_start: bool = param(False, "start an episode with `seed` at start-up")
    auto_reset: bool = param(False, "after an episode ends start the next one (seed + 1)")
    seed: int = param(0, "seed of the auto-started episode")
    max_episode_steps: int = param(0, "episode horizon in control steps (0: the task's)")
    gripper_timeout_s: float = param(3.0, "a gripper goal whose fingers have not stopped by then fails")
    apply_grasp_force: bool = param(False, "cap the finger force at the Grasp goal's force (off: the hand's 70 N, as the gym tasks)")

    def __post_init__(self) -> None:
        for name in ("lockstep_timeout_s", "real_time_factor", "camera_width", "camera_height", "gripper_timeout_s"):
            check_positive(self, name)
        for name in ("episode_settle_s", "robot_state_rate_hz", "camera_rate_hz", "max_episode_steps"):
            check_positive(self, name, allow_zero=True)
        check_choice(self, "camera", ("frontview", "sideview", "birdview"))
        if not self.arm_prefix:
            raise ConfigError("SimParams.arm_prefix must not be empty")
        if self.lockstep and not self.publish_clock:
            raise ConfigError("SimParams: lockstep needs publish_clock (the other nodes run on /clock)")


class SimNode(Node):
    """The simulated FR3 (a Panda model) with franka_ros2's and crisp_controllers' interfaces."""

    def __init__(self, **kwargs):
        super().__init__("sim_node", **kwargs)
        from lpds_ros.envs.sim_bridge import (
            SimBridge,  # MuJoCo: only when the node is made
        )

        self.params = p = declare_params(self, SimParams)
        self.topics = t = load_topics(p.topics_file or None)
        self.bridge = SimBridge(p.task, gripper_timeout_s=p.gripper_timeout_s, apply_grasp_force=p.apply_grasp_force,
                                max_episode_steps=p.max_episode_steps or None)
        self.frame = p.base_frame or f"{p.arm_prefix}_link0"
        self.joint_names = [f"{p.arm_prefix}_joint{i}" for i in range(1, 8)]
        self.finger_names = [f"{p.arm_prefix}_finger_joint{i}" for i in (1, 2)]
        self._lock = threading.Lock()  # guards the bridge
        self._stepped = threading.Condition(self._lock)  # notified after every step / goal end
        self._wake = threading.Event()  # a command, reset or shutdown arrived
        self._command_stamp = -np.inf
        self._pending_reset: int | None = p.seed if p.auto_start else None
        self._pending_fault: str | None = None
        self._running = True
        self._goals: dict[int, object] = {}
        #: (state stamp, wall time it was published) of the last steps: the benchmark's latency probe
        self.state_wall: dict[float, float] = {}
        self.lockstep_timeouts = 0
        self._state_rate, self._camera_rate = _Rate(p.robot_state_rate_hz), _Rate(p.camera_rate_hz)

        self.pub_pose = self.create_publisher(PoseStamped, t.current_pose, 10)
        self.pub_joints = self.create_publisher(JointState, t.joint_states, 10)
        self.pub_fingers = self.create_publisher(JointState, t.gripper_joint_states, 10)
        self.pub_object = self.create_publisher(PoseStamped, t.object_pose, 10)
        self.pub_state = self.create_publisher(FrankaRobotState, t.robot_state, 10)
        self.pub_clock = self.create_publisher(Clock, t.clock, 10) if p.publish_clock else None
        self.pub_episode = self.create_publisher(String, t.episode, 10)
        self.pub_step = self.create_publisher(JointState, t.step_report, 100)
        self.pub_image = self.create_publisher(Image, t.camera_image, 2) if p.camera_rate_hz > 0 else None
        self.create_subscription(PoseStamped, t.target_pose, self._on_target, 10)
        self.create_subscription(Int64, t.reset_episode, self._on_reset, 10)
        self.create_subscription(String, t.sim_fault, self._on_fault, 10)
        group = ReentrantCallbackGroup()
        self._servers = [
            ActionServer(self, kind, name, execute_callback=self._execute, goal_callback=self._make_goal_cb(label),
                         cancel_callback=lambda _: CancelResponse.ACCEPT, callback_group=group)
            for kind, name, label in ((Homing, t.gripper_homing, "homing"), (Move, t.gripper_move, "move"),
                                      (Grasp, t.gripper_grasp, "grasp"))
        ]
        self._servers.append(ActionServer(self, ErrorRecovery, t.error_recovery, execute_callback=self._execute_recovery,
                                          callback_group=group))
        self._thread = threading.Thread(target=self._loop, name="sim_node.loop", daemon=True)
        self._thread.start()
        self.get_logger().info(f"{p.task}: {'lockstep on /clock' if p.lockstep else f'free-running x{p.real_time_factor}'}, "
                               f"joints {self.joint_names[0]}..7, frame {self.frame}")

    # ------------------------------------------------------------------ subscriptions
    def _on_target(self, msg: PoseStamped) -> None:
        pos, quat, stamp = convert.pose_to_numpy(msg)
        if msg.header.frame_id not in ("", self.frame):
            self.get_logger().warning(f"target_pose in frame {msg.header.frame_id!r}, expected {self.frame!r}: ignored",
                                      throttle_duration_sec=5.0)
            return
        if not (np.isfinite(pos).all() and np.isfinite(quat).all() and np.linalg.norm(quat) > 1e-6):
            self.get_logger().warning("target_pose is not finite: ignored", throttle_duration_sec=5.0)
            return
        with self._lock:
            if not self.bridge.done:
                self.bridge.set_target(pos, quat)
            self._command_stamp = max(self._command_stamp, stamp)
        self._wake.set()

    def _on_reset(self, msg: Int64) -> None:
        with self._lock:
            self._pending_reset = int(msg.data)
        self._wake.set()

    def _on_fault(self, msg: String) -> None:
        with self._lock:
            self._pending_fault = msg.data.strip().lower()

    # ------------------------------------------------------------------ actions
    def _make_goal_cb(self, kind: str):
        def goal_callback(request) -> GoalResponse:
            # The goal starts here, not in execute: by the time the client hears "accepted", the fingers'
            # command is set, so a command published after that acts together with it (lockstep order).
            width = float(getattr(request, "width", 0.08))
            eps = getattr(request, "epsilon", None)
            force = float(getattr(request, "force", 0.0))
            try:
                with self._stepped:
                    goal, ended = self.bridge.start_gripper(kind, width, eps.inner if eps else 0.005,
                                                            eps.outer if eps else 0.005, force)
                    self._goals[id(request)] = goal
                    self._stepped.notify_all()
            except ValueError as exc:
                self.get_logger().warning(f"gripper {kind} goal rejected: {exc}")
                return GoalResponse.REJECT
            return GoalResponse.ACCEPT
        return goal_callback

    def _execute(self, goal_handle):
        kind = type(goal_handle.request).__name__.split("_")[0]
        result = {"Homing": Homing, "Move": Move, "Grasp": Grasp}[kind].Result()
        feedback = {"Homing": Homing, "Move": Move, "Grasp": Grasp}[kind].Feedback()
        with self._stepped:
            goal = self._goals.pop(id(goal_handle.request), None)
            while goal is not None and not goal.done and self.context.ok() and self._running:
                if goal_handle.is_cancel_requested:
                    self.bridge.cancel_gripper()
                    break
                self._stepped.wait(timeout=0.5)
                feedback.current_width = self.bridge.gripper_width()
                goal_handle.publish_feedback(feedback)
        if goal is None:
            result.success, result.error = False, "goal was not started"
            goal_handle.abort()
        elif goal_handle.is_cancel_requested:
            result.success, result.error = False, "canceled"
            goal_handle.canceled()
        else:
            result.success, result.error = goal.success, goal.error
            goal_handle.succeed() if goal.success else goal_handle.abort()
        return result

    def _execute_recovery(self, goal_handle):
        with self._stepped:
            recovered = self.bridge.recover()
        self.get_logger().info("error recovery: " + ("robot mode back to IDLE" if recovered else "nothing to recover"))
        goal_handle.succeed()
        return ErrorRecovery.Result()

    # ------------------------------------------------------------------ the sim loop
    def _loop(self) -> None:
        p = self.params
        period = CONTROL_DT
        next_wall = time.monotonic()
        try:
            while self._running and self.context.ok():
                with self._stepped:
                    seed, self._pending_reset = self._pending_reset, None
                    fault, self._pending_fault = self._pending_fault, None
                if fault is not None:
                    with self._stepped:
                        try:
                            self.bridge.inject_fault(fault)
                        except ValueError as exc:
                            self.get_logger().warning(str(exc))
                if seed is not None:
                    self._start_episode(seed)
                    next_wall = time.monotonic()
                    continue
                if self.bridge.done:  # no episode: keep the clock and robot state alive, wait for a reset
                    self._publish_idle()
                    self._wake.wait(timeout=0.1)
                    self._wake.clear()
                    continue
                stamp = self._publish_state()
                if p.lockstep:
                    deadline = time.monotonic() + p.lockstep_timeout_s
                    while self._running and self._command_stamp < stamp - 1e-9 and self._pending_reset is None:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            self.lockstep_timeouts += 1
                            self.get_logger().warning(f"lockstep: no command for the state at {stamp:.3f} s (step {self.bridge.steps}) within {p.lockstep_timeout_s} s: stepping on")
                            break
                        self._wake.wait(timeout=min(left, 0.05))
                        self._wake.clear()
                    if self._pending_reset is not None:
                        continue
                else:
                    next_wall += period / p.real_time_factor
                    delay = next_wall - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    else:
                        next_wall = time.monotonic()
                self._step()
        except Exception as exc:  # a bug: report it rather than leave the graph waiting silently
            if self._running:
                self.get_logger().error(f"sim loop stopped: {type(exc).__name__}: {exc}")
                raise
        finally:
            # the renderer's GL context belongs to this thread: release it here
            with self._lock:
                self.bridge.close()

    def _start_episode(self, seed: int) -> None:
        with self._stepped:
            self.bridge.reset(seed)
            self._command_stamp = -np.inf
            self._stepped.notify_all()
            event = {"event": "start", "seed": seed, "episode": self.bridge.episode, "stamp": self.bridge.time}
        self._publish_clock(self.bridge.time)
        self.pub_episode.publish(String(data=json.dumps(event)))
        if self.params.lockstep and self.params.episode_settle_s > 0:
            time.sleep(self.params.episode_settle_s)

    def _step(self) -> None:
        p = self.params
        with self._stepped:
            cuts = self.bridge.taps(p.robot_state_rate_hz)
            report = self.bridge.step(cuts, on_tap=self._on_tap)
            episode = self.bridge.episode
            self._stepped.notify_all()
        self.pub_step.publish(convert.step_report_msg(report.reward, report.success, report.terminated, report.truncated,
                                                      report.steps, episode, self._stamp(report.time)))
        for goal in report.finished_goals:
            if not goal.success:
                self.get_logger().info(f"gripper {goal.kind} failed: {goal.error}")
        if report.done:
            event = {"event": "end", "seed": self.bridge.seed, "episode": self.bridge.episode, "success": report.success,
                     "steps": report.steps, "stamp": report.time,
                     "min_tcp_object_m": round(self.bridge.min_object_distance, 5)}
            self._publish_state()
            self.pub_episode.publish(String(data=json.dumps(event)))
            if p.auto_reset:
                with self._lock:
                    if self._pending_reset is None:
                        self._pending_reset = int(self.bridge.seed) + 1

    def _on_tap(self, t: float) -> None:
        """Mid-period: the clock and the robot state (bridge lock held)."""
        self._publish_clock(t)
        if self._state_rate.due(t):
            self.pub_state.publish(self._robot_state_msg(self._stamp(t)))

    # ------------------------------------------------------------------ publishing
    def _stamp(self, t: float) -> float:
        if self.params.publish_clock:
            return t
        return self.get_clock().now().nanoseconds * 1e-9

    def _publish_clock(self, t: float) -> None:
        if self.pub_clock is not None:
            msg = Clock()
            msg.clock = convert.to_stamp(t)
            self.pub_clock.publish(msg)

    def _publish_state(self) -> float:
        """Publish the state at the bridge's time; returns its stamp."""
        p = self.params
        with self._lock:
            b = self.bridge
            t = b.time
            stamp = self._stamp(t)
            pos, quat = b.ee_pose()
            obj_pos, obj_quat = b.object_pose()
            joints = convert.make_joint_state(self.joint_names, b.joint_positions(), stamp, b.joint_velocities(), b.joint_efforts())
            fingers = convert.make_joint_state(self.finger_names, b.finger_positions(), stamp, np.zeros(2), np.zeros(2))
            state = self._robot_state_msg(stamp)
            image = None
            if self.pub_image is not None and self._camera_rate.due(t):
                image = convert.image_msg(b.render(p.camera_width, p.camera_height, p.camera), stamp, p.camera)
        self._publish_clock(t)
        self.state_wall[round(stamp, 6)] = time.perf_counter()
        if len(self.state_wall) > 4096:
            self.state_wall.pop(next(iter(self.state_wall)))
        self.pub_pose.publish(convert.numpy_to_pose(pos, quat, stamp, self.frame))
        self.pub_joints.publish(joints)
        self.pub_fingers.publish(fingers)
        self.pub_object.publish(convert.numpy_to_pose(obj_pos, obj_quat, stamp, self.frame))
        if self._state_rate.due(t):
            self.pub_state.publish(state)
        if image is not None:
            self.pub_image.publish(image)
        return stamp

    def _publish_idle(self) -> None:
        """Between episodes only /clock and the robot state go out: no observation of a finished scene."""
        with self._lock:
            t = self.bridge.time
            state = self._robot_state_msg(self._stamp(t))
        self._publish_clock(t)
        if self.params.robot_state_rate_hz > 0:
            self.pub_state.publish(state)

    def _robot_state_msg(self, stamp: float) -> FrankaRobotState:
        """FrankaRobotState with header, measured_joint_state, o_t_ee (the TCP), o_t_ee_d (the target),
        robot_mode and time filled from the sim; the rest keeps its zero defaults."""
        b = self.bridge
        msg = FrankaRobotState()
        msg.header.stamp = convert.to_stamp(stamp)
        msg.header.frame_id = self.frame
        msg.measured_joint_state = convert.make_joint_state(self.joint_names, b.joint_positions(), stamp,
                                                            b.joint_velocities(), b.joint_efforts())
        pos, quat = b.ee_pose()
        msg.o_t_ee = convert.numpy_to_pose(pos, quat, stamp, self.frame)
        tpos, tquat = b.target()
        msg.o_t_ee_d = convert.numpy_to_pose(tpos, tquat, stamp, self.frame)
        msg.robot_mode = int(b.robot_mode)
        msg.time = float(b.time)
        return msg

    def close(self) -> None:
        self._running = False
        self._wake.set()
        with self._stepped:
            self._stepped.notify_all()
        self._thread.join(timeout=5.0)


class _Rate:
    """Publish at ``rate_hz`` in sim time: due when ``t`` has reached the next point of the rate's grid."""

    def __init__(self, rate_hz: float):
        self.rate_hz = rate_hz
        self.last = -1

    def due(self, t: float) -> bool:
        if self.rate_hz <= 0:
            return False
        index = int(np.floor(t * self.rate_hz + 1e-6))
        if index <= self.last:
            return False
        self.last = index
        return True


def main(args=None) -> int:
    return run_node(SimNode, "sim_node", args)


if __name__ == "__main__":
    raise SystemExit(main())
