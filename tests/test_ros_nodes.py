"""The nodes over real rclpy / DDS (issues 4 and 9).

Every test: a timeout, its own ROS_DOMAIN_ID (derived from the pid, so concurrent runs do not meet),
localhost-only discovery, and assertions on sim time and message order, never on wall-clock gaps.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("franka_msgs")

from action_msgs.msg import GoalStatus  # noqa: E402
from franka_msgs.action import ErrorRecovery, Grasp, Move  # noqa: E402
from franka_msgs.msg import FrankaRobotState  # noqa: E402
from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.action import ActionClient, ActionServer  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from ros_domains import claim_domains  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Bool, Empty, Int64, String  # noqa: E402

from lpds_ros.nodes import convert  # noqa: E402
from lpds_ros.nodes.spinner import BackgroundSpinner  # noqa: E402

pytestmark = pytest.mark.ros
REPO = Path(__file__).resolve().parent.parent


_DOMAIN_BASE = claim_domains()  # 10 ids per test run (tests/ros_domains.py)


class Ros:
    """A context on its own domain, a multi-threaded executor spinning in a thread, and a probe node."""

    def __init__(self, domain_offset: int):
        self.domain_id = _DOMAIN_BASE + domain_offset
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=self.domain_id)
        self.executor = MultiThreadedExecutor(num_threads=6, context=self.context)
        sys.setswitchinterval(5e-4)  # as SimGraph does: the in-process nodes share one GIL with the test
        self.nodes = []
        self.clients = []  # action clients to destroy once the executor has stopped
        self.probe = self.add(rclpy.create_node("probe", context=self.context))
        self.spinner = BackgroundSpinner(self.executor, "test_ros_nodes.spin").start()

    def add(self, node):
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def wait_for(self, predicate, timeout: float = 30.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.005)
        raise AssertionError(f"timed out waiting for {what}")

    def collect(self, kind, topic: str) -> list:
        got: list = []
        self.probe.create_subscription(kind, topic, got.append, 50)
        return got

    def topic_types(self) -> dict[str, list[str]]:
        return dict(self.probe.get_topic_names_and_types())

    def close(self):
        self.spinner.halt()
        for node in self.nodes:  # as SimGraph.stop: close, stop the executor, then destroy
            if callable(getattr(node, "close", None)):
                node.close()
        self.spinner.shutdown()
        for client in self.clients:
            client.destroy()
        for node in self.nodes:
            node.destroy_node()
        rclpy.shutdown(context=self.context)


_OFFSETS = {"test_sim_node": 0, "test_perception": 1, "test_policy": 2, "test_safety": 3, "test_closed": 4,
            "test_shipped": 5, "test_bad": 6, "test_marker": 7, "test_processes": 8, "test_spinner": 9}


def _offset(request) -> int:
    return next(v for k, v in _OFFSETS.items() if request.node.name.startswith(k))


@pytest.fixture
def ros(request):
    r = Ros(_offset(request))
    yield r
    r.close()


@pytest.fixture
def graph_domain(request, monkeypatch):
    """For SimGraph, which makes its own context: this test's domain through the environment."""
    monkeypatch.setenv("ROS_DOMAIN_ID", str(_DOMAIN_BASE + _offset(request)))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


def _params(**values) -> list[Parameter]:
    return [Parameter(k, value=v) for k, v in values.items()]


def _types(ros: Ros, expected: dict[str, str]) -> None:
    ros.wait_for(lambda: all(t in ros.topic_types() for t in expected), 10, f"topics {list(expected)}")
    types = ros.topic_types()
    for topic, kind in expected.items():
        assert types[topic] == [kind], (topic, types[topic])


# ------------------------------------------------------------------------------------- BackgroundSpinner
@pytest.mark.timeout(60)
def test_spinner_stops_dispatching_then_waits_for_running_callbacks(request):
    """The order every graph here stops in: halt dispatch, let running callbacks end, then shut the executor down
    (rclpy's own shutdown returns with callbacks still running, which is what raced at the suite's exit)."""
    import threading

    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=_DOMAIN_BASE + _offset(request))
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    node = rclpy.create_node("spinner_probe", context=context)
    executor.add_node(node)
    ticks: list[int] = []
    started, release, finished = threading.Event(), threading.Event(), []

    def slow():
        slow_timer.cancel()
        started.set()
        release.wait(10.0)
        finished.append(len(ticks))

    node.create_timer(0.01, lambda: ticks.append(len(ticks)), callback_group=MutuallyExclusiveCallbackGroup())
    slow_timer = node.create_timer(0.01, slow, callback_group=MutuallyExclusiveCallbackGroup())
    spinner = BackgroundSpinner(executor, "test_spinner.spin").start()
    try:
        deadline = time.monotonic() + 20.0
        while (len(ticks) < 3 or not started.is_set()) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(ticks) >= 3 and started.is_set(), "the spinner did not dispatch"
        spinner.halt()
        time.sleep(0.05)
        halted_at = len(ticks)
        time.sleep(0.2)
        assert len(ticks) == halted_at, "callbacks were dispatched after halt()"
        assert not finished
        threading.Timer(0.2, release.set).start()
        spinner.shutdown()
        assert finished, "shutdown() returned while a callback was still running"
        spinner.shutdown()  # idempotent
    finally:
        release.set()
        node.destroy_node()
        rclpy.shutdown(context=context)


