"""The perception core: observation assembly, and object poses from synthetic marker images."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from lpds_ros.config import ConfigError, load_config
from lpds_ros.perception import (
    CameraIntrinsics,
    HandEyeCalibration,
    MarkerConfig,
    MarkerPoseEstimator,
    ObservationAssembler,
    ObservationError,
    PerceptionError,
    Stamped,
    render_marker,
    standard_sources,
)
from lpds_ros.safety.rotations import matrix_to_quat, quat_angle, quat_to_matrix

REPO = Path(__file__).resolve().parents[1]
CALIBRATION = REPO / "calibration"

LAYOUT = {
    "robot0_joint_pos": 7,
    "robot0_joint_vel": 7,
    "robot0_eef_pos": 3,
    "robot0_eef_quat": 4,
    "robot0_gripper_width": 1,
    "object_pos": 3,
    "object_quat": 4,
    "object_to_eef_pos": 3,
    "goal_pos": 3,
}


def sources(**overrides):
    kwargs = dict(
        joint_positions=np.arange(7) * 0.1, joint_velocities=np.arange(7) * -0.01, joint_stamp=10.02,
        eef_position=[0.4, 0.1, 0.3], eef_orientation=[1.0, 0.0, 0.0, 0.0], eef_stamp=10.03,
        finger_positions=[0.02, 0.02], gripper_stamp=10.01,
        object_position=[0.5, 0.0, 0.025], object_orientation=[0.0, 0.0, 0.0, 1.0], object_stamp=9.95,
        goal_position=[0.5, 0.0, 0.2],
    )
    kwargs.update(overrides)
    return standard_sources(**kwargs)


# ----------------------------------------------------------------------------------------------------
# Observation assembly
# ----------------------------------------------------------------------------------------------------


def test_assembles_the_layout_in_order_with_derived_keys_and_the_oldest_stamp():
    assembler = ObservationAssembler(LAYOUT)
    obs = assembler.assemble(sources())
    assert obs.vector.dtype == np.float32 and obs.vector.shape == (assembler.dim,) == (35,)
    part = {key: obs.vector[sl] for key, sl in assembler.slices.items()}
    np.testing.assert_allclose(part["robot0_joint_pos"], np.arange(7) * 0.1, rtol=1e-6)
    np.testing.assert_allclose(part["robot0_gripper_width"], [0.04], rtol=1e-6)
    np.testing.assert_allclose(part["object_to_eef_pos"], [0.4 - 0.5, 0.1, 0.3 - 0.025], rtol=1e-6)
    np.testing.assert_allclose(part["goal_pos"], [0.5, 0.0, 0.2], rtol=1e-6)
    assert obs.stamp == 9.95  # the object pose is the oldest; the goal is a constant and does not age
    assert "goal_pos" not in obs.stamps
    assert assembler.required_sources[:3] == ("robot0_joint_pos", "robot0_joint_vel", "robot0_eef_pos")


def test_quaternion_signs_match_the_sim():
    obs = sources(eef_orientation=[-1.0, 0.0, 0.0, 0.0], object_orientation=[0.0, 0.0, -0.6, -0.8])
    np.testing.assert_allclose(obs["robot0_eef_quat"].value, [1.0, 0.0, 0.0, 0.0])  # the down pose's hemisphere
    np.testing.assert_allclose(obs["object_quat"].value, [0.0, 0.0, 0.6, 0.8])  # w >= 0


def test_layout_order_is_the_callers():
    layout = {"goal_pos": 3, "object_to_eef_pos": 3, "robot0_eef_pos": 3}
    obs = ObservationAssembler(layout).assemble(sources())
    np.testing.assert_allclose(obs.vector, [0.5, 0.0, 0.2, -0.1, 0.1, 0.275, 0.4, 0.1, 0.3], rtol=1e-6)
    assert obs.stamp == 9.95  # object_to_eef_pos uses the object pose


def test_missing_source_names_the_key_and_who_needs_it():
    with pytest.raises(ObservationError, match="'object_pos' is missing .*object_to_eef_pos"):
        ObservationAssembler(LAYOUT).assemble(sources(object_position=None))


def test_wrong_size_and_non_finite_sources_are_errors():
    with pytest.raises(ObservationError, match="'robot0_joint_pos' has 6 values, the layout wants 7"):
        ObservationAssembler(LAYOUT).assemble(sources(joint_positions=np.zeros(6)))
    with pytest.raises(ObservationError, match="'robot0_eef_pos' has 2 values"):
        ObservationAssembler({"object_to_eef_pos": 3}).assemble(sources(eef_position=[0.1, 0.2]))
    with pytest.raises(ObservationError, match="not finite"):
        ObservationAssembler(LAYOUT).assemble(sources(eef_position=[np.nan, 0.0, 0.0]))


@pytest.mark.parametrize("layout", [{}, {"object_to_eef_pos": 4}, {"robot0_joint_pos": 0}, {"robot0_joint_pos": 7.0}])
def test_bad_layouts_are_rejected(layout):
    with pytest.raises(ObservationError):
        ObservationAssembler(layout)


def test_sources_are_generic_names():
    obs = ObservationAssembler({"anything": 2}).assemble({"anything": Stamped([1.0, 2.0], 3.0)})
    np.testing.assert_array_equal(obs.vector, [1.0, 2.0])
    assert obs.stamp == 3.0


# ----------------------------------------------------------------------------------------------------
# Marker poses
# ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def estimator() -> MarkerPoseEstimator:
    return MarkerPoseEstimator.from_files(
        CALIBRATION / "camera_intrinsics.yaml", CALIBRATION / "hand_eye.yaml", CALIBRATION / "marker.yaml"
    )


def object_pose(x: float, y: float, yaw: float, tilt: float = 0.0) -> np.ndarray:
    """base <- object: a cube on the table at (x, y), turned by yaw, optionally tipped about x."""
    pose = np.eye(4)
    q_yaw = np.array([0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2)])
    q_tilt = np.array([np.sin(tilt / 2), 0.0, 0.0, np.cos(tilt / 2)])
    pose[:3, :3] = quat_to_matrix(q_yaw) @ quat_to_matrix(q_tilt)
    pose[:3, 3] = [x, y, 0.025]
    return pose


def image_of(estimator: MarkerPoseEstimator, object_in_base: np.ndarray, camera_in_base: np.ndarray, seed: int = 0):
    marker_in_camera = np.linalg.inv(camera_in_base) @ object_in_base @ np.linalg.inv(estimator.marker.object_in_marker)
    return render_marker(estimator.intrinsics, estimator.marker, marker_in_camera, noise_std=2.0, rng=np.random.default_rng(seed))


def assert_pose_close(found, truth: np.ndarray) -> None:
    assert found is not None
    error_mm = 1000 * np.linalg.norm(found.position - truth[:3, 3])
    error_deg = np.degrees(quat_angle(found.orientation, matrix_to_quat(truth[:3, :3])))
    assert error_mm < 5.0, error_mm
    assert error_deg < 2.0, error_deg


@pytest.mark.parametrize(
    "x,y,yaw,tilt",
    [(0.5, 0.0, 0.0, 0.0), (0.35, 0.25, 2.5, 0.0), (0.65, -0.3, -1.0, 0.0), (0.45, -0.1, 0.7, 0.4)],
)
def test_object_pose_from_a_synthetic_image(estimator, x, y, yaw, tilt):
    truth = object_pose(x, y, yaw, tilt)
    found = estimator.estimate(image_of(estimator, truth, estimator.hand_eye.matrix), stamp=12.5)
    assert_pose_close(found, truth)
    assert found.stamp == 12.5 and found.marker_id == 0 and found.reprojection_error_px < 1.0


def test_apriltag_dictionary(estimator):
    tag = dataclasses.replace(estimator.marker, dictionary="DICT_APRILTAG_36h11", marker_id=5, marker_length_m=0.05)
    april = MarkerPoseEstimator(estimator.intrinsics, estimator.hand_eye, tag)
    truth = object_pose(0.55, 0.1, -2.0)
    assert_pose_close(april.estimate(image_of(april, truth, april.hand_eye.matrix), stamp=0.0), truth)


def test_eye_in_hand_camera_uses_the_tcp_pose(estimator):
    # a wrist camera 10 cm behind the TCP's z axis, looking along it; the TCP 35 cm above the object, pointing down
    hand_eye = HandEyeCalibration(mount="hand", parent_frame="fr3_hand_tcp", translation=(0.0, 0.05, -0.1), rotation=(0.0, 0.0, 0.0, 1.0))
    wrist = MarkerPoseEstimator(estimator.intrinsics, hand_eye, estimator.marker)
    tcp_pos, tcp_quat = np.array([0.5, 0.05, 0.4]), np.array([1.0, 0.0, 0.0, 0.0])
    tcp = np.eye(4)
    tcp[:3, :3], tcp[:3, 3] = quat_to_matrix(tcp_quat), tcp_pos
    truth = object_pose(0.52, 0.0, 0.3)
    image = image_of(wrist, truth, tcp @ hand_eye.matrix)
    assert_pose_close(wrist.estimate(image, stamp=1.0, tcp_pose=(tcp_pos, tcp_quat)), truth)
    with pytest.raises(PerceptionError, match="tcp_pose"):
        wrist.estimate(image, stamp=1.0)


def test_no_marker_or_another_id_gives_none(estimator):
    blank = np.full((720, 1280, 3), 150, dtype=np.uint8)
    assert estimator.estimate(blank, stamp=0.0) is None
    other = dataclasses.replace(estimator.marker, marker_id=3)
    truth = object_pose(0.5, 0.0, 0.0)
    marker_in_camera = np.linalg.inv(estimator.hand_eye.matrix) @ truth @ np.linalg.inv(other.object_in_marker)
    assert estimator.estimate(render_marker(estimator.intrinsics, other, marker_in_camera), stamp=0.0) is None


def test_wrong_image_size_is_a_clear_error(estimator):
    with pytest.raises(PerceptionError, match="1280x720"):
        estimator.estimate(np.zeros((480, 640, 3), dtype=np.uint8), stamp=0.0)


# ----------------------------------------------------------------------------------------------------
# Calibration files
# ----------------------------------------------------------------------------------------------------


def test_shipped_calibration_loads_and_sees_the_workspace(estimator):
    assert estimator.intrinsics.K[0, 0] == 910.0 and estimator.hand_eye.mount == "fixed"
    # the default camera sees the corners of the default workspace's table area
    from lpds_ros.safety import WorkspaceBox

    box = load_config(CALIBRATION / "workspace.yaml", WorkspaceBox)
    camera_from_base = np.linalg.inv(estimator.hand_eye.matrix)
    for x in (box.lo[0], box.hi[0]):
        for y in (box.lo[1], box.hi[1]):
            point = camera_from_base @ np.array([x, y, 0.0, 1.0])
            u, v, w = estimator.intrinsics.K @ point[:3]
            assert w > 0 and 0 <= u / w < 1280 and 0 <= v / w < 720


@pytest.mark.parametrize(
    "cls,text,field",
    [
        (CameraIntrinsics, "image_width: -1\n", "image_width"),
        (CameraIntrinsics, "camera_matrix: {rows: 3, cols: 3, data: [-910, 0, 640, 0, 910, 360, 0, 0, 1]}\n", "camera_matrix"),
        (CameraIntrinsics, "distortion_coefficients: {rows: 1, cols: 4, data: [0, 0, 0, 0]}\n", "distortion_coefficients"),
        (CameraIntrinsics, "distortion_model: equidistant\n", "distortion_model"),
        (CameraIntrinsics, "focal_length: 910\n", "focal_length"),
        (HandEyeCalibration, "rotation: [0, 0, 0, 2]\n", "rotation"),
        (HandEyeCalibration, "translation: [1, 2]\n", "translation"),
        (HandEyeCalibration, "mount: ceiling\n", "mount"),
        (MarkerConfig, "dictionary: DICT_9X9_5\n", "dictionary"),
        (MarkerConfig, "marker_id: 50\n", "marker_id"),
        (MarkerConfig, "marker_length_m: 0\n", "marker_length_m"),
        (MarkerConfig, "object_in_marker_position: [0, 0, .nan]\n", "object_in_marker_position"),
        (MarkerConfig, "marker_id: [\n", "not valid YAML"),
    ],
)
def test_bad_calibration_yaml_fails_with_one_line(tmp_path, cls, text, field):
    path = tmp_path / "calibration.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, cls)
    assert field in str(info.value) and "\n" not in str(info.value)
