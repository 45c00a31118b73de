"""perception_node: measurements in, the policy's observation vector out (``lpds_ros.perception``).

Subscribes  current_pose (PoseStamped: TCP), /joint_states (<prefix>_joint1..7), /franka_gripper/joint_states
            (<prefix>_finger_joint1/2), and the object: object_pose (PoseStamped; ``object_source: topic``)
            or camera_image (Image; ``object_source: marker``: ArUco/AprilTag + calibration/*.yaml)
Publishes   /lpds/observation (JointState as a labelled vector; stamp = the oldest input stamp)

It never subscribes to the 1 kHz topics (franka_robot_state_broadcaster's robot_state, franka/joint_states):
/joint_states comes from franka_bringup's joint_state_publisher (30 Hz), current_pose from crisp's
pose_broadcaster (run it at a reduced update_rate, see launch/franka.launch.py).  ``trigger`` says when an
observation is published (``lpds_ros.perception.sync``): ``all`` (lockstep sim), ``timer`` (robot, at
``rate_hz``), or a source name.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState

from lpds_ros.config import ConfigError
from lpds_ros.nodes import convert
from lpds_ros.nodes.params import (
    check_choice,
    check_positive,
    declare_params,
    param,
    run_node,
)
from lpds_ros.nodes.topics import load_topics, package_file
from lpds_ros.perception import ObservationAssembler, ObservationError, standard_sources
from lpds_ros.perception.sync import ObservationTrigger

# observation source -> the topic source that provides it
_PROVIDER = {
    "robot0_joint_pos": "joints", "robot0_joint_vel": "joints", "robot0_eef_pos": "eef", "robot0_eef_quat": "eef",
    "robot0_gripper_width": "gripper", "object_pos": "object", "object_quat": "object", "goal_pos": None,
}


@dataclass(frozen=True)
class PerceptionParams:
    topics_file: str = param("", "names YAML (empty: the package's config/topics.yaml)")
    task: str = param("franka-lift", "task whose observation layout is assembled (lpds_ros.envs.TASKS)")
    arm_prefix: str = param("fr3", "joint name prefix: <prefix>_joint1..7, <prefix>_finger_joint1/2")
    trigger: str = param("timer", "when to publish: all (every input updated: lockstep sim), timer, eef, joints, gripper, object")
    rate_hz: float = param(20.0, "timer rate; for a source trigger the most observations per second of its stamps")
    object_source: str = param("topic", "topic (object_pose) or marker (detect the marker in camera_image)")
    goal_position: list = param([], "goal_pos (x y z, base frame) for tasks that have one")
    joint_offsets_rad: list = param([0.0, 0.0, 0.0, 0.0, 0.0, 1.5707963267948966, 0.7853981633974483],
                                    "subtracted from the measured joint angles: Franka's convention -> the simulated "
                                    "Panda MJCF's, which the Franka tasks (and policies trained on them) observe")
    intrinsics_file: str = param("", "marker mode: camera intrinsics YAML (empty: calibration/camera_intrinsics.yaml)")
    hand_eye_file: str = param("", "marker mode: hand-eye YAML (empty: calibration/hand_eye.yaml)")
    marker_file: str = param("", "marker mode: marker YAML (empty: calibration/marker.yaml)")

    def __post_init__(self) -> None:
        check_choice(self, "trigger", ("all", "timer", "eef", "joints", "gripper", "object"))
        check_choice(self, "object_source", ("topic", "marker"))
        check_positive(self, "rate_hz")
        if len(self.joint_offsets_rad) != 7:
            raise ConfigError(f"PerceptionParams.joint_offsets_rad must be 7 numbers, got {list(self.joint_offsets_rad)}")
        if len(self.goal_position) not in (0, 3):
            raise ConfigError(f"PerceptionParams.goal_position must be empty or 3 numbers, got {list(self.goal_position)}")


class PerceptionNode(Node):
    def __init__(self, **kwargs):
        super().__init__("perception_node", **kwargs)
        from lpds_ros.envs import env_class

        self.params = p = declare_params(self, PerceptionParams)
        self.topics = t = load_topics(p.topics_file or None)
        try:
            layout = env_class(p.task).layout()
        except Exception as exc:
            raise ConfigError(f"perception_node: task {p.task!r}: {exc}") from None
        self.assembler = ObservationAssembler(layout)
        self.labels = convert.layout_labels(layout)
        needed = [_PROVIDER.get(s, "?") for s in self.assembler.required_sources]
        unknown = [s for s, n in zip(self.assembler.required_sources, needed) if n == "?"]
        if unknown:
            raise ConfigError(f"perception_node: the {p.task} layout needs source(s) {unknown} this node cannot provide")
        if "goal_pos" in self.assembler.required_sources and len(p.goal_position) != 3:
            raise ConfigError(f"perception_node: task {p.task} observes goal_pos: set the goal_position parameter")
        self.sources = [s for s in ("eef", "joints", "gripper", "object") if s in needed]
        self.trigger = ObservationTrigger(p.trigger, self.sources, 1.0 / p.rate_hz)
        self.joint_names = [f"{p.arm_prefix}_joint{i}" for i in range(1, 8)]
        self.finger_names = [f"{p.arm_prefix}_finger_joint{i}" for i in (1, 2)]
        self._values: dict[str, dict] = {}
        self._joint_offsets = np.asarray(p.joint_offsets_rad, dtype=np.float64)
        self.published = 0

        self.pub = self.create_publisher(JointState, t.observation, 10)
        self.create_subscription(PoseStamped, t.current_pose, self._on_pose, 10)
        self.create_subscription(JointState, t.joint_states, self._on_joints, 10)
        self.create_subscription(JointState, t.gripper_joint_states, self._on_fingers, 10)
        if p.object_source == "topic":
            self.create_subscription(PoseStamped, t.object_pose, self._on_object, 10)
        else:
            from lpds_ros.perception import MarkerPoseEstimator

            self.estimator = MarkerPoseEstimator.from_files(
                p.intrinsics_file or package_file("calibration/camera_intrinsics.yaml"),
                p.hand_eye_file or package_file("calibration/hand_eye.yaml"),
                p.marker_file or package_file("calibration/marker.yaml"))
            # detection takes milliseconds: its own callback group keeps the other inputs flowing
            self.create_subscription(Image, t.camera_image, self._on_image, 2,
                                     callback_group=MutuallyExclusiveCallbackGroup())
        if p.trigger == "timer":
            self.create_timer(1.0 / p.rate_hz, self._on_timer)
        self.get_logger().info(f"{p.task}: {self.assembler.dim}-d observation from {self.sources}, trigger {p.trigger}")

    # ------------------------------------------------------------------ inputs
    def _update(self, source: str, stamp: float, **values) -> None:
        self._values[source] = {"stamp": stamp, **values}
        if self.trigger.update(source, stamp):
            self._publish()

    def _on_pose(self, msg: PoseStamped) -> None:
        pos, quat, stamp = convert.pose_to_numpy(msg)
        self._update("eef", stamp, eef_position=pos, eef_orientation=quat)

    def _on_joints(self, msg: JointState) -> None:
        got = convert.joint_state_to_numpy(msg, self.joint_names)
        if got is None:
            self.get_logger().warning(f"joint_states lacks {self.joint_names}", throttle_duration_sec=5.0)
            return
        position, velocity, stamp = got
        self._update("joints", stamp, joint_positions=position - self._joint_offsets,
                     joint_velocities=velocity if velocity is not None else np.zeros(7))

    def _on_fingers(self, msg: JointState) -> None:
        got = convert.joint_state_to_numpy(msg, self.finger_names)
        if got is None:
            self.get_logger().warning(f"gripper joint_states lacks {self.finger_names}", throttle_duration_sec=5.0)
            return
        self._update("gripper", got[2], finger_positions=got[0])

    def _on_object(self, msg: PoseStamped) -> None:
        pos, quat, stamp = convert.pose_to_numpy(msg)
        self._update("object", stamp, object_position=pos, object_orientation=quat)

    def _on_image(self, msg: Image) -> None:
        stamp = convert.to_sec(msg.header.stamp)
        eef = self._values.get("eef")
        tcp = (eef["eef_position"], eef["eef_orientation"]) if eef else None
        try:
            found = self.estimator.estimate(convert.image_to_numpy(msg), stamp, tcp_pose=tcp)
        except Exception as exc:  # a bad frame or missing TCP pose: report, keep the last object pose
            self.get_logger().warning(f"marker detection: {exc}", throttle_duration_sec=5.0)
            return
        if found is not None:
            self._update("object", stamp, object_position=found.position, object_orientation=found.orientation)

    def _on_timer(self) -> None:
        if self.trigger.ready():
            self._publish()

    # ------------------------------------------------------------------ output
    def _publish(self) -> None:
        kwargs: dict = {}
        for source in self.sources:
            values = dict(self._values[source])
            stamp = values.pop("stamp")
            kwargs.update(values)
            kwargs[{"eef": "eef_stamp", "joints": "joint_stamp", "gripper": "gripper_stamp", "object": "object_stamp"}[source]] = stamp
        if len(self.params.goal_position) == 3:
            kwargs["goal_position"] = np.asarray(self.params.goal_position, dtype=np.float64)
        try:
            obs = self.assembler.assemble(standard_sources(**kwargs))
        except ObservationError as exc:
            self.get_logger().warning(f"observation not assembled: {exc}", throttle_duration_sec=5.0)
            return
        self.trigger.published()
        self.pub.publish(convert.vector_msg(self.labels, obs.vector, obs.stamp))
        self.published += 1


def main(args=None) -> int:
    return run_node(PerceptionNode, "perception_node", args)


if __name__ == "__main__":
    raise SystemExit(main())