# ----------------------------------------------------------------------------------------------- sim_node
@pytest.mark.timeout(300)
def test_sim_node_speaks_the_robot_interfaces_and_grasps(ros):
    from lpds_ros.nodes.sim_node import SimNode

    # a long lockstep timeout: the assertion below is about the protocol, not about this machine's speed
    sim = ros.add(SimNode(context=ros.context, parameter_overrides=_params(max_episode_steps=1000, lockstep_timeout_s=20.0)))
    p = ros.probe
    poses = ros.collect(PoseStamped, "/current_pose")
    joints = ros.collect(JointState, "/joint_states")
    fingers = ros.collect(JointState, "/franka_gripper/joint_states")
    states = ros.collect(FrankaRobotState, "/franka_robot_state_broadcaster/robot_state")
    objects = ros.collect(PoseStamped, "/lpds/object_pose")
    clocks = ros.collect(Clock, "/clock")
    episodes = ros.collect(String, "/lpds/episode")
    target_pub = p.create_publisher(PoseStamped, "/target_pose", 10)
    reset_pub = p.create_publisher(Int64, "/lpds/reset", 10)
    goal = {"pos": None}

    def controller(msg: PoseStamped) -> None:  # the arm controller's role: one command per state, lockstep
        if goal["pos"] is not None:
            target_pub.publish(convert.numpy_to_pose(goal["pos"], [1.0, 0, 0, 0], convert.to_sec(msg.header.stamp), "fr3_link0"))

    p.create_subscription(PoseStamped, "/current_pose", controller, 10)
    ros.wait_for(lambda: reset_pub.get_subscription_count() and target_pub.get_subscription_count(), 10, "sim_node")
    reset_pub.publish(Int64(data=0))
    ros.wait_for(lambda: objects, 10, "the first state")
    start = json.loads(ros.wait_for(lambda: episodes, 10, "episode start")[0].data)
    assert start["event"] == "start" and start["seed"] == 0
    cube, _, t0 = convert.pose_to_numpy(objects[0])
    assert t0 == pytest.approx(start["stamp"])

    def run_until(sim_time: float):
        ros.wait_for(lambda: poses and convert.to_sec(poses[-1].header.stamp) >= sim_time - 1e-9, 30, f"sim time {sim_time}")

    goal["pos"] = cube + [0, 0, 0.08]
    target_pub.publish(convert.numpy_to_pose(goal["pos"], [1.0, 0, 0, 0], t0, "fr3_link0"))
    run_until(t0 + 1.25)
    goal["pos"] = cube + [0, 0, -0.005]
    run_until(t0 + 2.5)

    _types(ros, {"/current_pose": "geometry_msgs/msg/PoseStamped", "/joint_states": "sensor_msgs/msg/JointState",
                 "/franka_gripper/joint_states": "sensor_msgs/msg/JointState", "/clock": "rosgraph_msgs/msg/Clock",
                 "/franka_robot_state_broadcaster/robot_state": "franka_msgs/msg/FrankaRobotState",
                 "/lpds/object_pose": "geometry_msgs/msg/PoseStamped", "/target_pose": "geometry_msgs/msg/PoseStamped",
                 "/lpds/episode": "std_msgs/msg/String", "/lpds/reset": "std_msgs/msg/Int64"})
    assert list(joints[-1].name) == [f"fr3_joint{i}" for i in range(1, 8)] and len(joints[-1].velocity) == 7
    assert list(fingers[-1].name) == ["fr3_finger_joint1", "fr3_finger_joint2"]
    # lockstep: one state per 50 ms control period, in order
    stamps = [convert.to_sec(m.header.stamp) for m in poses]
    assert np.allclose(np.diff(stamps), 0.05, atol=1e-6)
    # the robot state at 50 Hz of sim time, truthful: its o_t_ee is the TCP, its joints the arm's
    state_stamps = np.array([convert.to_sec(s.header.stamp) for s in states if convert.to_sec(s.header.stamp) > t0])
    # (the probe's subscription may drop a message when this shared box stalls it, so check the 20 ms grid,
    # not an unbroken sequence)
    gaps = np.diff(state_stamps)
    assert np.allclose(gaps / 0.02, np.round(gaps / 0.02), atol=1e-4) and (gaps > 0).all()
    assert np.mean(np.isclose(gaps, 0.02, atol=1e-6)) >= 0.9
    last = states[-1]
    assert last.robot_mode == FrankaRobotState.ROBOT_MODE_MOVE
    assert list(last.measured_joint_state.name) == [f"fr3_joint{i}" for i in range(1, 8)]
    match = [m for m in poses if m.header.stamp == last.header.stamp]
    if match:
        np.testing.assert_allclose(convert.pose_to_numpy(last.o_t_ee)[0], convert.pose_to_numpy(match[0])[0], atol=1e-9)
    assert [c.clock for c in clocks] == sorted((c.clock for c in clocks), key=convert.to_sec)
    assert np.linalg.norm(convert.pose_to_numpy(poses[-1])[0] - (cube + [0, 0, -0.005])) < 0.01

    def send(kind, name, goal_msg):
        client = ActionClient(p, kind, name)
        assert client.wait_for_server(timeout_sec=10)
        future = client.send_goal_async(goal_msg)
        handle = ros.wait_for(lambda: future.done() and future.result(), 10, "goal response")
        assert handle.accepted
        result = handle.get_result_async()
        ros.wait_for(result.done, 30, f"{name} result")
        ros.clients.append(client)  # destroyed after the executor stops (never while it waits on it)
        return result.result()

    grasp = Grasp.Goal(width=0.04, speed=0.1, force=40.0)
    grasp.epsilon.inner, grasp.epsilon.outer = 0.035, 0.04
    on_cube = send(Grasp, "/franka_gripper/grasp", grasp)
    assert on_cube.status == GoalStatus.STATUS_SUCCEEDED and on_cube.result.success, on_cube.result.error
    width = sum(fingers[-1].position)
    assert 0.045 < width < 0.075  # stopped on the 5 cm cube
    opened = send(Move, "/franka_gripper/move", Move.Goal(width=0.08, speed=0.1))
    assert opened.status == GoalStatus.STATUS_SUCCEEDED and opened.result.success
    goal["pos"] = cube + [0, 0, 0.15]
    run_until(convert.to_sec(poses[-1].header.stamp) + 1.5)
    in_air = send(Grasp, "/franka_gripper/grasp", grasp)
    assert in_air.status == GoalStatus.STATUS_ABORTED and not in_air.result.success
    assert "no object" in in_air.result.error
    assert sim.lockstep_timeouts == 0


