"""A rosbag2 (MCAP storage) of raw topics, written with the ``rosbags`` library (no ROS tooling needed).

Messages arrive already serialized (rclpy subscriptions with ``raw=True`` hand over the CDR bytes), so
nothing is deserialized or re-encoded: the bag holds exactly what went over the wire, and `ros2 bag play`
or `ros2 bag info` on the robot computer read it.  Message definitions come from rosbags' Jazzy type
store; types it does not know (franka_msgs) are registered from the ``.msg`` files the package installs.

The bag directory gets ``metadata.yaml`` on ``close()``; after a crash `ros2 bag reindex DIR` rebuilds it
from the MCAP file.
"""
from __future__ import annotations

import sys
import threading
from pathlib import Path

from lpds_ros.errors import LpdsError

#: Message type of every topic key of config/topics.yaml that carries messages (actions are not bagged).
TOPIC_TYPES = {
    "target_pose": "geometry_msgs/msg/PoseStamped",
    "current_pose": "geometry_msgs/msg/PoseStamped",
    "joint_states": "sensor_msgs/msg/JointState",
    "robot_state": "franka_msgs/msg/FrankaRobotState",
    "gripper_joint_states": "sensor_msgs/msg/JointState",
    "object_pose": "geometry_msgs/msg/PoseStamped",
    "camera_image": "sensor_msgs/msg/Image",
    "observation": "sensor_msgs/msg/JointState",
    "action_raw": "sensor_msgs/msg/JointState",
    "estop": "std_msgs/msg/Bool",
    "estop_reset": "std_msgs/msg/Empty",
    "recover": "std_msgs/msg/Empty",
    "safety_status": "std_msgs/msg/String",
    "reset_episode": "std_msgs/msg/Int64",
    "episode": "std_msgs/msg/String",
    "sim_fault": "std_msgs/msg/String",
    "clock": "rosgraph_msgs/msg/Clock",
}

#: What ``--bag`` records by default: the robot's raw state and the commands, not the camera (large).
DEFAULT_BAG_TOPICS = ("current_pose", "joint_states", "gripper_joint_states", "robot_state", "object_pose",
                      "observation", "action_raw", "target_pose", "safety_status", "episode")


def message_class(msgtype: str):
    """``"pkg/msg/Type"`` -> the rclpy message class."""
    import importlib

    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def _msg_file(msgtype: str) -> Path | None:
    package, _, name = msgtype.split("/")
    candidates = [Path(sys.prefix) / "share" / package / "msg" / f"{name}.msg"]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(package)) / "msg" / f"{name}.msg")
    except Exception:  # no ament index / package not in it
        pass
    return next((p for p in candidates if p.is_file()), None)


def _ensure_type(typestore, msgtype: str, seen: set[str] | None = None) -> None:
    """Register ``msgtype`` (and the message types it uses) from the installed .msg files if unknown."""
    from rosbags.typesys import get_types_from_msg

    seen = set() if seen is None else seen
    if msgtype in typestore.fielddefs or msgtype in seen:
        return
    seen.add(msgtype)
    path = _msg_file(msgtype)
    if path is None:
        raise LpdsError(f"cannot record {msgtype}: no message definition found (share/{msgtype.split('/')[0]}/msg)")
    types = get_types_from_msg(path.read_text(), msgtype)
    for _, fields in types.values():
        for _, (kind, spec) in fields:
            while kind.name in ("ARRAY", "SEQUENCE"):  # spec: ((kind, inner spec), size)
                kind, spec = spec[0]
            if kind.name == "NAME":
                _ensure_type(typestore, spec, seen)
    typestore.register(types)


class BagWriter:
    """One rosbag2 directory with MCAP storage; ``add_topic`` then ``write`` raw CDR bytes (thread-safe)."""

    def __init__(self, path: str | Path):
        try:
            from rosbags.rosbag2 import StoragePlugin, Writer
            from rosbags.typesys import Stores, get_typestore
        except ImportError:
            raise LpdsError("recording a bag needs the rosbags package: pip install rosbags==0.11.9") from None
        self.path = Path(path)
        if self.path.exists():
            raise LpdsError(f"{self.path}: bag directory already exists; give a new --bag path")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._typestore = get_typestore(Stores.ROS2_JAZZY)
        self._writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._connections: dict[str, object] = {}
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def add_topic(self, topic: str, msgtype: str) -> None:
        with self._lock:
            if topic in self._connections:
                return
            _ensure_type(self._typestore, msgtype)
            self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=self._typestore)
            self.counts[topic] = 0

    def write(self, topic: str, stamp_ns: int, data: bytes) -> None:
        with self._lock:
            if self._writer is None:
                return
            self._writer.write(self._connections[topic], int(stamp_ns), data)
            self.counts[topic] += 1

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
