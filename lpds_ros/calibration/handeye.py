"""Hand-eye calibration from recorded marker views, written as calibration/hand_eye.yaml.

A *view* is the TCP pose in the robot base frame (``current_pose``) and, taken at the same moment, either a
camera image showing the calibration marker or the marker's pose in the camera (camera <- marker).

- ``mount: hand`` (eye-in-hand): the camera rides on the hand and the marker lies fixed in the cell.
  Unknown X = TCP <- camera; for every view  base <- marker = (base <- TCP_i) X (camera_i <- marker).
- ``mount: fixed`` (eye-to-hand): the camera stands still and the marker is held by the hand.
  Unknown X = base <- camera; for every view  TCP <- marker = (TCP_i <- base) X (camera_i <- marker).

Both are AX = XB problems in (base <- TCP_i) for ``hand`` and (TCP_i <- base) for ``fixed``; the markers'
poses come from OpenCV (ArUco detection + IPPE PnP, ``MarkerPoseEstimator``).  The spread of the transform that must stay constant (base <- marker, or TCP <- marker)
over the views is the residual reported with the result: it measures the whole chain (detection, pose
timing, robot kinematics), not only the solver.

The views folder: ``views.yaml`` with a list ``views`` of ``{image: file.png, tcp_position: [x, y, z],
tcp_orientation: [x, y, z, w]}`` (or ``marker_position`` / ``marker_orientation``, camera <- marker,
instead of ``image``), the images beside it.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml

from lpds_ros.errors import LpdsError
from lpds_ros.safety.rotations import matrix_to_quat, normalize_quat, quat_to_matrix

MIN_VIEWS = 3


class CalibrationError(LpdsError):
    """Views that cannot be calibrated (too few, unreadable, degenerate)."""


def pose_matrix(position: Sequence[float], orientation_xyzw: Sequence[float]) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = quat_to_matrix(normalize_quat(np.asarray(orientation_xyzw, dtype=np.float64))[0])
    pose[:3, 3] = np.asarray(position, dtype=np.float64)
    return pose


def _rotation_deg(r: np.ndarray) -> float:
    return math.degrees(math.acos(float(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0))))


@dataclass(frozen=True)
class HandEyeResult:
    mount: str
    matrix: np.ndarray  # X: TCP <- camera (hand) or base <- camera (fixed), 4x4
    marker: np.ndarray  # the constant: base <- marker (hand) or TCP <- marker (fixed), mean over views
    residual_mm: float  # RMS distance of each view's marker position from the mean
    residual_deg: float  # RMS rotation of each view's marker orientation from the mean
    views: int
    method: str


def _log(r: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.Rodrigues(np.ascontiguousarray(r))[0].reshape(3)


def _exp(v: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.Rodrigues(np.asarray(v, dtype=np.float64).reshape(3, 1))[0]


def _park_martin(moving: list[np.ndarray], markers: list[np.ndarray]) -> np.ndarray:
    """Closed-form AX = XB over all view pairs (Park & Martin, 1994): rotation from the axis-angle
    vectors' orthogonal Procrustes fit, then translation by linear least squares."""
    pairs = [(i, j) for i in range(len(moving)) for j in range(i + 1, len(moving))]
    a = [np.linalg.inv(moving[j]) @ moving[i] for i, j in pairs]
    b = [markers[j] @ np.linalg.inv(markers[i]) for i, j in pairs]
    m = sum(np.outer(_log(bb[:3, :3]), _log(aa[:3, :3])) for aa, bb in zip(a, b))
    u, _, vt = np.linalg.svd(m.T)  # R_X = argmin sum |R beta - alpha|^2
    rotation = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
    lhs = np.concatenate([aa[:3, :3] - np.eye(3) for aa in a])
    rhs = np.concatenate([rotation @ bb[:3, 3] - aa[:3, 3] for aa, bb in zip(a, b)])
    x = np.eye(4)
    x[:3, :3], x[:3, 3] = rotation, np.linalg.lstsq(lhs, rhs, rcond=None)[0]
    return x