# ----------------------------------------------------------------------------------------------- perception_node
@pytest.mark.timeout(60)
def test_perception_node_assembles_with_the_oldest_stamp(ros):
    from lpds_ros.envs import env_class
    from lpds_ros.nodes.perception_node import PerceptionNode

    node = ros.add(PerceptionNode(context=ros.context, parameter_overrides=_params(trigger="all")))
    p = ros.probe
    observations = ros.collect(JointState, "/lpds/observation")
    pubs = {name: p.create_publisher(kind, topic, 10) for name, kind, topic in (
        ("pose", PoseStamped, "/current_pose"), ("joints", JointState, "/joint_states"),
        ("fingers", JointState, "/franka_gripper/joint_states"), ("object", PoseStamped, "/lpds/object_pose"))}
    ros.wait_for(lambda: all(pub.get_subscription_count() for pub in pubs.values()), 10, "perception_node")
    q = np.arange(7) * 0.1

    def publish(t_pose, t_joints, t_fingers, t_object):
        pubs["pose"].publish(convert.numpy_to_pose([0.4, 0.1, 0.2], [1.0, 0, 0, 0], t_pose, "fr3_link0"))
        names = ["fr3_finger_joint1"] + [f"fr3_joint{i}" for i in (7, 6, 5, 4, 3, 2, 1)]  # merged, any order
        pubs["joints"].publish(convert.make_joint_state(names, [0.02, *q[::-1]], t_joints, [0.0] * 8))
        pubs["fingers"].publish(convert.make_joint_state(["fr3_finger_joint1", "fr3_finger_joint2"], [0.02, 0.03], t_fingers))
        pubs["object"].publish(convert.numpy_to_pose([0.5, 0.0, 0.025], [0, 0, 0, 1.0], t_object, "fr3_link0"))

    publish(2.0, 1.9, 2.0, 1.95)
    ros.wait_for(lambda: observations, 10, "an observation")
    labels, values, stamp = convert.vector_from_msg(observations[0])
    layout = env_class("franka-lift").layout()
    assert labels == convert.layout_labels(layout)
    assert stamp == pytest.approx(1.9)  # the oldest input
    obs = dict(zip(labels, values))
    assert obs["robot0_eef_pos[1]"] == pytest.approx(0.1) and obs["robot0_gripper_width[0]"] == pytest.approx(0.05)
    assert obs["robot0_joint_pos[5]"] == pytest.approx(0.5 - np.pi / 2, abs=1e-6)  # Franka -> MJCF convention
    assert obs["object_to_eef_pos[0]"] == pytest.approx(-0.1, abs=1e-6)
    # "all": no new observation until every input has a newer stamp
    pubs["pose"].publish(convert.numpy_to_pose([0.4, 0.1, 0.2], [1.0, 0, 0, 0], 2.05, "fr3_link0"))
    publish(2.05, 2.05, 2.05, 2.05)
    ros.wait_for(lambda: len(observations) >= 2, 10, "a second observation")
    assert [convert.to_sec(o.header.stamp) for o in observations] == pytest.approx([1.9, 2.05])
    assert node.published == 2
    # it never listens to the 1 kHz topics
    subs = {name for name, _ in p.get_subscriber_names_and_types_by_node("perception_node", "/")}
    assert "/franka_robot_state_broadcaster/robot_state" not in subs and "/franka/joint_states" not in subs
    _types(ros, {"/lpds/observation": "sensor_msgs/msg/JointState"})


