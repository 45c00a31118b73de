"""ROS messages <-> numpy, in one place.  Quaternions are (x, y, z, w), as in geometry_msgs and everywhere
in lpds_ros outside MuJoCo calls (``lpds_ros.frames``); times are float seconds on the node's clock.

Two lpds topics carry plain float vectors with a stamp.  ROS 2's common interfaces have no stamped float
array, so they use ``sensor_msgs/JointState`` as a *labelled vector*: ``header.stamp`` is the stamp,
``name[i]`` labels ``position[i]``, velocity and effort are empty.

* ``/lpds/observation``: labels ``<key>[<i>]`` in the task's observation layout order, e.g.
  ``robot0_eef_pos[0]``; the stamp is the oldest stamp of the measurements it was assembled from.
* ``/lpds/action_raw``: ``ACTION_RAW_LABELS`` (the absolute TCP target the policy asks for, its gripper
  command in [0, 1], then the raw policy action), stamped with the observation's stamp.
* ``/lpds/sim/step``: ``STEP_REPORT_LABELS``, one per sim control step (what a learner needs besides the
  observation: reward, success, terminated, truncated), stamped with the state after the step.

The fine-tuning messages (``transition``: std_msgs/Float64MultiArray, ``steering_weights``:
std_msgs/UInt8MultiArray) are built here too; their layouts are documented in ``lpds_ros.runtime.transitions``
and ``lpds_ros.runtime.hotswap``.
"""
from __future__ import annotations

import json
import math
import re
from typing import Iterable, Mapping, Sequence

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import Image, JointState

#: Labels of /lpds/action_raw's first 8 entries; raw action entries follow as ``action[<i>]``.
ACTION_RAW_LABELS = ("x", "y", "z", "qx", "qy", "qz", "qw", "gripper")
_LABEL = re.compile(r"^(.*)\[(\d+)\]$")


# ----------------------------------------------------------------------------------------------- time
def to_sec(stamp: Time) -> float:
    """builtin_interfaces/Time -> seconds."""
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


def to_stamp(seconds: float) -> Time:
    """Seconds (>= 0, finite) -> builtin_interfaces/Time; rounded to the nanosecond."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot stamp {seconds!r}: times must be finite and >= 0")
    total = int(round(seconds * 1e9))
    return Time(sec=total // 1_000_000_000, nanosec=total % 1_000_000_000)


# ----------------------------------------------------------------------------------------------- poses
def pose_to_numpy(msg: PoseStamped) -> tuple[np.ndarray, np.ndarray, float]:
    """PoseStamped -> (position (3,), quaternion (4,) x y z w, stamp seconds)."""
    p, q = msg.pose.position, msg.pose.orientation
    return np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w]), to_sec(msg.header.stamp)


def numpy_to_pose(position: Sequence[float], orientation_xyzw: Sequence[float], stamp: float, frame_id: str) -> PoseStamped:
    """(position, quaternion x y z w, stamp seconds, frame) -> PoseStamped."""
    msg = PoseStamped()
    msg.header.stamp = to_stamp(stamp)
    msg.header.frame_id = frame_id
    p, q = msg.pose.position, msg.pose.orientation
    p.x, p.y, p.z = (float(v) for v in position)
    q.x, q.y, q.z, q.w = (float(v) for v in orientation_xyzw)
    return msg


# ----------------------------------------------------------------------------------------------- joints
def make_joint_state(names: Sequence[str], position: Iterable[float], stamp: float,
                     velocity: Iterable[float] | None = None, effort: Iterable[float] | None = None) -> JointState:
    msg = JointState()
    msg.header.stamp = to_stamp(stamp)
    msg.name = list(names)
    msg.position = [float(v) for v in position]
    msg.velocity = [] if velocity is None else [float(v) for v in velocity]
    msg.effort = [] if effort is None else [float(v) for v in effort]
    return msg


def joint_state_to_numpy(msg: JointState, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None, float] | None:
    """Positions (and velocities, when the message has them) of ``names`` in that order, and the stamp.

    None when the message lacks one of the names (e.g. /joint_states carrying only the fingers); the
    merged /joint_states of franka_bringup carries arm and finger joints, in any order.
    """
    index = {n: i for i, n in enumerate(msg.name)}
    try:
        rows = [index[n] for n in names]
    except KeyError:
        return None
    position = np.asarray(msg.position, dtype=np.float64)
    if position.size < len(msg.name):
        return None
    velocity = np.asarray(msg.velocity, dtype=np.float64)
    vel = velocity[rows] if velocity.size == len(msg.name) else None
    return position[rows], vel, to_sec(msg.header.stamp)


# ----------------------------------------------------------------------------------------------- labelled vectors
def layout_labels(layout: Mapping[str, int]) -> list[str]:
    """Element labels ``key[i]`` of a flat vector in ``layout`` order."""
    return [f"{key}[{i}]" for key, size in layout.items() for i in range(size)]


def labels_to_layout(labels: Sequence[str]) -> dict[str, int]:
    """The inverse of ``layout_labels`` (raises ValueError on labels it did not make)."""
    layout: dict[str, int] = {}
    for label in labels:
        m = _LABEL.match(label)
        if m is None:
            raise ValueError(f"label {label!r} is not of the form key[i]")
        key, i = m.group(1), int(m.group(2))
        if i != layout.get(key, 0) or (key in layout and list(layout)[-1] != key):
            raise ValueError(f"labels are not a flat layout at {label!r}")
        layout[key] = i + 1
    return layout


def vector_msg(labels: Sequence[str], values: Iterable[float], stamp: float) -> JointState:
    """A labelled, stamped vector (see the module docstring)."""
    return make_joint_state(labels, values, stamp)


def vector_from_msg(msg: JointState) -> tuple[list[str], np.ndarray, float]:
    """(labels, values float64, stamp seconds) of a labelled vector."""
    return list(msg.name), np.asarray(msg.position, dtype=np.float64), to_sec(msg.header.stamp)


STEP_REPORT_LABELS = ("reward", "success", "terminated", "truncated", "step", "episode")
"""sim_node's ``step_report`` (a labelled vector after every control step, stamped with the state after it):
the task's reward for the step, success (0/1), terminated / truncated (gymnasium's meaning, 0/1), the
step's index in its episode (1 = the first) and the episode number."""


