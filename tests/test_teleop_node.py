"""teleop_node and realsense_node over real rclpy / DDS (issue 6).

The teleop test runs the real MuJoCo sim_node, perception_node and safety_filter_node in lockstep with
teleop_node fed by scripted keys (no terminal, no X server); the RealSense test fakes only the camera,
behind the interface the pyrealsense2 driver implements.  Every test: a timeout, its own ROS_DOMAIN_ID
(a block claimed like test_ros_nodes.py's), localhost-only discovery, assertions on sim time / counts.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("franka_msgs")

from ros_domains import claim_domains  # noqa: E402

from lpds_ros.nodes import convert  # noqa: E402
from lpds_ros.nodes.spinner import BackgroundSpinner, teardown  # noqa: E402

pytestmark = pytest.mark.ros
REPO = Path(__file__).resolve().parent.parent
_DOMAIN = claim_domains()


@contextlib.contextmanager
def spinning(domain_id: int):
    """A context on ``domain_id`` with a probe node, spun by an executor in a thread; yields (context, probe,
    add), where ``add(node)`` spins one more node.  Afterwards every node is closed and destroyed."""
    from rclpy.executors import MultiThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    executor = MultiThreadedExecutor(num_threads=3, context=context)
    nodes = [rclpy.create_node("probe", context=context)]
    executor.add_node(nodes[0])
    spinner = BackgroundSpinner(executor, "test_teleop_node.spin").start()

    def add(node):
        nodes.append(node)
        executor.add_node(node)
        return node

    try:
        yield context, nodes[0], add
    finally:
        teardown(reversed(nodes), spinner)
        rclpy.shutdown(context=context)


@pytest.mark.timeout(150)
def test_teleop_records_scripted_episodes_through_the_safety_filter_and_bags_the_topics(tmp_path, monkeypatch):
    pytest.importorskip("rosbags")
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import Reader
    from sensor_msgs.msg import JointState

    from lpds_ros.data.hdf5 import load_demos
    from lpds_ros.envs import env_class
    from lpds_ros.nodes.graph import load_graph_params
    from lpds_ros.teleop import ScriptedKeys
    from lpds_ros.teleop.cli import TeleopGraph

    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    params = load_graph_params(REPO / "config" / "sim_graph.yaml")
    params["sim_node"].update(lockstep_timeout_s=20.0, auto_start=False)
    out, bag = tmp_path / "teleop.hdf5", tmp_path / "bag"
    # episode 1: up for 3 steps, saved as a success at step 8; episode 2: discarded; episode 3: gripper
    # closed, saved as a failure; then quit.  Steps count observations (episode 1 starts at step 0).
    keys = ScriptedKeys.parse("0:b 2:rrr 8:y 12:b 24:ww 28:x 32:b 40:_ 44:n 46:q")
    teleop = {"task": "franka-lift", "out": str(out), "sim_episodes": True, "seed": 3, "bag_dir": str(bag)}
    with TeleopGraph(teleop, params, keys=keys, domain_id=_DOMAIN + 0) as graph:
        graph.wait(timeout_s=120)
        node = graph.teleop
        said = list(node.messages)
        assert node.quit_requested and keys.done, said
        assert node.recorder.saved == 2 and node.recorder.discarded == 1, said
        assert graph.nodes["sim_node"].lockstep_timeouts == 0
    demos = load_demos(out)
    layout = env_class("franka-lift").layout()
    assert demos.obs_layout == layout and demos.env_meta["source"] == "teleop"
    first, third = demos.episodes
    assert len(first) == 8 and first.success and not third.success and 0 < len(third) < 14
    np.testing.assert_allclose(first.actions[:, 2], [0, 0, 0.3, 0.3, 0.3, 0, 0, 0], atol=1e-6)
    assert (first.actions[:, 3] == -1).all() and (first.actions[:, :2] == 0).all()
    assert third.actions[-1, 3] == 1.0 and third.actions[0, 3] == -1.0  # space closed the gripper
    z = first.obs[:, sum(list(layout.values())[:list(layout).index("robot0_eef_pos")]) + 2]
    assert z[-1] - z[2] > 0.01  # the arm went up: teleop -> safety filter -> target_pose -> sim
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag", "teleop.hdf5"]  # the discarded episode: no trace

    with Reader(bag) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        assert topics["/lpds/action_raw"] == "sensor_msgs/msg/JointState"
        assert topics["/franka_robot_state_broadcaster/robot_state"] == "franka_msgs/msg/FrankaRobotState"
        counts = {t: 0 for t in topics}
        action = None
        for connection, _, raw in reader.messages():
            counts[connection.topic] += 1
            if connection.topic == "/lpds/action_raw" and action is None:
                action = deserialize_message(raw, JointState)
    assert counts["/lpds/action_raw"] >= 40 and counts["/current_pose"] >= 40 and counts["/target_pose"] >= 40
    assert list(action.name[:8]) == list(convert.ACTION_RAW_LABELS)


class FakeRealSense:
    """The frame-source interface of ``RealSenseCamera`` (intrinsics, read, close), without the camera."""

    def __init__(self):
        from lpds_ros.perception.realsense import intrinsics_from_pinhole

        self.intrinsics = intrinsics_from_pinhole(64, 48, 60.0, 61.0, 31.5, 23.5, [0.1, -0.05, 0.0, 0.0, 0.01], name="fake")
        self.closed = False
        self.k = 0

    def read(self, timeout_s: float):
        time.sleep(0.02)
        self.k += 1
        return np.full((48, 64, 3), self.k % 256, np.uint8)

    def close(self):
        self.closed = True


@pytest.mark.timeout(60)
def test_realsense_node_publishes_image_and_camera_info(tmp_path):
    from sensor_msgs.msg import CameraInfo, Image

    from lpds_ros.config import load_config
    from lpds_ros.nodes.realsense_node import RealSenseNode
    from lpds_ros.perception import CameraIntrinsics

    source = FakeRealSense()
    intrinsics_file = tmp_path / "camera_intrinsics.yaml"
    with spinning(_DOMAIN + 1) as (context, probe, add):
        images, infos = [], []
        probe.create_subscription(Image, "/lpds/camera/image_raw", images.append, 10)
        probe.create_subscription(CameraInfo, "/lpds/camera/camera_info", infos.append, 10)
        add(RealSenseNode(source=source, context=context, parameter_overrides=[
            rclpy.parameter.Parameter("intrinsics_file", value=str(intrinsics_file))]))
        deadline = time.monotonic() + 30
        while (len(images) < 3 or len(infos) < 3) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(images) >= 3 and len(infos) >= 3
        image, info = images[-1], infos[-1]
        assert (image.width, image.height, image.encoding) == (64, 48, "rgb8")
        assert image.header.frame_id == info.header.frame_id == "camera_color_optical_frame"
        # each image comes with its CameraInfo (same stamp); the two subscriptions match and receive
        # independently, so wait for a pair rather than expect the newest image's info to be there already
        def stamps(msgs):
            return {(m.header.stamp.sec, m.header.stamp.nanosec) for m in list(msgs)}

        while not stamps(images) & stamps(infos) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stamps(images) & stamps(infos)
        np.testing.assert_allclose(np.reshape(info.k, (3, 3)), source.intrinsics.K)
        assert info.distortion_model == "plumb_bob" and list(info.d) == pytest.approx([0.1, -0.05, 0.0, 0.0, 0.01])
        assert convert.image_to_numpy(image).shape == (48, 64, 3)
        # the intrinsics file is what perception_node and `lpds calibrate` read
        assert load_config(intrinsics_file, CameraIntrinsics) == source.intrinsics
    assert source.closed


@pytest.mark.timeout(60)
def test_realsense_node_without_a_camera_stops_with_one_line():
    """No camera here (and possibly no pyrealsense2): one clear line, exit status 2, no traceback."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(_DOMAIN + 2), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    script = Path(sys.executable).parent / "lpds_realsense_node"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "lpds_ros.nodes.realsense_node"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=50)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and len(lines) == 1, out.stderr
    assert lines[0].startswith("realsense_node: error: ") and "RealSense" in lines[0], lines[0]