@pytest.mark.timeout(60)
def test_marker_perception_finds_the_object_in_a_camera_image(ros):
    """object_source marker: the object pose comes from an ArUco marker in camera_image (calibration/*.yaml)."""
    from lpds_ros.nodes.perception_node import PerceptionNode
    from lpds_ros.perception import MarkerPoseEstimator, render_marker

    ros.add(PerceptionNode(context=ros.context, parameter_overrides=_params(trigger="all", object_source="marker")))
    calib = REPO / "calibration"
    est = MarkerPoseEstimator.from_files(calib / "camera_intrinsics.yaml", calib / "hand_eye.yaml", calib / "marker.yaml")
    truth = np.eye(4)
    truth[:3, 3] = [0.52, -0.04, 0.025]
    marker_in_camera = np.linalg.inv(est.hand_eye.matrix) @ truth @ np.linalg.inv(est.marker.object_in_marker)
    image = render_marker(est.intrinsics, est.marker, marker_in_camera)
    p = ros.probe
    observations = ros.collect(JointState, "/lpds/observation")
    pubs = [p.create_publisher(PoseStamped, "/current_pose", 10), p.create_publisher(JointState, "/joint_states", 10),
            p.create_publisher(JointState, "/franka_gripper/joint_states", 10), p.create_publisher(Image, "/lpds/camera/image_raw", 2)]
    ros.wait_for(lambda: all(pub.get_subscription_count() for pub in pubs), 10, "perception_node")
    pubs[0].publish(convert.numpy_to_pose([0.4, 0.0, 0.2], [1.0, 0, 0, 0], 5.0, "fr3_link0"))
    pubs[1].publish(convert.make_joint_state([f"fr3_joint{i}" for i in range(1, 8)], np.zeros(7), 5.0, np.zeros(7)))
    pubs[2].publish(convert.make_joint_state(["fr3_finger_joint1", "fr3_finger_joint2"], [0.04, 0.04], 5.0))
    pubs[3].publish(convert.image_msg(image, 4.98, "camera_color_optical_frame"))
    ros.wait_for(lambda: observations, 20, "an observation with the detected object")
    labels, values, stamp = convert.vector_from_msg(observations[0])
    obs = dict(zip(labels, values))
    found = np.array([obs[f"object_pos[{i}]"] for i in range(3)])
    assert np.linalg.norm(found - truth[:3, 3]) < 0.01
    assert stamp == pytest.approx(4.98)  # the image is the oldest input


# ----------------------------------------------------------------------------------------------- policy_node
@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    """A tiny random diffusion policy for franka-lift's 32-d observation, exported to ONNX."""
    import torch

    from lpds_ros.policies import PolicyConfig, make_policy
    from lpds_ros.runtime.export import export_policy

    torch.manual_seed(0)
    policy = make_policy(PolicyConfig(obs_dim=32, action_dim=4, hidden_dim=32, num_layers=1, cond_dim=16,
                                      time_embed_dim=8, horizon=8, exec_horizon=4))
    policy.eval().requires_grad_(False)
    out = tmp_path_factory.mktemp("tiny-onnx")
    export_policy(policy, out)
    return out