def _refine(moving: list[np.ndarray], markers: list[np.ndarray], x: np.ndarray, iterations: int = 20) -> np.ndarray:
    """Gauss-Newton on X and the constant transform C jointly: minimise over the views the position
    (metres) and rotation (radians x ``scale``) mismatch of moving_i X marker_i against C."""
    scale = 0.1  # 1 rad of rotation error weighs like 10 cm
    c = moving[0] @ x @ markers[0]

    def residuals(params: np.ndarray) -> np.ndarray:
        xx, cc = _apply(x, params[:6]), _apply(c, params[6:])
        out = []
        for m, b in zip(moving, markers):
            chain = m @ xx @ b
            out.append(chain[:3, 3] - cc[:3, 3])
            out.append(scale * _log(cc[:3, :3].T @ chain[:3, :3]))
        return np.concatenate(out)

    for _ in range(iterations):
        r0 = residuals(np.zeros(12))
        jac = np.empty((r0.size, 12))
        for k in range(12):
            step = np.zeros(12)
            step[k] = 1e-7
            jac[:, k] = (residuals(step) - r0) / 1e-7
        delta = np.linalg.lstsq(jac, -r0, rcond=None)[0]
        x, c = _apply(x, delta[:6]), _apply(c, delta[6:])
        if np.linalg.norm(delta) < 1e-12:
            break
    return x


def _apply(pose: np.ndarray, d: np.ndarray) -> np.ndarray:
    """A small update (rotation vector d[:3] applied on the right, translation d[3:]) of a 4x4 pose."""
    out = pose.copy()
    out[:3, :3] = pose[:3, :3] @ _exp(d[:3])
    out[:3, 3] = pose[:3, 3] + d[3:]
    return out


def solve_hand_eye(tcp_in_base: Sequence[np.ndarray], marker_in_camera: Sequence[np.ndarray], mount: str = "hand") -> HandEyeResult:
    """X from N >= 3 views with distinct rotations (more and wider rotations: better).

    Park and Martin's closed form over all view pairs, refined by Gauss-Newton on every view's full
    chain.  (OpenCV 5's Python bindings no longer export calibrateHandEye, so the solver is here, in numpy.)
    """
    if mount not in ("hand", "fixed"):
        raise CalibrationError(f"mount must be 'hand' (camera on the hand) or 'fixed' (camera in the cell), got {mount!r}")
    tcps = [np.asarray(t, dtype=np.float64) for t in tcp_in_base]
    markers = [np.asarray(m, dtype=np.float64) for m in marker_in_camera]
    if len(tcps) != len(markers):
        raise CalibrationError(f"{len(tcps)} TCP poses but {len(markers)} marker poses")
    if len(tcps) < MIN_VIEWS:
        raise CalibrationError(f"{len(tcps)} usable view(s); hand-eye calibration needs at least {MIN_VIEWS} "
                               f"(10-20 with the wrist turned 20-40 degrees between views is better)")
    moving = tcps if mount == "hand" else [np.linalg.inv(t) for t in tcps]
    angles = [_rotation_deg(moving[0][:3, :3].T @ m[:3, :3]) for m in moving[1:]]
    if max(angles) < 2.0:
        raise CalibrationError("the views barely rotate the hand (< 2 degrees apart): turn the wrist between views")
    x = _refine(moving, markers, _park_martin(moving, markers))
    if not np.isfinite(x).all():
        raise CalibrationError("the solver failed on these views (degenerate motion?): turn the wrist about different axes")
    chain = [m @ x @ c for m, c in zip(moving, markers)]  # the transform that must be constant
    positions = np.array([c[:3, 3] for c in chain])
    mean = np.eye(4)
    mean[:3, 3] = positions.mean(axis=0)
    u, _, vt = np.linalg.svd(sum(c[:3, :3] for c in chain))  # chordal mean of the rotations
    mean[:3, :3] = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
    residual_mm = 1000.0 * float(np.sqrt(np.mean(np.sum((positions - mean[:3, 3]) ** 2, axis=1))))
    residual_deg = float(np.sqrt(np.mean([_rotation_deg(mean[:3, :3].T @ c[:3, :3]) ** 2 for c in chain])))
    return HandEyeResult(mount, x, mean, residual_mm, residual_deg, len(tcps), "park-martin + gauss-newton")


