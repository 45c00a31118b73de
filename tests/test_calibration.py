"""Hand-eye calibration (issue 6): synthetic marker sets solved to < 1 mm / 0.1 degrees, end to end through
rendered images and `lpds calibrate`, and one-line errors for bad input."""
from __future__ import annotations

import math
import re

import cv2
import numpy as np
import pytest
import yaml

from lpds_ros import cli
from lpds_ros.calibration import CalibrationError, solve_hand_eye
from lpds_ros.config import load_config
from lpds_ros.perception import (
    CameraIntrinsics,
    HandEyeCalibration,
    MarkerConfig,
    MarkerPoseEstimator,
    render_marker,
)
from lpds_ros.safety.rotations import matrix_to_quat


def _rot(axis, deg: float) -> np.ndarray:
    v = np.asarray(axis, dtype=np.float64)
    return cv2.Rodrigues(v / np.linalg.norm(v) * math.radians(deg))[0]


def _pose(r: np.ndarray, t) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = r, t
    return m


def _errors(estimate: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(translation error mm, rotation error degrees)."""
    r = estimate[:3, :3].T @ truth[:3, :3]
    return 1000 * float(np.linalg.norm(estimate[:3, 3] - truth[:3, 3])), math.degrees(math.acos(np.clip((np.trace(r) - 1) / 2, -1, 1)))


CAMERA_IN_TCP = _pose(_rot([0, 0, 1], 90) @ _rot([1, 0, 0], 5), [0.05, -0.01, 0.04])  # eye-in-hand truth
MARKER_IN_BASE = _pose(_rot([0, 0, 1], 20), [0.5, 0.05, 0.0])
DOWN = _rot([1, 0, 0], 180)


def _hand_views(rng, n: int):
    """TCP poses above the table marker, the camera 0.3-0.45 m above it, wrist tilted +-20 deg, turned +-45."""
    for _ in range(n):
        r = DOWN @ _rot([1, 0, 0], rng.uniform(-20, 20)) @ _rot([0, 1, 0], rng.uniform(-20, 20)) @ _rot([0, 0, 1], rng.uniform(-45, 45))
        camera = MARKER_IN_BASE[:3, 3] + [rng.uniform(-0.08, 0.08), rng.uniform(-0.08, 0.08), rng.uniform(0.3, 0.45)]
        tcp = _pose(r, camera - r @ CAMERA_IN_TCP[:3, 3])
        yield tcp, np.linalg.inv(tcp @ CAMERA_IN_TCP) @ MARKER_IN_BASE


@pytest.mark.timeout(120)
def test_lpds_calibrate_solves_rendered_marker_views_to_a_millimetre_and_a_tenth_of_a_degree(tmp_path, capsys):
    rng = np.random.default_rng(0)
    intrinsics = CameraIntrinsics()
    marker = MarkerConfig(marker_length_m=0.08)
    (tmp_path / "marker.yaml").write_text(yaml.safe_dump({"marker_length_m": 0.08}))
    views = []
    for i, (tcp, marker_in_camera) in enumerate(_hand_views(rng, 14)):
        image = render_marker(intrinsics, marker, marker_in_camera, noise_std=2.0, rng=rng)
        cv2.imwrite(str(tmp_path / f"view_{i:03d}.png"), image[..., ::-1])
        views.append({"image": f"view_{i:03d}.png", "tcp_position": tcp[:3, 3].tolist(),
                      "tcp_orientation": matrix_to_quat(tcp[:3, :3]).tolist()})
    cv2.imwrite(str(tmp_path / "view_blank.png"), np.full((720, 1280, 3), 150, np.uint8))  # no marker: skipped
    views.append({"image": "view_blank.png", "tcp_position": [0.5, 0, 0.4], "tcp_orientation": [1.0, 0, 0, 0]})
    (tmp_path / "views.yaml").write_text(yaml.safe_dump({"views": views}))
    out = tmp_path / "calibration" / "hand_eye.yaml"
    assert cli.main(["calibrate", "--views", str(tmp_path), "--mount", "hand", "--out", str(out),
                     "--marker", str(tmp_path / "marker.yaml")]) == 0
    printed = capsys.readouterr().out
    assert f"skipped view {len(views) - 1} (view_blank.png): marker not found" in printed
    used = int(re.search(r"calibrate: (\d+) views", printed).group(1))
    assert used >= 8, printed  # views whose marker left the image are skipped like the blank one
    calib = load_config(out, HandEyeCalibration)  # the file perception_node reads
    assert calib.mount == "hand" and calib.parent_frame == "fr3_hand_tcp"
    mm, deg = _errors(calib.matrix, CAMERA_IN_TCP)
    assert mm < 1.0 and deg < 0.1, (mm, deg)
    # and it chains back: the estimator with this calibration finds the table marker where it is
    est = MarkerPoseEstimator(intrinsics, calib, marker)
    tcp, marker_in_camera = next(_hand_views(np.random.default_rng(7), 1))
    found = est.estimate(render_marker(intrinsics, marker, marker_in_camera), 0.0,
                         tcp_pose=(tcp[:3, 3], matrix_to_quat(tcp[:3, :3])))
    object_truth = MARKER_IN_BASE @ marker.object_in_marker
    assert np.linalg.norm(found.position - object_truth[:3, 3]) < 0.003
    # a second run does not overwrite without --overwrite (one line)
    assert cli.main(["calibrate", "--views", str(tmp_path), "--mount", "hand", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_eye_to_hand_synthetic_marker_set_with_noise():
    """Camera fixed in the cell, marker held by the hand: X = base <- camera, from noisy marker poses."""
    rng = np.random.default_rng(3)
    camera_in_base = _pose(_rot([0, 0, 1], -90) @ _rot([1, 0, 0], -140), [1.1, 0.05, 0.55])
    marker_in_tcp = _pose(_rot([0, 1, 0], 180), [0.0, 0.0, 0.03])
    tcps, markers = [], []
    for _ in range(15):
        r = DOWN @ _rot([1, 0, 0], rng.uniform(-25, 25)) @ _rot([0, 1, 0], rng.uniform(-25, 25)) @ _rot([0, 0, 1], rng.uniform(-60, 60))
        tcp = _pose(r, [rng.uniform(0.35, 0.65), rng.uniform(-0.2, 0.2), rng.uniform(0.15, 0.4)])
        noisy = np.linalg.inv(camera_in_base) @ tcp @ marker_in_tcp
        noisy = _pose(noisy[:3, :3] @ _rot(rng.normal(size=3), 0.02), noisy[:3, 3] + rng.normal(0, 0.0002, 3))
        tcps.append(tcp)
        markers.append(noisy)
    result = solve_hand_eye(tcps, markers, mount="fixed")
    mm, deg = _errors(result.matrix, camera_in_base)
    assert mm < 1.0 and deg < 0.1, (mm, deg)
    mm, deg = _errors(result.marker, marker_in_tcp)
    assert mm < 1.0 and deg < 0.1 and result.residual_mm < 1.0


def test_bad_view_sets_are_one_line_errors(tmp_path, capsys):
    tcp = np.eye(4)
    with pytest.raises(CalibrationError, match="at least 3"):
        solve_hand_eye([tcp, tcp], [tcp, tcp])
    with pytest.raises(CalibrationError, match="barely rotate"):
        solve_hand_eye([tcp] * 4, [tcp] * 4)
    assert cli.main(["calibrate", "--views", str(tmp_path), "--mount", "fixed", "--out", str(tmp_path / "h.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lpds calibrate: error: ") and "views.yaml: not found" in err[0]
    (tmp_path / "views.yaml").write_text("views:\n  - {tcp_position: [0, 0, 0]}\n")
    assert cli.main(["calibrate", "--views", str(tmp_path), "--mount", "fixed", "--out", str(tmp_path / "h.yaml")]) == 2
    assert "tcp_orientation" in capsys.readouterr().err