@pytest.mark.timeout(60)
def test_policy_node_plans_ahead_and_publishes_one_target_per_observation(ros, tiny_export):
    from lpds_ros.envs import env_class
    from lpds_ros.nodes.policy_node import PolicyNode

    node = ros.add(PolicyNode(context=ros.context, parameter_overrides=_params(model_dir=str(tiny_export), lead_steps=1)))
    p = ros.probe
    actions = ros.collect(JointState, "/lpds/action_raw")
    obs_pub = p.create_publisher(JointState, "/lpds/observation", 10)
    episode_pub = p.create_publisher(String, "/lpds/episode", 10)
    ros.wait_for(lambda: obs_pub.get_subscription_count() and episode_pub.get_subscription_count(), 10, "policy_node")
    labels = convert.layout_labels(env_class("franka-lift").layout())
    eef = labels.index("robot0_eef_pos[0]")
    rng = np.random.default_rng(0)

    def step(t: float) -> JointState:
        values = rng.normal(0, 0.1, len(labels))
        values[eef:eef + 3] = [0.45, 0.0, 0.2]
        n = len(actions)
        obs_pub.publish(convert.vector_msg(labels, values, t))
        ros.wait_for(lambda: len(actions) > n, 10, f"the action for {t}")
        return actions[-1]

    stamps = [round(1.0 + 0.05 * k, 2) for k in range(9)]
    for t in stamps:
        step(t)
    assert [convert.to_sec(a.header.stamp) for a in actions] == pytest.approx(stamps)  # one per observation, in order
    # chunks (H 8, E 4) planned at steps 0, 3 and 7: one step before each seam
    assert len(node.inference_s) == 3
    for a in actions:
        pos, quat, grip, _ = convert.action_raw_from_msg(a)
        assert np.all(np.abs(pos - [0.45, 0.0, 0.2]) <= 0.02 + 1e-6) and grip in (0.0, 1.0)
        assert list(a.name[8:]) == [f"action[{i}]" for i in range(4)]
    # a new episode: chunks and targets restart from its first observation
    episode_pub.publish(String(data=json.dumps({"event": "start", "seed": 5, "episode": 1, "stamp": 3.0})))
    time.sleep(0.2)  # the event travels ahead of the first observation (sim_node waits episode_settle_s)
    step(3.0)
    assert len(node.inference_s) == 4 and node.executor_core.chunks == 1
    # the episode ends; the next one's first observation overtakes its start event (two topics, no order):
    # it is kept, and acted on once the start event says it belongs to an episode
    episode_pub.publish(String(data=json.dumps({"event": "end", "seed": 5, "episode": 1, "stamp": 3.05})))
    ros.wait_for(lambda: node._episode_end == pytest.approx(3.05), 10, "the end event")
    n = len(actions)
    obs_pub.publish(convert.vector_msg(labels, rng.normal(0, 0.1, len(labels)), 3.1))
    time.sleep(0.2)
    assert len(actions) == n  # stamped after the end: no action yet
    episode_pub.publish(String(data=json.dumps({"event": "start", "seed": 6, "episode": 2, "stamp": 3.1})))
    ros.wait_for(lambda: len(actions) > n, 10, "the action for the early observation")
    assert convert.to_sec(actions[-1].header.stamp) == pytest.approx(3.1) and node.executor_core.chunks == 1
    _types(ros, {"/lpds/action_raw": "sensor_msgs/msg/JointState"})