def step_report_msg(reward: float, success: bool, terminated: bool, truncated: bool, step: int, episode: int,
                    stamp: float) -> JointState:
    return vector_msg(STEP_REPORT_LABELS, [float(reward), float(success), float(terminated), float(truncated),
                                           float(step), float(episode)], stamp)


def step_report_from_msg(msg: JointState) -> dict | None:
    """{label: value, "stamp": s} of a step report, or None when its labels are not ``STEP_REPORT_LABELS``."""
    labels, values, stamp = vector_from_msg(msg)
    if tuple(labels) != STEP_REPORT_LABELS:
        return None
    out = dict(zip(labels, values.tolist()))
    return {"stamp": stamp, "reward": out["reward"], "success": out["success"] > 0.5, "terminated": out["terminated"] > 0.5,
            "truncated": out["truncated"] > 0.5, "step": int(round(out["step"])), "episode": int(round(out["episode"]))}


def episode_event_from_msg(data: str) -> dict | None:
    """sim_node's episode event (``{"event": "start" | "end", "stamp": s, "seed", "episode", ...}``, JSON in a
    String) with ``stamp`` as a float; None for anything else (bad JSON, another event, no finite stamp), which
    the nodes ignore rather than stop on."""
    try:
        event = json.loads(data)
        stamp, seed = float(event["stamp"]), int(event.get("seed", 0))
    except (json.JSONDecodeError, TypeError, KeyError, ValueError, AttributeError):
        return None
    if event.get("event") not in ("start", "end") or not math.isfinite(stamp):
        return None
    return {**event, "stamp": stamp, "seed": seed}


def action_raw_msg(position: Sequence[float], orientation_xyzw: Sequence[float], gripper: float,
                   raw_action: Sequence[float], stamp: float) -> JointState:
    """/lpds/action_raw: target pose, gripper command in [0, 1] (1 closed) and the raw policy action."""
    raw = [float(v) for v in raw_action]
    labels = list(ACTION_RAW_LABELS) + [f"action[{i}]" for i in range(len(raw))]
    return vector_msg(labels, [*position, *orientation_xyzw, gripper, *raw], stamp)


def action_raw_from_msg(msg: JointState) -> tuple[np.ndarray, np.ndarray, float, float] | None:
    """(position, quaternion x y z w, gripper, stamp) of /lpds/action_raw; None when it is malformed."""
    labels, values, stamp = vector_from_msg(msg)
    if tuple(labels[:8]) != ACTION_RAW_LABELS or values.size < 8:
        return None
    return values[0:3], values[3:7], float(values[7]), stamp


# ----------------------------------------------------------------------------------------------- images
def image_msg(rgb: np.ndarray, stamp: float, frame_id: str) -> Image:
    """(H, W, 3) uint8 RGB -> sensor_msgs/Image rgb8."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    msg = Image()
    msg.header.stamp = to_stamp(stamp)
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = 3 * msg.width
    msg.data = rgb.tobytes()
    return msg


def image_to_numpy(msg: Image) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, mono8) -> (H, W, 3) uint8 RGB or (H, W) for mono8."""
    data = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    if msg.encoding in ("rgb8", "bgr8"):
        image = data.reshape(msg.height, msg.step)[:, : 3 * msg.width].reshape(msg.height, msg.width, 3)
        return image[..., ::-1].copy() if msg.encoding == "bgr8" else image.copy()
    if msg.encoding == "mono8":
        return data.reshape(msg.height, msg.step)[:, : msg.width].copy()
    raise ValueError(f"unsupported image encoding {msg.encoding!r} (rgb8, bgr8, mono8)")


# ----------------------------------------------------------------------------------------------- fine-tuning
def transition_msg(transition: dict, layout: list) -> "Float64MultiArray":
    """One chunk transition (``lpds_ros.runtime.transitions``'s wire layout) as std_msgs/Float64MultiArray."""
    from std_msgs.msg import Float64MultiArray, MultiArrayDimension

    from lpds_ros.runtime.transitions import encode

    table, data = encode(transition, layout)
    msg = Float64MultiArray()
    msg.layout.dim = [MultiArrayDimension(label=label, size=size, stride=offset) for label, size, offset in table]
    msg.data = data.tolist()
    return msg


def transition_from_msg(msg, layout: list) -> dict:
    """The inverse of ``transition_msg`` (``LpdsError`` when its fields are not ``layout``'s)."""
    from lpds_ros.runtime.transitions import decode

    table = [(d.label, int(d.size), int(d.stride)) for d in msg.layout.dim]
    return decode(table, np.asarray(msg.data, dtype=np.float64), layout)


def weights_msg(onnx_bytes: bytes) -> "UInt8MultiArray":
    """A steering graph (ONNX bytes with ``lpds_ros.runtime.hotswap``'s metadata) as std_msgs/UInt8MultiArray."""
    from std_msgs.msg import UInt8MultiArray

    msg = UInt8MultiArray()
    msg.data = bytes(onnx_bytes)
    return msg
