"""Camera calibration for marker-based object poses: intrinsics, hand-eye extrinsics, the marker.

Three files under calibration/, each a dataclass loaded by ``lpds_ros.config.load_config``:

- camera_intrinsics.yaml: the camera_info YAML that ROS' camera_calibration writes (same keys), so a
  calibration of the real camera drops in unchanged;
- hand_eye.yaml: where the camera's optical frame is (x right, y down, z forward), either fixed in the
  robot base frame or mounted on the hand (in the TCP frame);
- marker.yaml: which ArUco/AprilTag marker is on the object, its size, and where the object's frame
  lies relative to the marker.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from lpds_ros.config import ConfigError
from lpds_ros.safety.rotations import normalize_quat, quat_to_matrix


def _matrix_field(obj: object, name: str, rows: int, cols: int | tuple[int, ...]) -> np.ndarray:
    """Validate a camera_info matrix entry {rows, cols, data} and return it as an array."""
    value = getattr(obj, name)
    where = f"{type(obj).__name__}.{name}"
    if not isinstance(value, dict) or set(value) != {"rows", "cols", "data"}:
        raise ConfigError(f"{where} must be a mapping with keys rows, cols, data, got {value!r}")
    allowed = cols if isinstance(cols, tuple) else (cols,)
    if value["rows"] != rows or value["cols"] not in allowed:
        raise ConfigError(f"{where} must be {rows} x {' or '.join(map(str, allowed))}, got {value['rows']} x {value['cols']}")
    try:
        data = np.asarray(value["data"], dtype=np.float64)
    except (TypeError, ValueError):
        data = np.array([np.nan])
    if data.shape != (rows * value["cols"],) or not np.isfinite(data).all():
        raise ConfigError(f"{where}.data must be {rows * value['cols']} finite numbers, got {value['data']!r}")
    return data.reshape(rows, value["cols"])


def _vector_field(obj: object, name: str, length: int) -> np.ndarray:
    value = getattr(obj, name)
    try:
        data = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        data = None
    if data is None or data.shape != (length,) or not np.isfinite(data).all():
        raise ConfigError(f"{type(obj).__name__}.{name} must be {length} finite numbers, got {value!r}")
    return data


def _unit_quat_field(obj: object, name: str) -> np.ndarray:
    quat = _vector_field(obj, name, 4)
    if abs(np.linalg.norm(quat) - 1.0) > 1e-3:
        raise ConfigError(f"{type(obj).__name__}.{name} must be a unit quaternion (x, y, z, w), its norm is {np.linalg.norm(quat):.4f}")
    return normalize_quat(quat)[0]


def _pose_matrix(position: np.ndarray, orientation: np.ndarray) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = quat_to_matrix(orientation)
    pose[:3, 3] = position
    return pose


def _identity_matrix(rows: int, cols: int) -> dict[str, Any]:
    return {"rows": rows, "cols": cols, "data": np.eye(rows, cols).reshape(-1).tolist()}


_DISTORTION_SIZES = {"plumb_bob": (5,), "rational_polynomial": (8, 12, 14)}


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics in ROS camera_info YAML form (calibration/camera_intrinsics.yaml)."""

    #: Image width in pixels; images of another size are rejected.
    image_width: int = 1280
    #: Image height in pixels.
    image_height: int = 720
    #: Free-form camera name (camera_calibration writes it; not used).
    camera_name: str = "camera"
    #: K = [fx 0 cx; 0 fy cy; 0 0 1], row-major, as {rows: 3, cols: 3, data: [...]}.
    camera_matrix: dict = field(
        default_factory=lambda: {"rows": 3, "cols": 3, "data": [910.0, 0.0, 640.0, 0.0, 910.0, 360.0, 0.0, 0.0, 1.0]}
    )
    #: "plumb_bob" (k1 k2 p1 p2 k3) or "rational_polynomial" (8, 12 or 14 OpenCV coefficients).
    distortion_model: str = "plumb_bob"
    #: Distortion coefficients as {rows: 1, cols: n, data: [...]}.
    distortion_coefficients: dict = field(default_factory=lambda: {"rows": 1, "cols": 5, "data": [0.0] * 5})
    #: Stereo rectification (camera_info R); kept for compatibility, not used for a monocular camera.
    rectification_matrix: dict = field(default_factory=lambda: _identity_matrix(3, 3))
    #: Projection matrix (camera_info P); kept for compatibility, not used (K and D are).
    projection_matrix: dict = field(
        default_factory=lambda: {"rows": 3, "cols": 4, "data": [910.0, 0.0, 640.0, 0.0, 0.0, 910.0, 360.0, 0.0, 0.0, 0.0, 1.0, 0.0]}
    )

    def __post_init__(self) -> None:
        for name in ("image_width", "image_height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"CameraIntrinsics.{name} must be a positive integer, got {value!r}")
        k = _matrix_field(self, "camera_matrix", 3, 3)
        if not (k[0, 0] > 0 and k[1, 1] > 0 and k[0, 1] == 0 and (k[1:, 0] == 0).all() and (k[2] == [0, 0, 1]).all()):
            raise ConfigError(f"CameraIntrinsics.camera_matrix must be [fx 0 cx; 0 fy cy; 0 0 1] with fx, fy > 0, got {k.tolist()}")
        if self.distortion_model not in _DISTORTION_SIZES:
            raise ConfigError(
                f"CameraIntrinsics.distortion_model must be one of {sorted(_DISTORTION_SIZES)}, got {self.distortion_model!r}"
            )
        _matrix_field(self, "distortion_coefficients", 1, _DISTORTION_SIZES[self.distortion_model])
        _matrix_field(self, "rectification_matrix", 3, 3)
        _matrix_field(self, "projection_matrix", 3, 4)

    @property
    def K(self) -> np.ndarray:
        """The 3x3 camera matrix."""
        return np.asarray(self.camera_matrix["data"], dtype=np.float64).reshape(3, 3)

    @property
    def distortion(self) -> np.ndarray:
        """Distortion coefficients in OpenCV order."""
        return np.asarray(self.distortion_coefficients["data"], dtype=np.float64)


@dataclass(frozen=True)
class HandEyeCalibration:
    """Pose of the camera's optical frame (x right, y down, z forward) (calibration/hand_eye.yaml)."""

    #: "fixed": the pose is in the robot base frame (eye-to-hand).  "hand": the pose is in the TCP frame
    #: (eye-in-hand) and each estimate needs the current TCP pose.
    mount: str = "fixed"
    #: The frame the pose is expressed in: the robot base for "fixed", the TCP frame for "hand".
    parent_frame: str = "fr3_link0"
    #: The camera's optical frame name (the image header's frame_id).
    camera_frame: str = "camera_color_optical_frame"
    #: Optical frame origin in parent_frame, metres.
    translation: Sequence[float] = (1.25, 0.0, 0.6)
    #: Optical frame orientation in parent_frame, unit quaternion (x, y, z, w).
    rotation: Sequence[float] = (-0.6373176302979591, -0.6373176302979591, 0.3063106888624586, 0.3063106888624586)

    def __post_init__(self) -> None:
        if self.mount not in ("fixed", "hand"):
            raise ConfigError(f"HandEyeCalibration.mount must be 'fixed' or 'hand', got {self.mount!r}")
        for name in ("parent_frame", "camera_frame"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"HandEyeCalibration.{name} must be a non-empty frame name, got {getattr(self, name)!r}")
        _vector_field(self, "translation", 3)
        _unit_quat_field(self, "rotation")

    @property
    def matrix(self) -> np.ndarray:
        """4x4 transform parent_frame <- camera optical frame."""
        return _pose_matrix(np.asarray(self.translation, dtype=np.float64), normalize_quat(np.asarray(self.rotation, dtype=np.float64))[0])


@dataclass(frozen=True)
class MarkerConfig:
    """The fiducial on the object (calibration/marker.yaml)."""

    #: An OpenCV predefined dictionary: DICT_4X4_50 ... DICT_7X7_1000, DICT_ARUCO_ORIGINAL, or an
    #: AprilTag family such as DICT_APRILTAG_36h11.
    dictionary: str = "DICT_4X4_50"
    #: The marker's id in that dictionary.
    marker_id: int = 0
    #: Side of the marker's black square (outer edge of its black border), metres.  Measure the print.
    marker_length_m: float = 0.04
    #: Object frame origin in the marker frame (marker frame: origin at the square's centre, x to the
    #: right and y up as the marker is printed, z out of the face), metres.
    object_in_marker_position: Sequence[float] = (0.0, 0.0, -0.025)
    #: Object frame orientation in the marker frame, unit quaternion (x, y, z, w).
    object_in_marker_orientation: Sequence[float] = (0.0, 0.0, 0.0, 1.0)
    #: Detections whose corners reproject worse than this (pixels, RMS) are discarded.
    max_reprojection_error_px: float = 2.0

    def __post_init__(self) -> None:
        import cv2  # OpenCV only where a marker is used

        if not isinstance(self.dictionary, str) or not self.dictionary.startswith("DICT_") or not hasattr(cv2.aruco, self.dictionary):
            names = sorted(n for n in dir(cv2.aruco) if n.startswith("DICT_"))
            raise ConfigError(f"MarkerConfig.dictionary must be an OpenCV aruco dictionary ({', '.join(names)}), got {self.dictionary!r}")
        size = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary)).bytesList.shape[0]
        if isinstance(self.marker_id, bool) or not isinstance(self.marker_id, int) or not 0 <= self.marker_id < size:
            raise ConfigError(f"MarkerConfig.marker_id must be an integer in [0, {size}) for {self.dictionary}, got {self.marker_id!r}")
        for name in ("marker_length_m", "max_reprojection_error_px"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"MarkerConfig.{name} must be a positive number, got {value!r}")
        _vector_field(self, "object_in_marker_position", 3)
        _unit_quat_field(self, "object_in_marker_orientation")

    @property
    def object_in_marker(self) -> np.ndarray:
        """4x4 transform marker <- object."""
        return _pose_matrix(
            np.asarray(self.object_in_marker_position, dtype=np.float64),
            normalize_quat(np.asarray(self.object_in_marker_orientation, dtype=np.float64))[0],
        )