# ----------------------------------------------------------------------------------------------- safety_filter_node
class FakeArm:
    """The robot computer's side for the safety node: /clock, state topics, and gripper/recovery servers."""

    def __init__(self, ros: Ros, abort_grasps: int = 0):
        p = ros.probe
        self.ros = ros
        self.clock = p.create_publisher(Clock, "/clock", 10)
        self.pose = p.create_publisher(PoseStamped, "/current_pose", 10)
        self.state = p.create_publisher(FrankaRobotState, "/franka_robot_state_broadcaster/robot_state", 10)
        self.request = p.create_publisher(JointState, "/lpds/action_raw", 10)
        self.targets = ros.collect(PoseStamped, "/target_pose")
        self.status = ros.collect(String, "/lpds/safety_status")
        self.grasps, self.moves, self.recoveries = [], [], []
        self.abort_grasps = abort_grasps

        def grasp(handle):
            self.grasps.append(handle.request)
            if len(self.grasps) <= self.abort_grasps:
                handle.abort()
                return Grasp.Result(success=False, error="test: aborted")
            handle.succeed()
            return Grasp.Result(success=True)

        def move(handle):
            self.moves.append(handle.request)
            handle.succeed()
            return Move.Result(success=True)

        def recover(handle):
            self.recoveries.append(True)
            handle.succeed()
            return ErrorRecovery.Result()

        self.servers = [ActionServer(p, Grasp, "/franka_gripper/grasp", grasp), ActionServer(p, Move, "/franka_gripper/move", move),
                        ActionServer(p, ErrorRecovery, "/action_server/error_recovery", recover)]

    def tick(self, t: float, request=None, mode: int = FrankaRobotState.ROBOT_MODE_MOVE, pose=(0.45, 0.0, 0.2)):
        """Sim time t: the clock, the measured state, and (optionally) a request (position, gripper)."""
        msg = Clock()
        msg.clock = convert.to_stamp(t)
        self.clock.publish(msg)
        time.sleep(0.02)  # the clock first (as sim_node publishes it before the state)
        self.pose.publish(convert.numpy_to_pose(pose, [1.0, 0, 0, 0], t, "fr3_link0"))
        state = FrankaRobotState(robot_mode=mode)
        state.header.stamp = convert.to_stamp(t)
        self.state.publish(state)
        if request is not None:
            time.sleep(0.02)
            n = len(self.targets)
            self.request.publish(convert.action_raw_msg(request[0], [1.0, 0, 0, 0], request[1], [0, 0, 0, 0], t))
            # the target decided on this request (a watchdog cycle may republish an older one meanwhile)
            return self.ros.wait_for(lambda: next((m for m in self.targets[n:] if convert.to_sec(m.header.stamp) == pytest.approx(t)), None),
                                     10, f"target_pose at {t}")


