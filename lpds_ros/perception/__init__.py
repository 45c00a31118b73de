"""Pure perception logic (no ROS): observation assembly from stamped measurements, and object poses from
ArUco/AprilTag markers with camera intrinsics and hand-eye extrinsics.  ``nodes/perception`` wraps it."""
from lpds_ros.perception.calibration import (
    CameraIntrinsics,
    HandEyeCalibration,
    MarkerConfig,
)
from lpds_ros.perception.markers import (
    MarkerPoseEstimator,
    ObjectPose,
    PerceptionError,
    render_marker,
)
from lpds_ros.perception.observation import (
    DERIVED_KEYS,
    DerivedKey,
    Observation,
    ObservationAssembler,
    ObservationError,
    Stamped,
    standard_sources,
)

__all__ = [
    "DERIVED_KEYS",
    "CameraIntrinsics",
    "DerivedKey",
    "HandEyeCalibration",
    "MarkerConfig",
    "MarkerPoseEstimator",
    "ObjectPose",
    "Observation",
    "ObservationAssembler",
    "ObservationError",
    "PerceptionError",
    "Stamped",
    "render_marker",
    "standard_sources",
]
