"""Observation assembly: the latest stamped measurements in, the policy's flat float32 vector out.

The layout is an ordered mapping key -> size that the task (env) defines, e.g.::

    {"robot0_joint_pos": 7, "robot0_joint_vel": 7, "robot0_eef_pos": 3, "robot0_eef_quat": 4,
     "robot0_gripper_width": 1, "object_pos": 3, "object_quat": 4, "object_to_eef_pos": 3, "goal_pos": 3}

A key is either a *source* -- supplied by the caller under that same name as a ``Stamped`` value -- or
a *derived* key listed in ``DERIVED_KEYS``, computed from its sources (``object_to_eef_pos`` =
``robot0_eef_pos - object_pos``).  The assembler is generic: any layout over source names and derived
keys works, in any order.  The observation's ``stamp`` is the oldest stamp of every source it used;
the policy carries it into its targets and the safety filter's watchdog judges their age by it.
A source with stamp None is a constant (a goal from a config file) and does not age.

Frames and units: positions in metres in the robot base frame, quaternions (x, y, z, w), joint
positions in radians, the gripper width in metres (sum of the two finger positions).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from lpds_ros.errors import LpdsError
from lpds_ros.frames import DOWN_QUAT_XYZW, IDENTITY_QUAT_XYZW, canonical_quat


class ObservationError(LpdsError, ValueError):
    """A source is missing, has the wrong size or is not finite, or the layout is malformed."""


@dataclass(frozen=True)
class Stamped:
    """A measured value and the time it was measured (seconds; None for a constant that never ages)."""

    value: np.ndarray | float
    stamp: float | None


@dataclass(frozen=True)
class DerivedKey:
    """An observation key computed from other keys' values."""

    sources: tuple[str, ...]
    size: int
    compute: Callable[..., np.ndarray]
    doc: str = ""


#: Keys computed from sources.  Extend here (one entry per key) when a task needs another.
DERIVED_KEYS: dict[str, DerivedKey] = {
    "object_to_eef_pos": DerivedKey(
        ("robot0_eef_pos", "object_pos"), 3, lambda eef, obj: eef - obj,
        "end-effector position minus object position (robosuite's gripper_to_cube_pos)",
    ),
    "object_to_goal_pos": DerivedKey(
        ("goal_pos", "object_pos"), 3, lambda goal, obj: goal - obj, "goal position minus object position",
    ),
}


@dataclass(frozen=True)
class Observation:
    """An assembled observation."""

    vector: np.ndarray  # (D,) float32, in layout order
    stamp: float  # oldest stamp of the sources used (nan if every source is a constant)
    stamps: dict[str, float] = field(default_factory=dict)  # per stamped source


def standard_sources(
    *,
    joint_positions: np.ndarray | None = None,
    joint_velocities: np.ndarray | None = None,
    joint_stamp: float | None = None,
    eef_position: np.ndarray | None = None,
    eef_orientation: np.ndarray | None = None,
    eef_stamp: float | None = None,
    finger_positions: np.ndarray | None = None,
    gripper_stamp: float | None = None,
    object_position: np.ndarray | None = None,
    object_orientation: np.ndarray | None = None,
    object_stamp: float | None = None,
    goal_position: np.ndarray | None = None,
) -> dict[str, Stamped]:
    """The usual sources under their observation names, from what the perception node receives.

    joint states -> robot0_joint_pos / robot0_joint_vel; current_pose -> robot0_eef_pos / robot0_eef_quat;
    the gripper's two finger positions -> robot0_gripper_width (their sum); the object pose ->
    object_pos / object_quat; a goal from config -> goal_pos (constant).  Arguments left None are
    left out, so the assembler reports them by name if the layout needs them.

    Quaternions get the sign the simulated tasks give them (``lpds_ros.frames.canonical_quat``): the
    end effector's in the hemisphere of the top-down pose, the object's with w >= 0, so a policy trained
    in sim never sees a sign flip from a real pose estimate.
    """
    sources: dict[str, Stamped] = {}

    def put(name: str, value, stamp) -> None:
        if value is not None:
            sources[name] = Stamped(np.asarray(value, dtype=np.float64), stamp)

    put("robot0_joint_pos", joint_positions, joint_stamp)
    put("robot0_joint_vel", joint_velocities, joint_stamp)
    put("robot0_eef_pos", eef_position, eef_stamp)
    if eef_orientation is not None:
        put("robot0_eef_quat", canonical_quat(eef_orientation, DOWN_QUAT_XYZW), eef_stamp)
    if finger_positions is not None:
        put("robot0_gripper_width", np.sum(np.asarray(finger_positions, dtype=np.float64)).reshape(1), gripper_stamp)
    put("object_pos", object_position, object_stamp)
    if object_orientation is not None:
        put("object_quat", canonical_quat(object_orientation, IDENTITY_QUAT_XYZW), object_stamp)
    put("goal_pos", goal_position, None)
    return sources