@pytest.mark.timeout(60)
def test_safety_node_clamps_holds_in_reflex_and_sends_gripper_goals_on_change(ros):
    from lpds_ros.nodes.safety_filter_node import SafetyFilterNode
    from lpds_ros.safety import Reason

    node = ros.add(SafetyFilterNode(context=ros.context, parameter_overrides=_params(
        robot="none", use_sim_time=True, gripper_retry_cycles=2)))
    arm = FakeArm(ros, abort_grasps=1)
    ros.wait_for(lambda: arm.request.get_subscription_count() and arm.pose.get_subscription_count()
                 and node.grasp_client.server_is_ready() and node.recovery_client.server_is_ready(), 10, "safety node")
    cfg = node.config
    measured = np.array([0.45, 0.0, 0.2])

    # a request that comes before any measured state is held, then filtered as soon as the state arrives:
    # sim time stands still meanwhile (a lockstep sim waits for this command), so the cycle timer cannot
    clock = Clock()
    clock.clock = convert.to_stamp(9.9)
    arm.clock.publish(clock)
    arm.request.publish(convert.action_raw_msg(measured, [1.0, 0, 0, 0], 0.0, [0, 0, 0, 0], 9.9))
    ros.wait_for(lambda: (9.9, Reason.NO_STATE) in [(round(s, 6), r) for s, r in node.decisions], 10, "the held request")
    assert not arm.targets
    arm.pose.publish(convert.numpy_to_pose(measured, [1.0, 0, 0, 0], 9.9, "fr3_link0"))
    served = ros.wait_for(lambda: arm.targets and arm.targets[-1], 10, "the held request, served on the state")
    assert convert.pose_to_numpy(served)[2] == pytest.approx(9.9)

    # a target far from the measured pose is clamped (reference limiting + step limit), stamped with its request
    far = arm.tick(10.0, ([0.70, 0.30, 0.50], 0.0))
    pos, _, stamp = convert.pose_to_numpy(far)
    assert stamp == pytest.approx(10.0) and far.header.frame_id == "fr3_link0"
    assert np.linalg.norm(pos - measured) <= min(cfg.max_reference_distance_m, cfg.max_translation_step_m) + 1e-9
    assert np.all(pos >= cfg.workspace.lo) and np.all(pos <= cfg.workspace.hi)
    ros.wait_for(lambda: arm.moves, 10, "the Move goal")
    assert len(arm.moves) == 1 and not arm.grasps  # the first gripper command (open) sent once

    # close: one Grasp (force/epsilon from the parameters); the same command again sends nothing
    arm.tick(10.05, (measured, 1.0))
    ros.wait_for(lambda: arm.grasps, 10, "a Grasp goal")
    g = arm.grasps[0]
    assert (g.width, g.force, g.epsilon.inner, g.epsilon.outer) == (0.04, 40.0, 0.035, 0.04)
    ros.wait_for(lambda: node.gate.state is None, 10, "the aborted Grasp to be noticed")
    arm.tick(10.10, (measured, 1.0))
    assert len(arm.grasps) == 1  # within the retry cool-down: not re-sent every tick
    arm.tick(10.15, (measured, 1.0))
    arm.tick(10.20, (measured, 1.0))
    ros.wait_for(lambda: len(arm.grasps) == 2, 10, "the retried Grasp")
    for t in (10.25, 10.30, 10.35):
        arm.tick(t, (measured, 1.0))
    assert len(arm.grasps) == 2 and len(arm.moves) == 1

    # REFLEX: the arm is held at the last command, the status says why; no recovery without the operator
    held = convert.pose_to_numpy(arm.targets[-1])[0]
    target = arm.tick(10.40, ([0.50, 0.0, 0.2], 1.0), mode=FrankaRobotState.ROBOT_MODE_REFLEX)
    np.testing.assert_allclose(convert.pose_to_numpy(target)[0], held, atol=1e-12)
    ros.wait_for(lambda: any(s.data.startswith("ROBOT_MODE") for s in arm.status), 10, "the REFLEX status")
    assert "REFLEX" in [s.data for s in arm.status if s.data.startswith("ROBOT_MODE")][0]
    arm.tick(10.45, ([0.50, 0.0, 0.2], 1.0), mode=FrankaRobotState.ROBOT_MODE_REFLEX)
    assert not arm.recoveries
    recover = ros.probe.create_publisher(Empty, "/lpds/recover", 10)
    ros.wait_for(lambda: recover.get_subscription_count(), 10, "the recover subscription")
    recover.publish(Empty())
    ros.wait_for(lambda: arm.recoveries and any(s.data.startswith("RECOVERED") for s in arm.status), 10, "recovery")
    moved = arm.tick(10.50, ([0.50, 0.0, 0.2], 1.0))
    assert convert.pose_to_numpy(moved)[0][0] > held[0] + 0.01  # following again

    # sim episodes: a step's inputs may overtake each other (one topic each) and must still be paired right
    episode = ros.probe.create_publisher(String, "/lpds/episode", 10)
    ros.wait_for(lambda: episode.get_subscription_count(), 10, "the episode subscription")

    def event(kind: str, t: float) -> None:
        episode.publish(String(data=json.dumps({"event": kind, "seed": 0, "stamp": t})))
        time.sleep(0.1)

    def state(t: float, position) -> None:
        clock = Clock()
        clock.clock = convert.to_stamp(t)
        arm.clock.publish(clock)
        arm.pose.publish(convert.numpy_to_pose(position, [1.0, 0, 0, 0], t, "fr3_link0"))
        robot = FrankaRobotState(robot_mode=FrankaRobotState.ROBOT_MODE_MOVE)
        robot.header.stamp = convert.to_stamp(t)
        arm.state.publish(robot)

    def served(t: float) -> list:
        return [m for m in arm.targets if convert.pose_to_numpy(m)[2] == pytest.approx(t)]

    def request(t: float, position) -> None:
        arm.request.publish(convert.action_raw_msg(position, [1.0, 0, 0, 0], 1.0, [0, 0, 0, 0], t))
        time.sleep(0.2)

    # the next episode's first request before its start event: held, then filtered from the new episode's pose
    event("end", 10.50)
    state(10.55, [0.40, 0.05, 0.25])  # the arm, reset by the sim
    request(10.55, [0.40, 0.05, 0.25])
    assert not served(10.55)
    event("start", 10.55)
    ros.wait_for(lambda: served(10.55), 10, "the early request, served on the start event")
    np.testing.assert_allclose(convert.pose_to_numpy(served(10.55)[0])[0], [0.40, 0.05, 0.25], atol=1e-9)
    # the next episode's first request before its pose: the last episode's pose does not count
    event("end", 10.55)
    event("start", 10.60)
    request(10.60, [0.45, 0.0, 0.2])
    assert not served(10.60) and (10.6, Reason.NO_STATE) in [(round(s, 6), r) for s, r in node.decisions]
    state(10.60, [0.45, 0.0, 0.2])
    ros.wait_for(lambda: served(10.60), 10, "the request, served on the new episode's pose")
    np.testing.assert_allclose(convert.pose_to_numpy(served(10.60)[0])[0], [0.45, 0.0, 0.2], atol=1e-9)

    # the e-stop latches
    estop = ros.probe.create_publisher(Bool, "/lpds/estop", 10)
    ros.wait_for(lambda: estop.get_subscription_count(), 10, "the estop subscription")
    estop.publish(Bool(data=True))
    ros.wait_for(lambda: node.filter.estopped, 10, "the e-stop")
    latched = arm.tick(10.65, ([0.60, 0.0, 0.2], 1.0))
    np.testing.assert_allclose(convert.pose_to_numpy(latched)[0], [0.45, 0.0, 0.2], atol=1e-12)  # the last command
    _types(ros, {"/target_pose": "geometry_msgs/msg/PoseStamped", "/lpds/safety_status": "std_msgs/msg/String"})


