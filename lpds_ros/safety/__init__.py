"""Pure safety-filter logic (no ROS): workspace box, step limits, reference limiting, joint-limit margin,
NaN/inf rejection, watchdog, latched e-stop, robot-mode holds.  ``nodes/safety_filter`` wraps it."""
from lpds_ros.safety.config import (
    ROBOT_MODES,
    SafetyConfig,
    WorkspaceBox,
    load_safety_config,
)
from lpds_ros.safety.filter import (
    GRIPPER_CLOSED,
    GRIPPER_OPEN,
    ArmCommand,
    BatchSafetyFilter,
    DecisionBatch,
    Limit,
    MeasuredState,
    Reason,
    RequestBatch,
    SafetyDecision,
    SafetyFilter,
    StateBatch,
    TargetRequest,
    gripper_value,
)
from lpds_ros.safety.gripper import GripperGate

__all__ = [
    "ROBOT_MODES",
    "GRIPPER_CLOSED",
    "GRIPPER_OPEN",
    "ArmCommand",
    "BatchSafetyFilter",
    "DecisionBatch",
    "GripperGate",
    "Limit",
    "MeasuredState",
    "Reason",
    "RequestBatch",
    "SafetyConfig",
    "SafetyDecision",
    "SafetyFilter",
    "StateBatch",
    "TargetRequest",
    "WorkspaceBox",
    "gripper_value",
    "load_safety_config",
]