def load_views(folder: str | Path, estimator=None) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """(TCP poses, marker poses, skipped-view notes) from ``folder/views.yaml``; images go through
    ``estimator.marker_in_camera`` (a ``MarkerPoseEstimator``)."""
    folder = Path(folder)
    index = folder / "views.yaml"
    if not index.is_file():
        raise CalibrationError(f"{index}: not found (a views folder holds views.yaml and the images it names)")
    try:
        doc = yaml.safe_load(index.read_text()) or {}
    except yaml.YAMLError as exc:
        raise CalibrationError(f"{index}: not valid YAML ({exc.__class__.__name__})") from None
    views = doc.get("views") if isinstance(doc, dict) else None
    if not isinstance(views, list):
        raise CalibrationError(f"{index}: expected a list 'views' of {{image, tcp_position, tcp_orientation}}")
    tcps, markers, skipped = [], [], []
    for i, view in enumerate(views):
        where = f"{index}: view {i}"
        if not isinstance(view, dict):
            raise CalibrationError(f"{where}: expected a mapping")
        try:
            tcp = pose_matrix(view["tcp_position"], view["tcp_orientation"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(f"{where}: needs tcp_position [x, y, z] and tcp_orientation [x, y, z, w] ({exc})") from None
        if "image" in view:
            if estimator is None:
                raise CalibrationError(f"{where}: has an image but no camera intrinsics / marker were given")
            import cv2

            path = folder / str(view["image"])
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise CalibrationError(f"{path}: not a readable image")
            found = estimator.marker_in_camera(image[..., ::-1])
            if found is None:
                skipped.append(f"view {i} ({view['image']}): marker not found")
                continue
            marker = found[0]
        else:
            try:
                marker = pose_matrix(view["marker_position"], view["marker_orientation"])
            except (KeyError, TypeError, ValueError):
                raise CalibrationError(f"{where}: needs an image or marker_position / marker_orientation") from None
        if not (np.isfinite(tcp).all() and np.isfinite(marker).all()):
            raise CalibrationError(f"{where}: NaN or inf in its poses")
        tcps.append(tcp)
        markers.append(marker)
    return tcps, markers, skipped


def write_hand_eye_yaml(path: str | Path, result: HandEyeResult, parent_frame: str, camera_frame: str) -> None:
    """calibration/hand_eye.yaml in ``HandEyeCalibration``'s format, with how it was measured."""
    from lpds_ros.perception.calibration import HandEyeCalibration

    quat = normalize_quat(matrix_to_quat(result.matrix[:3, :3]))[0]
    calib = HandEyeCalibration(mount=result.mount, parent_frame=parent_frame, camera_frame=camera_frame,
                               translation=tuple(float(v) for v in result.matrix[:3, 3]), rotation=tuple(float(v) for v in quat))
    where = "the TCP frame (eye-in-hand)" if result.mount == "hand" else "the robot base frame (eye-to-hand)"
    text = (f"# Hand-eye extrinsics (lpds_ros.perception.HandEyeCalibration), written by `lpds calibrate`:\n"
            f"# the camera's optical frame in {where}; {result.method} over {result.views} views;\n"
            f"# marker consistency over the views: {result.residual_mm:.2f} mm RMS, {result.residual_deg:.3f} deg RMS.\n"
            f"mount: {calib.mount}\nparent_frame: {calib.parent_frame}\ncamera_frame: {calib.camera_frame}\n"
            f"translation: [{', '.join(repr(float(v)) for v in calib.translation)}]   # metres\n"
            f"rotation: [{', '.join(repr(float(v)) for v in calib.rotation)}]   # x y z w\n")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main(args: argparse.Namespace) -> int:
    from lpds_ros.config import load_config
    from lpds_ros.nodes.topics import package_file
    from lpds_ros.perception.calibration import (
        CameraIntrinsics,
        HandEyeCalibration,
        MarkerConfig,
    )
    from lpds_ros.perception.markers import MarkerPoseEstimator

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise CalibrationError(f"{out} already exists (pass --overwrite to replace it)")
    intrinsics = load_config(args.intrinsics or package_file("calibration/camera_intrinsics.yaml"), CameraIntrinsics)
    marker = load_config(args.marker or package_file("calibration/marker.yaml"), MarkerConfig)
    estimator = MarkerPoseEstimator(intrinsics, HandEyeCalibration(), marker)
    tcps, markers, skipped = load_views(args.views, estimator)
    for note in skipped:
        print(f"lpds calibrate: skipped {note}")
    result = solve_hand_eye(tcps, markers, mount=args.mount)
    parent = args.parent_frame or ("fr3_hand_tcp" if args.mount == "hand" else "fr3_link0")
    write_hand_eye_yaml(out, result, parent, args.camera_frame)
    quat = matrix_to_quat(result.matrix[:3, :3])
    print(f"lpds calibrate: {result.views} views ({len(skipped)} skipped), camera in {parent}: "
          f"t = {np.round(result.matrix[:3, 3], 4).tolist()} m, q = {np.round(quat, 4).tolist()} (x y z w); "
          f"marker consistency {result.residual_mm:.2f} mm / {result.residual_deg:.3f} deg RMS -> {out}")
    if result.residual_mm > args.max_residual_mm:
        print(f"lpds calibrate: warning: views disagree by {result.residual_mm:.1f} mm RMS (> {args.max_residual_mm} mm): "
              f"check the TCP poses' timing, the marker size in marker.yaml and the intrinsics")
    return 0
