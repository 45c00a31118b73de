"""safety_filter_node: the policy's raw targets in, what the arm may follow out (``lpds_ros.safety``).

Subscribes  /lpds/action_raw (labelled vector), current_pose, /joint_states, robot_state (FrankaRobotState:
            robot_mode), /lpds/estop (Bool: true latches), /lpds/estop_reset (Empty), /lpds/recover (Empty),
            /lpds/episode (a start event resets the filter and the gripper gate)
Publishes   target_pose (PoseStamped -> crisp_controllers' cartesian_impedance_controller, or sim_node),
            /lpds/safety_status (String: one line whenever the decision's reason changes)
Calls       /franka_gripper/grasp (close: width, epsilon, speed, force parameters), /franka_gripper/move (open),
            /action_server/error_recovery (only when an operator publishes /lpds/recover)

Cycles.  The filter (``SafetyFilter.step``) runs when a request arrives, and on a watchdog timer at
``rate_hz`` whenever no request arrived for 1.5 periods -- so a policy that stops is caught (the request
ages and the filter holds) while a running one is filtered exactly once per step, with no extra latency.
The published target_pose carries the stamp of the request it was decided on (its observation's stamp).

Sim episodes.  DDS orders messages within a topic only, so in the lockstep sim a step's inputs can overtake
each other.  A pose or joint state stamped before the episode's start is the previous episode's and counts
as missing; a request stamped after the previous episode's end waits for its start event; and, on sim time
only, a request held for want of state (NO_STATE / STALE_STATE) is filtered again when a state input
arrives -- sim time, and so the watchdog timer, stands still while the sim waits for this command.

Gripper.  The filtered gripper command goes through ``GripperGate`` (hysteresis): a goal is sent only when
the command changes: Grasp to close, Move(open_width) to open.  A rejected goal, an unreachable server
and an aborted or failed result call ``goal_failed()`` so the gate retries after ``gripper_retry_cycles``
cycles, never every tick.  When a goal is sent, that cycle's target_pose is published as soon as the goal
is accepted or rejected (at most ``goal_response_wait_s`` later), so arm and gripper commands take effect
in the same control step.

Robot mode.  REFLEX / USER_STOPPED (``hold_robot_modes`` in config/safety.yaml) hold the last command and
report it on safety_status; ErrorRecovery is sent only when an operator publishes on /lpds/recover, and after
it succeeds the filter restarts from the measured pose.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass

import numpy as np
from action_msgs.msg import GoalStatus
from franka_msgs.action import ErrorRecovery, Grasp, Move
from franka_msgs.msg import FrankaRobotState
from geometry_msgs.msg import PoseStamped
from rclpy.action import ActionClient
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Empty, String

from lpds_ros.config import ConfigError
from lpds_ros.nodes import convert
from lpds_ros.nodes.params import check_positive, declare_params, param, run_node
from lpds_ros.nodes.topics import load_topics, package_file
from lpds_ros.safety import (
    GripperGate,
    MeasuredState,
    Reason,
    SafetyFilter,
    TargetRequest,
    load_safety_config,
)


@dataclass(frozen=True)
class SafetyNodeParams:
    topics_file: str = param("", "names YAML (empty: the package's config/topics.yaml)")
    safety_file: str = param("", "limits YAML (empty: the package's config/safety.yaml)")
    workspace_file: str = param("", "workspace box YAML (empty: the package's calibration/workspace.yaml)")
    robot: str = param("", "override safety.yaml's robot (fr3, panda, none); empty: keep")
    tcp_offset_m: float = param(-1.0, "override safety.yaml's tcp_offset_m (flange -> TCP); negative: keep")
    rate_hz: float = param(20.0, "control rate: the watchdog timer's rate")
    arm_prefix: str = param("fr3", "joint name prefix in /joint_states: <prefix>_joint1..7")
    use_robot_state: bool = param(True, "read robot_mode from robot_state (hold in REFLEX / USER_STOPPED)")
    grasp_width_m: float = param(0.04, "Grasp goal width")
    grasp_epsilon_inner_m: float = param(0.035, "Grasp succeeds if the fingers stop above width - inner ...")
    grasp_epsilon_outer_m: float = param(0.04, "... and below width + outer")
    grasp_speed: float = param(0.1, "Grasp speed (m/s)")
    grasp_force_n: float = param(40.0, "Grasp force (N)")
    open_width_m: float = param(0.08, "Move goal width when opening")
    move_speed: float = param(0.1, "Move speed (m/s)")
    gripper_close_threshold: float = param(0.6, "a gripper command >= this sends Grasp")
    gripper_open_threshold: float = param(0.4, "a gripper command <= this sends Move(open_width_m)")
    gripper_retry_cycles: int = param(10, "after a failed goal, cycles before the same goal is sent again")
    goal_response_wait_s: float = param(0.2, "longest wait (wall) for a goal's acceptance before the cycle's target is published")

    def __post_init__(self) -> None:
        for name in ("rate_hz", "grasp_width_m", "grasp_speed", "grasp_force_n", "open_width_m", "move_speed",
                     "gripper_retry_cycles", "goal_response_wait_s"):
            check_positive(self, name)
        for name in ("grasp_epsilon_inner_m", "grasp_epsilon_outer_m"):
            check_positive(self, name, allow_zero=True)
        if self.robot not in ("", "fr3", "panda", "none"):
            raise ConfigError(f"SafetyNodeParams.robot = {self.robot!r}: must be fr3, panda, none or empty")


class SafetyFilterNode(Node):
    def __init__(self, **kwargs):
        super().__init__("safety_filter_node", **kwargs)
        self.params = p = declare_params(self, SafetyNodeParams)
        self.topics = t = load_topics(p.topics_file or None)
        config = load_safety_config(p.safety_file or package_file("config/safety.yaml"),
                                    p.workspace_file or package_file("calibration/workspace.yaml"))
        overrides = {}
        if p.robot:
            overrides["robot"] = p.robot
        if p.tcp_offset_m >= 0:
            overrides["tcp_offset_m"] = p.tcp_offset_m
        self.config = dataclasses.replace(config, **overrides) if overrides else config
        self.filter = SafetyFilter(self.config)
        self.gate = GripperGate(p.gripper_close_threshold, p.gripper_open_threshold, p.gripper_retry_cycles)
        self.frame = self.config.workspace.frame
        self.joint_names = [f"{p.arm_prefix}_joint{i}" for i in range(1, 8)]
        self.needs_joints = self.config.robot != "none"
        self._lock = threading.RLock()
        self._request: TargetRequest | None = None
        self._episode_start = -np.inf  # stamps of the sim's episode events (see "Sim episodes" above)
        self._episode_end = np.inf
        self._retry_on_state = bool(self.get_parameter("use_sim_time").value)
        self._awaiting_state = False  # the last cycle held a request for want of a measured state
        self._pose = None  # (position, orientation, stamp)
        self._joints = None  # (positions, stamp)
        self._mode = None  # (robot_mode, stamp)
        self._last_cycle = -np.inf  # node-clock time of the last cycle
        self._decided_stamp = 0.0  # stamp put on target_pose
        self._last_reason: Reason | None = None
        self._deferred: PoseStamped | None = None
        self._deferred_timer = None
        self._recovering = False
        self.decisions: list[tuple[float, Reason]] = []  # (request stamp, reason) of the last cycles, for tests
        self.goals_sent: list[str] = []
        #: wall time (perf_counter) each target_pose went out, by its stamp: the benchmark's latency probe
        self.publish_wall: dict[float, float] = {}

        self.pub_target = self.create_publisher(PoseStamped, t.target_pose, 10)
        self.pub_status = self.create_publisher(String, t.safety_status, 10)
        self.create_subscription(JointState, t.action_raw, self._on_request, 10)
        self.create_subscription(PoseStamped, t.current_pose, self._on_pose, 10)
        if self.needs_joints:
            self.create_subscription(JointState, t.joint_states, self._on_joints, 10)
        if p.use_robot_state:
            self.create_subscription(FrankaRobotState, t.robot_state, self._on_robot_state, 10)
        self.create_subscription(Bool, t.estop, self._on_estop, 10)
        self.create_subscription(Empty, t.estop_reset, self._on_estop_reset, 10)
        self.create_subscription(Empty, t.recover, self._on_recover, 10)
        self.create_subscription(String, t.episode, self._on_episode, 10)
        group = ReentrantCallbackGroup()
        self.grasp_client = ActionClient(self, Grasp, t.gripper_grasp, callback_group=group)
        self.move_client = ActionClient(self, Move, t.gripper_move, callback_group=group)
        self.recovery_client = ActionClient(self, ErrorRecovery, t.error_recovery, callback_group=group)
        self.create_timer(1.0 / p.rate_hz, self._on_timer)
        self.get_logger().info(f"box {list(self.config.workspace.min_xyz)}..{list(self.config.workspace.max_xyz)} in "
                               f"{self.frame}, robot {self.config.robot}, reference limit "
                               f"{self.config.max_reference_distance_m} m, step {self.config.max_translation_step_m} m/cycle")

    # ------------------------------------------------------------------ inputs
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_request(self, msg: JointState) -> None:
        parsed = convert.action_raw_from_msg(msg)
        if parsed is None:
            self.get_logger().warning("malformed action_raw (labels x y z qx qy qz qw gripper ...)", throttle_duration_sec=5.0)
            return
        position, orientation, gripper, stamp = parsed
        with self._lock:
            self._request = TargetRequest(position, orientation, gripper, stamp)
            self._cycle()

    def _on_pose(self, msg: PoseStamped) -> None:
        position, orientation, stamp = convert.pose_to_numpy(msg)
        if msg.header.frame_id != self.frame:
            self.get_logger().error(f"current_pose is in frame {msg.header.frame_id!r}, the workspace box in "
                                    f"{self.frame!r}: holding", throttle_duration_sec=5.0)
            position = np.full(3, np.nan)  # INVALID_STATE: never compare poses across frames
        with self._lock:
            self._pose = (position, orientation, stamp)
            self._retry_held_request()

    def _on_joints(self, msg: JointState) -> None:
        got = convert.joint_state_to_numpy(msg, self.joint_names)
        if got is not None:
            with self._lock:
                self._joints = (got[0], got[2])
                self._retry_held_request()

    def _on_robot_state(self, msg: FrankaRobotState) -> None:
        with self._lock:
            self._mode = (int(msg.robot_mode), convert.to_sec(msg.header.stamp))
            self._retry_held_request()

    def _on_estop(self, msg: Bool) -> None:
        if msg.data:
            with self._lock:
                self.filter.trigger_estop("/lpds/estop")
                self._cycle()

    def _on_estop_reset(self, _msg: Empty) -> None:
        with self._lock:
            self.filter.reset_estop()
        self.get_logger().info("e-stop reset by the operator")

    def _on_episode(self, msg: String) -> None:
        event = convert.episode_event_from_msg(msg.data)
        if event is None:
            return
        with self._lock:
            if event["event"] == "end":
                self._episode_end = event["stamp"]
            else:
                self.filter.reset()
                self.gate.reset()
                self._awaiting_state = False
                self._episode_start = event["stamp"]
                self._episode_end = np.inf
                if self._request is not None and self._request.stamp >= self._episode_start - 1e-9:
                    self._cycle()  # this episode's first request came before this event
                else:
                    self._request = None

    # ------------------------------------------------------------------ the filter cycle
    def _on_timer(self) -> None:
        with self._lock:
            if self._now() - self._last_cycle >= 1.5 / self.params.rate_hz:
                self._cycle()

    def _state(self) -> MeasuredState | None:
        if self._pose is None or self._pose[2] < self._episode_start - 1e-9:
            return None
        position, orientation, stamp = self._pose
        joints = None
        if self.needs_joints and self._joints is not None and self._joints[1] >= self._episode_start - 1e-9:
            joints, joint_stamp = self._joints
            stamp = min(stamp, joint_stamp)
        mode = None
        if self._mode is not None:
            mode, mode_stamp = self._mode
            stamp = min(stamp, mode_stamp)
        return MeasuredState(position, orientation, stamp, joints, mode)

    def _cycle(self) -> None:
        """One filter cycle on the latest request and state (lock held)."""
        now = self._now()
        self._last_cycle = now
        request = self._request
        if request is not None and request.stamp > self._episode_end + 1e-9:
            request = None  # the next episode's: it waits for that episode's start event
        decision = self.filter.step(now, request, self._state())
        if request is not None:
            self._decided_stamp = request.stamp
        self.decisions.append((request.stamp if request is not None else float("nan"), decision.reason))
        del self.decisions[:-1000]
        if decision.reason != self._last_reason:
            line = decision.reason.name + (f": {decision.detail}" if decision.detail else "")
            self.pub_status.publish(String(data=line))
            if decision.reason != Reason.OK:
                self.get_logger().warning(line)
            self._last_reason = decision.reason
        self._awaiting_state = request is not None and decision.reason in (Reason.NO_STATE, Reason.STALE_STATE)
        if decision.command is None:
            return
        cmd = decision.command
        msg = convert.numpy_to_pose(cmd.position, cmd.orientation, max(self._decided_stamp, 0.0), self.frame)
        self._publish_deferred()  # a target still waiting on a goal response is superseded now
        if self._send_gripper_goal(cmd.gripper):
            self._deferred = msg
            if self._deferred_timer is None:
                self._deferred_timer = threading.Timer(self.params.goal_response_wait_s, self._deferred_timeout)
                self._deferred_timer.daemon = True
                self._deferred_timer.start()
        else:
            self._publish_target(msg)

    def _retry_held_request(self) -> None:
        """(lock held) A state input arrived: on sim time, filter a request that was held for want of it."""
        if self._awaiting_state and self._retry_on_state:
            self._cycle()

    def _publish_target(self, msg: PoseStamped) -> None:
        self.pub_target.publish(msg)
        key = round(convert.to_sec(msg.header.stamp), 6)
        if key not in self.publish_wall:
            self.publish_wall[key] = time.perf_counter()
            if len(self.publish_wall) > 4096:
                self.publish_wall.pop(next(iter(self.publish_wall)))

    def _publish_deferred(self) -> None:
        with self._lock:
            if self._deferred is not None:
                self._publish_target(self._deferred)
                self._deferred = None
            if self._deferred_timer is not None:
                self._deferred_timer.cancel()
                self._deferred_timer = None

    def _deferred_timeout(self) -> None:
        with self._lock:
            self._deferred_timer = None
            if self._deferred is not None:
                self.get_logger().warning("gripper goal not answered in time: publishing the target anyway")
                self._publish_target(self._deferred)
                self._deferred = None

    # ------------------------------------------------------------------ gripper
    def _send_gripper_goal(self, command: float) -> bool:
        """Send Grasp / Move if the gate says the command changed; True when a goal went out."""
        event = self.gate.update(command)
        if event is None:
            return False
        p = self.params
        if event == "close":
            client, goal = self.grasp_client, Grasp.Goal()
            goal.width, goal.speed, goal.force = p.grasp_width_m, p.grasp_speed, p.grasp_force_n
            goal.epsilon.inner, goal.epsilon.outer = p.grasp_epsilon_inner_m, p.grasp_epsilon_outer_m
        else:
            client, goal = self.move_client, Move.Goal()
            goal.width, goal.speed = p.open_width_m, p.move_speed
        if not client.server_is_ready():
            self.get_logger().warning(f"gripper server {client._action_name} is not available: {event} not sent",
                                      throttle_duration_sec=5.0)
            self.gate.goal_failed()
            return False
        self.goals_sent.append(event)
        seq = len(self.goals_sent)
        future = client.send_goal_async(goal)
        future.add_done_callback(lambda f, e=event, n=seq: self._on_goal_response(f, e, n))
        return True

    def _failed(self, event: str, seq: int, why: str) -> None:
        """A goal failed: the gate retries it later -- unless a newer goal has replaced it meanwhile."""
        with self._lock:
            latest = seq == len(self.goals_sent)
            if latest:
                self.gate.goal_failed()
        if latest:
            self.get_logger().warning(f"gripper {event} {why}")
        else:
            self.get_logger().debug(f"gripper {event} (superseded) {why}")

    def _on_goal_response(self, future, event: str, seq: int) -> None:
        handle = future.result() if future.exception() is None else None
        if handle is None or not handle.accepted:
            self._failed(event, seq, "goal rejected")
        else:
            handle.get_result_async().add_done_callback(lambda f: self._on_goal_result(f, event, seq))
        self._publish_deferred()

    def _on_goal_result(self, future, event: str, seq: int) -> None:
        response = future.result() if future.exception() is None else None
        ok = response is not None and response.status == GoalStatus.STATUS_SUCCEEDED and response.result.success
        if not ok:
            error = response.result.error if response is not None else "no result"
            status = response.status if response is not None else -1
            self._failed(event, seq, f"failed (status {status}): {error}")

    # ------------------------------------------------------------------ operator: error recovery
    def _on_recover(self, _msg: Empty) -> None:
        if self._recovering:
            return
        if not self.recovery_client.server_is_ready():
            self.get_logger().error(f"error recovery server {self.topics.error_recovery} is not available")
            return
        self._recovering = True
        self.get_logger().info("operator asked for error recovery: sending ErrorRecovery")
        self.recovery_client.send_goal_async(ErrorRecovery.Goal()).add_done_callback(self._on_recovery_response)

    def _on_recovery_response(self, future) -> None:
        handle = future.result() if future.exception() is None else None
        if handle is None or not handle.accepted:
            self._recovering = False
            self.get_logger().error("ErrorRecovery goal rejected")
            return
        handle.get_result_async().add_done_callback(self._on_recovery_result)

    def _on_recovery_result(self, future) -> None:
        self._recovering = False
        response = future.result() if future.exception() is None else None
        if response is not None and response.status == GoalStatus.STATUS_SUCCEEDED:
            with self._lock:
                self.filter.reset()  # restart from the measured pose
            self.pub_status.publish(String(data="RECOVERED: error recovery succeeded"))
            self.get_logger().info("error recovery succeeded")
        else:
            self.get_logger().error("error recovery failed")

    def close(self) -> None:
        with self._lock:
            if self._deferred_timer is not None:
                self._deferred_timer.cancel()


def main(args=None) -> int:
    return run_node(SafetyFilterNode, "safety_filter_node", args)


if __name__ == "__main__":
    raise SystemExit(main())
