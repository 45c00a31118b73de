"""Safety-filter configuration: the workspace box (calibration/workspace.yaml) and the limits (config/safety.yaml).

Two files because they change for different reasons: the box is measured once per cell and belongs to
the calibration, the limits are a policy decision.  Both load through ``lpds_ros.config.load_config``
(unknown keys rejected); ``load_safety_config`` puts them together.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from lpds_ros.config import ConfigError, load_config
from lpds_ros.safety.franka import JOINT_LIMITS

#: franka_msgs/FrankaRobotState robot_mode constants (= libfranka's franka::RobotMode order).
ROBOT_MODES = {
    "OTHER": 0,
    "IDLE": 1,
    "MOVE": 2,
    "GUIDING": 3,
    "REFLEX": 4,
    "USER_STOPPED": 5,
    "AUTOMATIC_ERROR_RECOVERY": 6,
}


def _check_positive(obj: object, name: str, allow_zero: bool = False) -> None:
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{type(obj).__name__}.{name} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{type(obj).__name__}.{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def _check_vector(obj: object, name: str, length: int) -> np.ndarray:
    value = getattr(obj, name)
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        array = None
    if array is None or array.shape != (length,) or not np.isfinite(array).all():
        raise ConfigError(f"{type(obj).__name__}.{name} must be {length} finite numbers, got {value!r}")
    return array


@dataclass(frozen=True)
class WorkspaceBox:
    """The axis-aligned box the commanded TCP position must stay in (calibration/workspace.yaml)."""

    #: The frame the box is expressed in: the robot base (``fr3_link0`` / ``panda_link0``).  The safety
    #: node checks that incoming poses carry this frame id.
    frame: str = "fr3_link0"
    #: Lower corner (x, y, z) in metres, in ``frame``.
    min_xyz: Sequence[float] = (0.25, -0.40, 0.01)
    #: Upper corner (x, y, z) in metres, in ``frame``.
    max_xyz: Sequence[float] = (0.75, 0.40, 0.60)

    def __post_init__(self) -> None:
        if not isinstance(self.frame, str) or not self.frame:
            raise ConfigError(f"WorkspaceBox.frame must be a non-empty frame name, got {self.frame!r}")
        lo = _check_vector(self, "min_xyz", 3)
        hi = _check_vector(self, "max_xyz", 3)
        if not (lo < hi).all():
            raise ConfigError(f"WorkspaceBox: min_xyz {lo.tolist()} must be below max_xyz {hi.tolist()} on every axis")

    @property
    def lo(self) -> np.ndarray:
        """Lower corner as a float64 array (3,)."""
        return np.asarray(self.min_xyz, dtype=np.float64)

    @property
    def hi(self) -> np.ndarray:
        """Upper corner as a float64 array (3,)."""
        return np.asarray(self.max_xyz, dtype=np.float64)

    def contains(self, position: np.ndarray, tol: float = 0.0) -> np.ndarray:
        """Whether positions (..., 3) lie in the box, enlarged by ``tol`` metres."""
        position = np.asarray(position, dtype=np.float64)
        return ((position >= self.lo - tol) & (position <= self.hi + tol)).all(axis=-1)


@dataclass(frozen=True)
class SafetyConfig:
    """Limits of the safety filter (config/safety.yaml; the box comes from calibration/workspace.yaml).

    Step limits are per filter cycle: at a control rate f they allow a TCP speed of
    ``max_translation_step_m * f``.  They must be at least the policy's own per-step bound, or the arm
    lags the policy and behaves differently than in the plain gymnasium loop (the Franka tasks step
    their target by up to 0.03 m per axis, 0.052 m diagonally, at 20 Hz).
    """

    #: The workspace box; set by ``load_safety_config`` from calibration/workspace.yaml, not from safety.yaml.
    workspace: WorkspaceBox = field(default_factory=WorkspaceBox)
    #: Largest TCP translation between two consecutive emitted commands, metres per cycle.
    max_translation_step_m: float = 0.055
    #: Largest TCP rotation between two consecutive emitted commands, radians per cycle.
    max_rotation_step_rad: float = 0.15
    #: Reference limiting: the target position stays within this distance of the measured TCP position
    #: (``current_pose``), so an arm blocked by contact is not pulled ever harder (no wind-up).
    max_reference_distance_m: float = 0.06
    #: Reference limiting for orientation: largest angle between target and measured orientation, radians.
    max_reference_angle_rad: float = 0.5
    #: Gripper command range; 0 is fully open, 1 is closed (grasp).  Commands outside are clamped.
    gripper_min: float = 0.0
    #: Upper end of the gripper command range (see ``gripper_min``).
    gripper_max: float = 1.0
    #: Watchdog: a request whose stamp is older than this (seconds) is not followed; the last safe
    #: target is held.  The policy stamps each target with its observation's oldest stamp, so this must
    #: cover one executed chunk plus inference latency.
    max_input_age_s: float = 0.5
    #: Watchdog on the measured state (current_pose, joint states, robot mode): older than this -> hold.
    max_state_age_s: float = 0.2
    #: Stamps up to this far in the future (clock offset between machines) are accepted; later ones hold.
    max_future_stamp_s: float = 0.05
    #: At start (no command emitted yet) the measured TCP may lie at most this far outside the box; the
    #: first command starts from the measured pose clamped into the box.  Farther out: hold, and report.
    start_tolerance_m: float = 0.02
    #: Arm model for the joint-limit check: "fr3", "panda", or "none" (check off, joint states not needed).
    robot: str = "fr3"
    #: A joint closer than this (radians) to a position limit may only be moved away from it: a target
    #: that would drive it further out makes the filter step the target back to the measured pose.
    joint_limit_margin_rad: float = 0.1
    #: Flange-to-TCP distance along the flange z axis (metres) used by the joint check's Jacobian;
    #: 0.1034 is the Franka Hand's fingertip centre.
    tcp_offset_m: float = 0.1034
    #: Robot modes (franka_msgs FrankaRobotState names without the ROBOT_MODE_ prefix) in which the filter holds.
    hold_robot_modes: Sequence[str] = ("REFLEX", "USER_STOPPED", "AUTOMATIC_ERROR_RECOVERY")

    def __post_init__(self) -> None:
        if not isinstance(self.workspace, WorkspaceBox):
            raise ConfigError(
                "SafetyConfig.workspace must be a WorkspaceBox: put the box in calibration/workspace.yaml, not in the safety file"
            )
        for name in (
            "max_translation_step_m",
            "max_rotation_step_rad",
            "max_reference_distance_m",
            "max_reference_angle_rad",
            "max_input_age_s",
            "max_state_age_s",
        ):
            _check_positive(self, name)
        for name in ("max_future_stamp_s", "start_tolerance_m", "joint_limit_margin_rad", "tcp_offset_m"):
            _check_positive(self, name, allow_zero=True)
        for name in ("gripper_min", "gripper_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"SafetyConfig.{name} must be a number in [0, 1], got {value!r}")
        if self.gripper_min > self.gripper_max:
            raise ConfigError(f"SafetyConfig.gripper_min ({self.gripper_min}) must not exceed gripper_max ({self.gripper_max})")
        if self.max_rotation_step_rad > math.pi or self.max_reference_angle_rad > math.pi:
            raise ConfigError("SafetyConfig.max_rotation_step_rad and max_reference_angle_rad must be <= pi")
        robots = sorted(JOINT_LIMITS) + ["none"]
        if self.robot not in robots:
            raise ConfigError(f"SafetyConfig.robot must be one of {robots}, got {self.robot!r}")
        if isinstance(self.hold_robot_modes, str) or not all(m in ROBOT_MODES for m in self.hold_robot_modes):
            raise ConfigError(
                f"SafetyConfig.hold_robot_modes must be a list of {sorted(ROBOT_MODES)}, got {self.hold_robot_modes!r}"
            )
        if "MOVE" in self.hold_robot_modes:
            raise ConfigError("SafetyConfig.hold_robot_modes must not contain MOVE: the filter would never let the arm move")


def load_safety_config(safety_path: str | Path | None = None, workspace_path: str | Path | None = None) -> SafetyConfig:
    """SafetyConfig from config/safety.yaml and the box from calibration/workspace.yaml.

    A path left as None keeps the dataclass defaults for that part.  A bad file raises ``ConfigError``
    (an ``LpdsError``) whose message is one line naming the file and the field.
    """
    config = load_config(safety_path, SafetyConfig) if safety_path is not None else SafetyConfig()
    if workspace_path is not None:
        config = dataclasses.replace(config, workspace=load_config(workspace_path, WorkspaceBox))
    return config
