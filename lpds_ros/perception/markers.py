"""Object pose from an RGB image: detect the object's ArUco/AprilTag marker, solve its pose, chain the frames.

    base <- object  =  base <- camera (hand-eye)  @  camera <- marker (PnP)  @  marker <- object (marker.yaml)

For an eye-in-hand camera, base <- camera = base <- TCP (the measured pose) @ TCP <- camera.
The marker's corners are found by OpenCV's ArucoDetector (edges refined by line fits), and its pose by
``solvePnPGeneric`` with the IPPE-square solver, which returns both solutions of the planar ambiguity;
the one with the smaller reprojection error is kept.

``render_marker`` draws a marker at a known pose into a synthetic pinhole image; the tests use it to
check the estimate end to end, and a sim or node test can use it to feed the perception node.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lpds_ros.config import load_config
from lpds_ros.errors import LpdsError
from lpds_ros.perception.calibration import (
    CameraIntrinsics,
    HandEyeCalibration,
    MarkerConfig,
    _pose_matrix,
)
from lpds_ros.safety.rotations import matrix_to_quat, normalize_quat


class PerceptionError(LpdsError, ValueError):
    """An image or a call does not match the calibration (wrong size, missing TCP pose for eye-in-hand)."""


@dataclass(frozen=True)
class ObjectPose:
    """The object's pose in the robot base frame, from one image."""

    position: np.ndarray  # (3,) metres
    orientation: np.ndarray  # (4,) unit quaternion (x, y, z, w)
    stamp: float  # the image's stamp, carried through for the watchdog
    marker_id: int
    reprojection_error_px: float  # RMS corner reprojection error of the chosen PnP solution
    camera_distance_m: float  # distance from the camera to the marker centre


def _marker_corners(length: float) -> np.ndarray:
    """The marker's corners in its own frame, in ArUco's order: top-left, top-right, bottom-right, bottom-left."""
    h = length / 2.0
    return np.array([[-h, h, 0.0], [h, h, 0.0], [h, -h, 0.0], [-h, -h, 0.0]])


