"""Quaternion helpers for the ROS stack, vectorised over a leading batch axis.

Quaternions are (x, y, z, w), the order of ROS messages (``geometry_msgs/Quaternion``).  Every function
takes arrays of shape (..., 4) / (..., 3) / (..., 3, 3) and never loops in Python, so the safety filter
can run a million cycles in a benchmark through the same code the node calls once per cycle.
The safety filter and the perception core both use this module; nothing here imports ROS.
"""
from __future__ import annotations

import numpy as np

IDENTITY_QUAT = np.array([0.0, 0.0, 0.0, 1.0])

# A quaternion whose norm is below this (after rescaling huge inputs) has no usable direction.
_MIN_QUAT_NORM = 1e-6


def norm(x: np.ndarray) -> np.ndarray:
    """Euclidean norm over the last axis (np.linalg.norm is slow on tiny arrays)."""
    return np.sqrt((x * x).sum(axis=-1))


def normalize_quat(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit quaternions and a validity mask: q (..., 4) -> (unit (..., 4), ok (...,)).

    Non-finite or (near-)zero inputs are not ok; their output row is the identity.  Huge finite inputs
    (1e300) are rescaled before the norm is taken, so they neither overflow nor count as bad.
    """
    q = np.asarray(q, dtype=np.float64)
    with np.errstate(all="ignore"):
        finite = np.isfinite(q).all(axis=-1)
        scale = np.where(finite, np.abs(q).max(axis=-1), 1.0)
        scaled = q / np.where(scale > 0, scale, 1.0)[..., None]
        length = norm(scaled)
        ok = finite & (scale > 0) & (length * scale > _MIN_QUAT_NORM)
        unit = scaled / np.where(ok, length, 1.0)[..., None]
    return np.where(ok[..., None], unit, IDENTITY_QUAT), ok


def align_quat(q: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """q or -q, whichever lies in the same hemisphere as ``reference`` (same rotation, shortest path)."""
    sign = np.where((q * reference).sum(axis=-1) < 0.0, -1.0, 1.0)
    return q * sign[..., None]


def quat_angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotation angle in [0, pi] between unit quaternions a and b (..., 4) -> (...,).

    Uses atan2 of the chord lengths, which stays accurate for tiny angles (arccos of the dot does not).
    """
    b = align_quat(b, a)
    return 4.0 * np.arctan2(norm(a - b), norm(a + b))


def quat_slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    """Shortest-path spherical interpolation from a (t=0) to b (t=1); unit inputs, t broadcast over (...)."""
    b = align_quat(b, a)
    t = np.asarray(t, dtype=np.float64)[..., None]
    half = 2.0 * np.arctan2(norm(a - b), norm(a + b))[..., None]
    small = half < 1e-9
    sin_half = np.where(small, 1.0, np.sin(half))
    wa = np.where(small, 1.0 - t, np.sin((1.0 - t) * half) / sin_half)
    wb = np.where(small, t, np.sin(t * half) / sin_half)
    out = wa * a + wb * b
    return out / norm(out)[..., None]


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b (rotation b first, then a), (x, y, z, w) order."""
    ax, ay, az, aw = np.moveaxis(a, -1, 0)
    bx, by, bz, bw = np.moveaxis(b, -1, 0)
    return np.stack(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ],
        axis=-1,
    )


def quat_conjugate(q: np.ndarray) -> np.ndarray:
    """The inverse rotation of a unit quaternion."""
    return q * np.array([-1.0, -1.0, -1.0, 1.0])


def quat_to_rotvec(q: np.ndarray) -> np.ndarray:
    """Axis * angle (..., 3) of unit quaternions (..., 4), angle in [0, pi]."""
    q = align_quat(q, IDENTITY_QUAT)  # w >= 0: the short way round
    vec = q[..., :3]
    sin_half = norm(vec)
    angle = 2.0 * np.arctan2(sin_half, q[..., 3])
    # angle / sin(angle/2) -> 2 as the angle -> 0
    factor = np.where(sin_half > 1e-12, angle / np.where(sin_half > 1e-12, sin_half, 1.0), 2.0)
    return vec * factor[..., None]


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) of unit quaternions (..., 4)."""
    x, y, z, w = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], axis=-1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], axis=-1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], axis=-1),
        ],
        axis=-2,
    )


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """Unit quaternions (..., 4), w >= 0, of rotation matrices (..., 3, 3).

    Picks the numerically largest of w, x, y, z as the pivot (Shepperd's method), so it is accurate
    for every rotation, including half turns.
    """
    m = np.asarray(m, dtype=np.float64)
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    trace = m00 + m11 + m22
    candidates = np.stack(
        [
            # pivot x
            np.stack([1 + m00 - m11 - m22, m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0], m[..., 2, 1] - m[..., 1, 2]], -1),
            # pivot y
            np.stack([m[..., 0, 1] + m[..., 1, 0], 1 - m00 + m11 - m22, m[..., 1, 2] + m[..., 2, 1], m[..., 0, 2] - m[..., 2, 0]], -1),
            # pivot z
            np.stack([m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1], 1 - m00 - m11 + m22, m[..., 1, 0] - m[..., 0, 1]], -1),
            # pivot w
            np.stack([m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1], 1 + trace], -1),
        ],
        axis=-2,
    )
    pivot = np.argmax(np.stack([m00, m11, m22, trace], axis=-1), axis=-1)
    q = np.take_along_axis(candidates, pivot[..., None, None], axis=-2)[..., 0, :]
    q = q / norm(q)[..., None]
    return align_quat(q, IDENTITY_QUAT)
