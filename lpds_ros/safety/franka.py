"""Franka Panda / FR3 facts the safety filter needs: joint limits and the arm's kinematics.

Both arms share one kinematic chain (Franka's published modified Denavit-Hartenberg table, below), so one
forward-kinematics / Jacobian routine serves both; only the joint position limits differ.  The TCP is the
centre between the fingertips of the Franka Hand: ``tcp_offset`` metres along the flange's z axis
(0.1034 m for the standard hand), which is also the frame crisp_controllers' ``target_pose`` refers to
when its end-effector frame is ``fr3_hand_tcp``.

Everything is vectorised over a leading batch axis: q has shape (B, 7).
"""
from __future__ import annotations

import numpy as np

#: Joint position limits in radians, (lower, upper) per joint, from Franka's robot datasheets.
JOINT_LIMITS: dict[str, tuple[np.ndarray, np.ndarray]] = {
    "panda": (
        np.array([-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973]),
        np.array([2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973]),
    ),
    "fr3": (
        np.array([-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159]),
        np.array([2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159]),
    ),
}

#: Modified (Craig) DH parameters (a [m], d [m], alpha [rad]) of joints 1..7, then the flange (fixed).
#: Link i's transform is RotX(alpha) * TransX(a) * RotZ(q_i) * TransZ(d).
DH_PARAMS = np.array(
    [
        (0.0, 0.333, 0.0),
        (0.0, 0.0, -np.pi / 2),
        (0.0, 0.316, np.pi / 2),
        (0.0825, 0.0, np.pi / 2),
        (-0.0825, 0.384, -np.pi / 2),
        (0.0, 0.0, np.pi / 2),
        (0.088, 0.0, np.pi / 2),
        (0.0, 0.107, 0.0),  # flange
    ]
)

#: The Franka Hand is mounted rotated by -45 degrees about the flange's z axis.
HAND_YAW = -np.pi / 4

#: Distance from the flange to the fingertip centre of the Franka Hand, metres.
HAND_TCP_OFFSET = 0.1034


def _dh_transform(a: float, d: float, alpha: float, theta: np.ndarray) -> np.ndarray:
    """(B, 4, 4) transforms RotX(alpha) TransX(a) RotZ(theta) TransZ(d) for a batch of angles."""
    ct, st = np.cos(theta), np.sin(theta)
    ca, sa = np.cos(alpha), np.sin(alpha)
    zeros, ones = np.zeros_like(theta), np.ones_like(theta)
    return np.stack(
        [
            np.stack([ct, -st, zeros, a * ones], -1),
            np.stack([st * ca, ct * ca, -sa * ones, -d * sa * ones], -1),
            np.stack([st * sa, ct * sa, ca * ones, d * ca * ones], -1),
            np.stack([zeros, zeros, zeros, ones], -1),
        ],
        axis=-2,
    )


def forward_kinematics(q: np.ndarray, tcp_offset: float = HAND_TCP_OFFSET) -> tuple[np.ndarray, np.ndarray]:
    """Joint frames and the TCP pose of a batch of configurations.

    q: (B, 7) joint positions [rad].
    Returns (frames (B, 7, 4, 4): the base->joint-i frames, whose z axis is joint i's axis;
             tcp (B, 4, 4): the base->TCP transform, hand yaw and ``tcp_offset`` applied).
    """
    q = np.atleast_2d(np.asarray(q, dtype=np.float64))
    batch = q.shape[0]
    pose = np.broadcast_to(np.eye(4), (batch, 4, 4)).copy()
    frames = np.empty((batch, 7, 4, 4))
    for i, (a, d, alpha) in enumerate(DH_PARAMS):
        theta = q[:, i] if i < 7 else np.zeros(batch)
        pose = pose @ _dh_transform(a, d, alpha, theta)
        if i < 7:
            frames[:, i] = pose
    hand = _dh_transform(0.0, tcp_offset, 0.0, np.full(batch, HAND_YAW))
    return frames, pose @ hand


def jacobian(q: np.ndarray, tcp_offset: float = HAND_TCP_OFFSET) -> tuple[np.ndarray, np.ndarray]:
    """Geometric Jacobian of the TCP in the base frame.

    q: (B, 7).  Returns (J (B, 6, 7): rows vx, vy, vz, wx, wy, wz; tcp (B, 4, 4)).
    """
    frames, tcp = forward_kinematics(q, tcp_offset)
    axes = frames[:, :, :3, 2]  # (B, 7, 3)
    origins = frames[:, :, :3, 3]
    linear = np.cross(axes, tcp[:, None, :3, 3] - origins)
    return np.concatenate([linear, axes], axis=-1).transpose(0, 2, 1), tcp