class MarkerPoseEstimator:
    """Detects the configured marker and returns the object's pose in the robot base frame."""

    def __init__(self, intrinsics: CameraIntrinsics, hand_eye: HandEyeCalibration, marker: MarkerConfig):
        self.intrinsics = intrinsics
        self.hand_eye = hand_eye
        self.marker = marker
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, marker.dictionary))
        params = cv2.aruco.DetectorParameters()
        # Corners are refined here by fitting lines to the marker's four outer edges (_refine_corners).
        # OpenCV's SUBPIX (cornerSubPix, made for chessboard saddle points) pulled these L-shaped corners
        # inwards by ~0.2 px, a 3-6 mm depth bias at 0.7 m in the synthetic test; its APRILTAG method is
        # accurate but took ~0.5 s per 1280x720 frame.
        params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_NONE
        self._detector = cv2.aruco.ArucoDetector(dictionary, params)
        self._cells = dictionary.markerSize + 2  # cells across the marker, black border included
        self._K = intrinsics.K
        self._dist = intrinsics.distortion
        self._camera_in_parent = hand_eye.matrix
        self._object_in_marker = marker.object_in_marker

    @classmethod
    def from_files(cls, intrinsics: str | Path, hand_eye: str | Path, marker: str | Path) -> "MarkerPoseEstimator":
        """Load calibration/camera_intrinsics.yaml, hand_eye.yaml and marker.yaml (ConfigError on a bad file)."""
        return cls(load_config(intrinsics, CameraIntrinsics), load_config(hand_eye, HandEyeCalibration), load_config(marker, MarkerConfig))

    def _gray(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        width, height = self.intrinsics.image_width, self.intrinsics.image_height
        if image.ndim not in (2, 3) or image.shape[:2] != (height, width) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise PerceptionError(
                f"image has shape {image.shape}, but the camera intrinsics are for {width}x{height} (H x W x 1/3/4 channels)"
            )
        if image.dtype != np.uint8:
            image = np.clip(image, 0, 255).astype(np.uint8)
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[..., 0]
        elif image.ndim == 3:  # RGB or BGR: a black-and-white marker looks the same either way
            image = cv2.cvtColor(image, cv2.COLOR_RGBA2GRAY if image.shape[2] == 4 else cv2.COLOR_RGB2GRAY)
        return image

    def marker_in_camera(self, image: np.ndarray) -> tuple[np.ndarray, float] | None:
        """(camera <- marker 4x4, RMS reprojection error px) of the configured marker, or None if not seen.

        If the id appears more than once, the largest detection is used.  A solution reprojecting worse
        than ``max_reprojection_error_px`` counts as not seen.
        """
        gray = self._gray(image)
        corners, ids, _ = self._detector.detectMarkers(gray)
        if ids is None:
            return None
        matches = [c.reshape(4, 2) for c, i in zip(corners, ids.reshape(-1)) if i == self.marker.marker_id]
        if not matches:
            return None
        best = max(matches, key=lambda c: cv2.contourArea(c.astype(np.float32))).astype(np.float64)
        # undistorted pixel coordinates: the marker's edges are straight lines there
        undistorted = cv2.undistortPoints(best.reshape(-1, 1, 2), self._K, self._dist, P=self._K).reshape(4, 2)
        refined = _refine_corners(gray, best, self._cells, self._K, self._dist)
        ok, rvecs, tvecs, errors = cv2.solvePnPGeneric(
            _marker_corners(self.marker.marker_length_m), undistorted if refined is None else refined, self._K, None,
            flags=cv2.SOLVEPNP_IPPE_SQUARE,
        )
        if not ok or len(rvecs) == 0:
            return None
        k = int(np.argmin(np.asarray(errors).reshape(-1)))
        error = float(np.asarray(errors).reshape(-1)[k])
        if not np.isfinite(error) or error > self.marker.max_reprojection_error_px:
            return None
        pose = np.eye(4)
        pose[:3, :3] = cv2.Rodrigues(rvecs[k])[0]
        pose[:3, 3] = np.asarray(tvecs[k]).reshape(3)
        return pose, error

    def estimate(
        self, image: np.ndarray, stamp: float, tcp_pose: tuple[np.ndarray, np.ndarray] | None = None
    ) -> ObjectPose | None:
        """The object's pose in the base frame, or None when the marker is not (reliably) in the image.

        image: (H, W, 3) RGB/BGR, (H, W, 4) or (H, W) uint8, of the calibrated size.
        stamp: the image's stamp, returned with the pose.
        tcp_pose: (position (3,), quaternion (4,) x y z w) of the TCP in the base frame at the image's
        time; required for an eye-in-hand camera (mount "hand"), ignored for a fixed one.
        """
        found = self.marker_in_camera(image)
        if found is None:
            return None
        marker_in_camera, error = found
        camera_in_base = self._camera_in_parent
        if self.hand_eye.mount == "hand":
            if tcp_pose is None:
                raise PerceptionError("hand_eye.yaml says the camera is on the hand (mount: hand): estimate() needs tcp_pose")
            position, orientation = tcp_pose
            tcp_in_base = _pose_matrix(
                np.asarray(position, dtype=np.float64), normalize_quat(np.asarray(orientation, dtype=np.float64))[0]
            )
            camera_in_base = tcp_in_base @ camera_in_base
        object_in_base = camera_in_base @ marker_in_camera @ self._object_in_marker
        return ObjectPose(
            position=object_in_base[:3, 3].copy(),
            orientation=matrix_to_quat(object_in_base[:3, :3]),
            stamp=float(stamp),
            marker_id=self.marker.marker_id,
            reprojection_error_px=error,
            camera_distance_m=float(np.linalg.norm(marker_in_camera[:3, 3])),
        )


def _refine_corners(gray: np.ndarray, corners: np.ndarray, cells: int, K: np.ndarray, dist: np.ndarray) -> np.ndarray | None:
    """Sub-pixel corners from lines fitted to the marker's four outer edges, in undistorted pixels.

    gray: the image; corners: (4, 2) detected corners (distorted pixels, ArUco order); cells: cells across
    the marker.  Along each edge, away from its corners, the intensity profile across the edge is sampled
    and the point where it crosses halfway between the black border and the white surround is taken as
    the edge; those points (undistorted) are fitted with a line, and neighbouring lines intersect at the
    corners.  Returns None when an edge cannot be measured (too small, occluded, low contrast).
    """
    centre = corners.mean(axis=0)
    side = np.mean(np.linalg.norm(corners - np.roll(corners, -1, axis=0), axis=1))
    reach = min(3.0, 0.4 * side / cells)  # stay inside the one-cell black border, and in the white margin
    if reach < 1.0:
        return None
    offsets = np.arange(-reach, reach + 1e-9, 0.25)
    # work on a float crop around the marker (remap on uint8 would round the interpolated values)
    x0, y0 = np.maximum(np.floor(corners.min(axis=0) - reach - 2).astype(int), 0)
    x1, y1 = np.ceil(corners.max(axis=0) + reach + 3).astype(int)
    crop = gray[y0:y1, x0:x1].astype(np.float32)
    origin = np.array([x0, y0], dtype=np.float64)
    lines = []
    for start, end in zip(corners, np.roll(corners, -1, axis=0)):
        along = end - start
        length = np.linalg.norm(along)
        normal = np.array([along[1], -along[0]]) / length
        if normal @ (start - centre) < 0:
            normal = -normal  # pointing out of the marker
        t = np.linspace(0.2, 0.8, max(6, int(length * 0.6 / 1.5)))
        base = start + t[:, None] * along  # (n, 2)
        samples = base[:, None, :] + offsets[None, :, None] * normal  # (n, m, 2)
        local = (samples - origin).astype(np.float32)
        profile = cv2.remap(crop, local[..., 0], local[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        # profile (n, m): from the dark border (inside) to the bright surround (outside)
        low, high = profile[:, :2].mean(axis=1), profile[:, -2:].mean(axis=1)
        good = high - low > 20.0
        level = (low + high) / 2.0
        above = profile >= level[:, None]
        first = np.argmax(above, axis=1)  # first sample at or above the half level
        good &= (first > 0) & above.any(axis=1)
        if good.sum() < 4:
            return None
        rows = np.flatnonzero(good)
        k = first[rows]
        a, b = profile[rows, k - 1], profile[rows, k]
        frac = (level[rows] - a) / np.where(b > a, b - a, 1.0)
        edge = base[rows] + (offsets[k - 1] + frac * 0.25)[:, None] * normal
        edge = cv2.undistortPoints(edge.reshape(-1, 1, 2), K, dist, P=K).reshape(-1, 2)
        mean = edge.mean(axis=0)
        direction = np.linalg.svd(edge - mean)[2][0]
        lines.append((mean, direction))
    refined = np.empty((4, 2))
    for i in range(4):  # corner i joins edge i-1 (from corner i-1) and edge i (from corner i)
        (p1, d1), (p2, d2) = lines[i - 1], lines[i]
        matrix = np.column_stack([d1, -d2])
        if abs(np.linalg.det(matrix)) < 1e-6:
            return None
        s1, _ = np.linalg.solve(matrix, p2 - p1)
        refined[i] = p1 + s1 * d1
    guess = cv2.undistortPoints(corners.reshape(-1, 1, 2), K, dist, P=K).reshape(4, 2)
    if np.linalg.norm(refined - guess, axis=1).max() > 3.0:  # a fit that wandered off: keep the detector's corners
        return None
    return refined


def render_marker(
    intrinsics: CameraIntrinsics,
    marker: MarkerConfig,
    marker_in_camera: np.ndarray,
    background: int = 150,
    noise_std: float = 0.0,
    supersample: int = 4,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """A synthetic RGB image (H, W, 3) uint8 of the marker at pose ``marker_in_camera`` (4x4, camera <- marker).

    The marker (with a white quiet zone a quarter of its side wide) is warped through
    the pinhole model (no distortion) at ``supersample`` times the resolution and area-averaged down,
    so edges are anti-aliased like a real sensor's.  Pixel centres are at integer coordinates.
    """
    side = 240  # marker bitmap side in pixels, including its black border
    pad = side // 4  # white quiet zone around it
    dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, marker.dictionary))
    bitmap = cv2.copyMakeBorder(
        cv2.aruco.generateImageMarker(dictionary, marker.marker_id, side, borderBits=1), pad, pad, pad, pad,
        cv2.BORDER_CONSTANT, value=255,
    )
    full = side + 2 * pad
    # bitmap pixel edges -> marker-plane points (x right, y up, centred on the black square)
    scale = marker.marker_length_m / side
    src = np.array([[-0.5, -0.5], [full - 0.5, -0.5], [full - 0.5, full - 0.5], [-0.5, full - 0.5]], dtype=np.float64)
    plane = np.column_stack([(src[:, 0] + 0.5 - full / 2) * scale, -(src[:, 1] + 0.5 - full / 2) * scale, np.zeros(4)])
    points = (marker_in_camera[:3, :3] @ plane.T).T + marker_in_camera[:3, 3]
    if (points[:, 2] <= 0).any():
        raise ValueError("render_marker: the marker is (partly) behind the camera")
    k = intrinsics.K.copy()
    k[:2, :2] *= supersample
    k[:2, 2] = (k[:2, 2] + 0.5) * supersample - 0.5
    projected = (k @ points.T).T
    dst = projected[:, :2] / projected[:, 2:3]
    homography = cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32))
    size = (intrinsics.image_width * supersample, intrinsics.image_height * supersample)
    big = cv2.warpPerspective(bitmap, homography, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=background)
    gray = cv2.resize(big, (intrinsics.image_width, intrinsics.image_height), interpolation=cv2.INTER_AREA).astype(np.float64)
    if noise_std > 0:
        gray += (rng or np.random.default_rng(0)).normal(0.0, noise_std, gray.shape)
    gray = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)
