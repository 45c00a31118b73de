"""The one place that states lpds_ros's spatial conventions, with the conversions between them.

Conventions (everywhere in the project: observations, demo files, ROS messages, calibration files):

* **Positions** are in metres, expressed in the **robot base frame**: the origin is the centre of the
  Panda's ``link0`` mounting flange, +z points up, +x points forward (away from the robot, towards the
  workspace), +y to the robot's left.  The table top is the plane z = 0 in the simulated scenes.
* **Quaternions** are ``(x, y, z, w)`` (the ROS / scipy order) everywhere outside MuJoCo.  MuJoCo's
  ``(w, x, y, z)`` order appears only inside calls into MuJoCo (``lpds_ros.envs.franka_sim``) and is
  converted at that boundary with :func:`xyzw_to_wxyz` / :func:`wxyz_to_xyzw`.
* **TCP** (tool centre point, "the end effector") is the **fingertip centre**: the point midway between
  the two fingertip pads, on the gripper's axis.  Its frame has z along the approach direction (out of
  the gripper), y along the finger opening direction and x = y × z.  In the simulated Panda (whose
  fingers are the gymnasium-robotics meshes, 1.75× longer than the real ones) it sits
  :data:`SIM_TCP_OFFSET_LINK7` metres along link 7's z axis.
* **Gripper width** is the distance the fingers are open (0 closed … 0.08 m fully open in sim).
* **Top-down grasp orientation** :data:`DOWN_QUAT_XYZW` = (1, 0, 0, 0): the TCP z axis points along
  −z (down), its x axis along +x and its y (finger) axis along −y.  The 4-D task action keeps this
  orientation fixed.

A quaternion and its negation are the same rotation; observations pick the hemisphere with
:func:`canonical_quat` against a reference (the down orientation for the end effector, identity for
objects) so that a policy never sees a sign flip.
"""
from __future__ import annotations

import numpy as np

#: Top-down grasp orientation of the TCP, (x, y, z, w): a half turn about the base x axis.
DOWN_QUAT_XYZW = np.array([1.0, 0.0, 0.0, 0.0])
#: Identity rotation, (x, y, z, w).
IDENTITY_QUAT_XYZW = np.array([0.0, 0.0, 0.0, 1.0])
#: Distance (m) from the simulated Panda's link 7 origin to the TCP along link 7's z axis
#: (flange 0.107 + finger mount 0.0584 + fingertip-pad centre 0.0875 in the 1.75×-scaled fingers).
SIM_TCP_OFFSET_LINK7 = 0.2529


def xyzw_to_wxyz(q) -> np.ndarray:
    """(x, y, z, w) -> MuJoCo's (w, x, y, z); works on (..., 4) arrays."""
    q = np.asarray(q, dtype=np.float64)
    return np.concatenate([q[..., 3:4], q[..., 0:3]], axis=-1)


def wxyz_to_xyzw(q) -> np.ndarray:
    """MuJoCo's (w, x, y, z) -> (x, y, z, w); works on (..., 4) arrays."""
    q = np.asarray(q, dtype=np.float64)
    return np.concatenate([q[..., 1:4], q[..., 0:1]], axis=-1)


def canonical_quat(q_xyzw, ref_xyzw=IDENTITY_QUAT_XYZW) -> np.ndarray:
    """Unit quaternion in the hemisphere of ``ref_xyzw`` (q and −q are one rotation); (..., 4) arrays."""
    q = np.asarray(q_xyzw, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    sign = np.where(np.sum(q * np.asarray(ref_xyzw), axis=-1, keepdims=True) < 0.0, -1.0, 1.0)
    return q * sign


def quat_from_yaw(yaw: float) -> np.ndarray:
    """Rotation by ``yaw`` radians about the base z axis, (x, y, z, w)."""
    return np.array([0.0, 0.0, np.sin(yaw / 2.0), np.cos(yaw / 2.0)])


def quat_multiply(a_xyzw, b_xyzw) -> np.ndarray:
    """Hamilton product a ⊗ b (apply b, then a), both (x, y, z, w)."""
    ax, ay, az, aw = np.asarray(a_xyzw, dtype=np.float64)
    bx, by, bz, bw = np.asarray(b_xyzw, dtype=np.float64)
    return np.array([
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    ])


def quat_to_matrix(q_xyzw) -> np.ndarray:
    """3×3 rotation matrix of a (x, y, z, w) quaternion (normalised first)."""
    x, y, z, w = np.asarray(q_xyzw, dtype=np.float64) / np.linalg.norm(q_xyzw)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quat(rot) -> np.ndarray:
    """(x, y, z, w) quaternion (w >= 0) of a 3×3 rotation matrix."""
    r = np.asarray(rot, dtype=np.float64).reshape(3, 3)
    trace = np.trace(r)
    if trace > 0.0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = np.array([(r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, 0.25 * s])
    else:
        i = int(np.argmax(np.diag(r)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + r[i, i] - r[j, j] - r[k, k])
        q = np.empty(4)
        q[i] = 0.25 * s
        q[j] = (r[j, i] + r[i, j]) / s
        q[k] = (r[k, i] + r[i, k]) / s
        q[3] = (r[k, j] - r[j, k]) / s
    q = q / np.linalg.norm(q)
    return q if q[3] >= 0.0 else -q


def yaw_of_quat(q_xyzw) -> float:
    """Heading (rotation about base z, radians) of the frame's x axis."""
    x, y, z, w = np.asarray(q_xyzw, dtype=np.float64)
    return float(np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z)))