class ObservationAssembler:
    """Flat observation vectors in a fixed layout from named, stamped sources."""

    def __init__(self, layout: Mapping[str, int]):
        if not isinstance(layout, Mapping) or not layout:
            raise ObservationError(f"observation layout must be a non-empty mapping key -> size, got {layout!r}")
        for key, size in layout.items():
            if not isinstance(key, str) or isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise ObservationError(f"observation layout entry {key!r}: {size!r} must be a key name and a positive size")
            if key in DERIVED_KEYS and DERIVED_KEYS[key].size != size:
                raise ObservationError(
                    f"observation layout gives {key!r} size {size}, but it is derived with size {DERIVED_KEYS[key].size}"
                )
        self.layout: dict[str, int] = dict(layout)
        self.dim = sum(self.layout.values())
        offsets = np.cumsum([0, *self.layout.values()])
        self.slices = {key: slice(int(a), int(b)) for key, a, b in zip(self.layout, offsets[:-1], offsets[1:])}
        needed: list[str] = []
        for key in self.layout:
            for name in DERIVED_KEYS[key].sources if key in DERIVED_KEYS else (key,):
                if name not in needed:
                    needed.append(name)
        #: Source names the caller must supply, in first-use order.
        self.required_sources: tuple[str, ...] = tuple(needed)

    def assemble(self, sources: Mapping[str, Stamped]) -> Observation:
        """The observation from ``sources`` (name -> Stamped); extra sources are ignored.

        Raises ObservationError naming the key when a needed source is missing, has the wrong number
        of values, or is not finite.
        """
        values: dict[str, np.ndarray] = {}
        stamps: dict[str, float] = {}
        for name in self.required_sources:
            if name not in sources:
                users = [k for k in self.layout if k == name or (k in DERIVED_KEYS and name in DERIVED_KEYS[k].sources)]
                raise ObservationError(f"observation source {name!r} is missing (needed by {users}); got {sorted(sources)}")
            item = sources[name]
            value = np.asarray(item.value if isinstance(item, Stamped) else item, dtype=np.float64).reshape(-1)
            if not np.isfinite(value).all():
                raise ObservationError(f"observation source {name!r} is not finite: {value.tolist()}")
            values[name] = value
            stamp = item.stamp if isinstance(item, Stamped) else None
            if stamp is not None:
                stamps[name] = float(stamp)
        vector = np.empty(self.dim, dtype=np.float32)
        for key, size in self.layout.items():
            if key in DERIVED_KEYS:
                derived = DERIVED_KEYS[key]
                for name in derived.sources:
                    _check_size(name, values[name], derived.size)
                value = np.asarray(derived.compute(*(values[name] for name in derived.sources)), dtype=np.float64).reshape(-1)
            else:
                value = values[key]
            _check_size(key, value, size)
            vector[self.slices[key]] = value
        oldest = min(stamps.values()) if stamps else math.nan
        return Observation(vector, oldest, stamps)


def _check_size(key: str, value: np.ndarray, size: int) -> None:
    if value.size != size:
        raise ObservationError(f"observation source {key!r} has {value.size} values, the layout wants {size}")