class PressedKeys:
    """The key-source interface of ``ScriptedKeys`` / ``TerminalKeys``, pressed by the test when it chooses."""

    def __init__(self):
        self._pressed: list[str] = []
        self._lock = threading.Lock()

    def press(self, key: str) -> None:
        with self._lock:
            self._pressed.append(key)

    def read_keys(self, step: int) -> list[str]:
        with self._lock:
            keys, self._pressed = self._pressed, []
        return keys

    def close(self) -> None:
        pass


@pytest.mark.timeout(60)
def test_teleop_node_keeps_a_first_observation_that_overtakes_the_start_event(tmp_path):
    """The start event and the first state travel on two topics, and DDS orders neither against the other: a
    first state that arrives first must still become the demo's first step (acted on from a reset target)."""
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Int64, String

    from lpds_ros.data.hdf5 import load_demos
    from lpds_ros.envs import env_class
    from lpds_ros.nodes.teleop_node import TeleopNode

    out = tmp_path / "teleop.hdf5"
    keys = PressedKeys()
    labels = convert.layout_labels(env_class("franka-lift").layout())
    eef = labels.index("robot0_eef_pos[0]")
    sent = {}

    def wait_for(predicate, what):
        deadline = time.monotonic() + 10
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.005)

    with spinning(_DOMAIN + 3) as (context, probe, add):
        actions, resets = [], []
        probe.create_subscription(JointState, "/lpds/action_raw", actions.append, 10)
        probe.create_subscription(Int64, "/lpds/reset", lambda m: resets.append(m.data), 10)
        obs_pub = probe.create_publisher(JointState, "/lpds/observation", 10)
        episode_pub = probe.create_publisher(String, "/lpds/episode", 10)
        node = add(TeleopNode(keys=keys, context=context, parameter_overrides=[
            rclpy.parameter.Parameter("task", value="franka-lift"), rclpy.parameter.Parameter("out", value=str(out)),
            rclpy.parameter.Parameter("sim_episodes", value=True), rclpy.parameter.Parameter("seed", value=7)]))

        def observe(t: float) -> None:
            values = np.random.default_rng(int(t * 100)).normal(0, 0.1, len(labels))
            values[eef:eef + 3] = [0.45, 0.0, 0.2]
            sent[t] = values.astype(np.float32)
            obs_pub.publish(convert.vector_msg(labels, values, t))

        def event(kind: str, t: float, **more) -> None:
            episode_pub.publish(String(data=json.dumps({"event": kind, "stamp": t, **more})))

        wait_for(lambda: obs_pub.get_subscription_count() and episode_pub.get_subscription_count(), "teleop_node")
        for first, second, end, seed in ((1.0, 1.05, 1.1, 7), (1.15, 1.2, 1.25, 8)):
            keys.press("b")  # begin: the node resets the sim
            wait_for(lambda: resets and resets[-1] == seed, f"the reset for seed {seed}")
            n = len(actions)
            observe(first)  # the new episode's first state, ahead of its start event
            time.sleep(0.2)
            assert len(actions) == n, "acted on a state before its episode started"
            event("start", first, seed=seed)
            wait_for(lambda: len(actions) > n, "the action for the early state")
            assert convert.to_sec(actions[-1].header.stamp) == pytest.approx(first)
            keys.press("a")  # +y from the second step on
            observe(second)
            wait_for(lambda: len(actions) > n + 1, "the second action")
            observe(end)  # the final state, ahead of the end event: answered, but not part of the demo
            wait_for(lambda: len(actions) > n + 2, "the action for the final state")
            episode_pub.publish(String(data="{not json"))  # ignored, as is any malformed event
            event("end", "soon")
            event("end", end, success=seed == 7)
            wait_for(lambda: node.recorder.state == node.recorder.IDLE, "the save")
    demos = load_demos(out)
    assert [len(e) for e in demos.episodes] == [2, 2], node.messages
    assert [e.success for e in demos.episodes] == [True, False]
    np.testing.assert_allclose(demos.episodes[0].obs, [sent[1.0], sent[1.05]], atol=1e-6)
    np.testing.assert_allclose(demos.episodes[1].obs, [sent[1.15], sent[1.2]], atol=1e-6)
    assert demos.episodes[0].actions[0, 1] == 0 and demos.episodes[0].actions[1, 1] > 0  # a, pressed after step 1