# ----------------------------------------------------------------------------------------------- the graph
@pytest.mark.timeout(120)
def test_closed_loop_sim_graph_lifts_the_cube_with_the_scripted_demonstrator(graph_domain):
    """lpds graph's SimGraph: sim -> perception -> policy (scripted demonstrator adapter) -> safety -> sim."""
    from lpds_ros.nodes.graph import SimGraph, load_graph_params

    params = load_graph_params(REPO / "config" / "sim_graph.yaml")
    params["policy_node"]["backend"] = "scripted"
    params["sim_node"]["lockstep_timeout_s"] = 20.0
    with SimGraph(params) as graph:
        result = graph.run_episode(seed=0, timeout_s=90)
        sim, safety = graph.nodes["sim_node"], graph.nodes["safety_filter_node"]
        assert result["success"] and result["steps"] < 60, result
        assert result["min_tcp_object_m"] < 0.02  # the gripper reached the cube
        assert "close" in safety.goals_sent  # through the franka_gripper Grasp action
        assert sim.lockstep_timeouts == 0  # every step got its command for the state it saw


@pytest.mark.timeout(120)
def test_processes_one_per_node_like_the_launch_file(graph_domain):
    """The same graph with each node in its own process, started as launch/sim.launch.py starts them."""
    from lpds_ros.nodes.graph import SimGraph, load_graph_params

    params = load_graph_params(REPO / "config" / "sim_graph.yaml")
    params["policy_node"]["backend"] = "scripted"
    params["sim_node"]["lockstep_timeout_s"] = 20.0
    with SimGraph(params, processes=True, params_file=REPO / "config" / "sim_graph.yaml") as graph:
        result = graph.run_episode(seed=1, timeout_s=90)
    assert result["success"] and result["min_tcp_object_m"] < 0.02, result


@pytest.mark.timeout(180)
def test_shipped_policy_drives_the_sim_graph(graph_domain, tmp_path, monkeypatch):
    """The shipped diffusion policy (exported to ONNX on the fly) closes the loop: the TCP reaches the cube."""
    from lpds_ros.nodes.graph import SimGraph, load_graph_params, resolve_policy

    shipped = REPO / "models" / "franka-lift-diffusion"
    if not (shipped / "config.json").is_file():
        pytest.skip("no shipped franka-lift-diffusion policy")
    monkeypatch.setenv("LPDS_CACHE", str(tmp_path))
    params = load_graph_params(REPO / "config" / "sim_graph.yaml")
    params["policy_node"].update(backend="onnx", model_dir=str(resolve_policy(shipped)))
    params["sim_node"]["lockstep_timeout_s"] = 20.0
    with SimGraph(params) as graph:
        result = graph.run_episode(seed=2, timeout_s=150)
        assert result["min_tcp_object_m"] < 0.03, result
        assert graph.nodes["sim_node"].lockstep_timeouts == 0


# ----------------------------------------------------------------------------------------------- bad files
@pytest.mark.timeout(60)
def test_bad_names_or_parameter_file_fails_with_one_line(ros, tmp_path):
    env = dict(os.environ, ROS_DOMAIN_ID=str(ros.domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    text = (REPO / "config" / "topics.yaml").read_text()
    missing = tmp_path / "topics.yaml"
    missing.write_text("\n".join(line for line in text.splitlines() if not line.startswith("robot_state:")))
    bad_params = tmp_path / "params.yaml"
    bad_params.write_text("policy_node:\n  ros__parameters:\n    lead_step: 1\n")
    bin_dir = Path(sys.executable).parent
    cases = [
        ([str(bin_dir / "lpds_safety_filter_node"), "--ros-args", "-p", f"topics_file:={missing}"],
         "safety_filter_node: error: ", "missing topic key(s) ['robot_state']"),
        ([str(bin_dir / "lpds_sim_node"), "--ros-args", "-p", f"topics_file:={missing}"],
         "sim_node: error: ", "missing topic key(s) ['robot_state']"),
        ([str(bin_dir / "lpds_policy_node"), "--ros-args", "--params-file", str(bad_params)],
         "policy_node: error: ", "unknown parameter(s) ['lead_step']"),
    ]
    for cmd, prefix, text_ in cases:
        if not Path(cmd[0]).exists():
            cmd = [sys.executable, "-m", f"lpds_ros.nodes.{prefix.split(':')[0]}", *cmd[1:]]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=50)
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert out.returncode == 2, out.stderr
        assert "Traceback" not in out.stderr and len(lines) == 1, out.stderr
        assert lines[0].startswith(prefix) and text_ in lines[0], lines[0]
