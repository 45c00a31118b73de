"""The pure parts of the ROS stack, without ROS: chunk scheduling, the task's target rule, the sim bridge
(gripper goals, robot mode, episodes), the observation trigger, the names YAML, and the launch files."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from lpds_ros.config import ConfigError
from lpds_ros.errors import LpdsError
from lpds_ros.perception.sync import ObservationTrigger
from lpds_ros.runtime.chunking import ChunkExecutor, DeltaTargetIntegrator

REPO = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------------------------- chunks
def _chunk(start: int, horizon: int = 8) -> np.ndarray:
    """A chunk whose action i is [start + i] (so the test can read which step an action was planned for)."""
    return (start + np.arange(horizon, dtype=np.float64))[:, None]


def _run(ex: ChunkExecutor, steps: int, late: set[int] = frozenset()):
    """Drive the executor like the node does; a plan requested at step k is delivered before step
    k + 1 (or, for k in ``late``, one step later).  Returns (actions or None per step, plan steps)."""
    actions, plans, pending = [], [], []
    for step in range(steps):
        for item in [p for p in pending if p[0] <= step]:
            pending.remove(item)
            ex.deliver(*item[1:])
        offset = ex.plan_request()
        if offset is not None:
            plans.append(step)
            item = (step + (2 if step in late else 1), _chunk(step), offset, ex.generation)
            if offset == 0 and step not in late:  # nothing to execute: the node waits for it
                ex.deliver(*item[1:])
            else:
                pending.append(item)
        action = ex.pop()
        actions.append(None if action is None else float(action[0]))
    return actions, plans


def test_chunks_planned_ahead_run_time_aligned():
    ex = ChunkExecutor(horizon=8, exec_horizon=4, lead_steps=1)
    actions, plans = _run(ex, 12)
    # the first chunk is planned at step 0; the next ones one step before each seam (3, 7, 11)
    assert plans == [0, 3, 7, 11]
    # every step executes the action its chunk planned for that very step
    assert actions == list(range(12))


def test_lead_zero_is_the_gym_evaluator():
    ex = ChunkExecutor(horizon=8, exec_horizon=4, lead_steps=0)
    actions, plans = _run(ex, 9)
    assert plans == [0, 4, 8]
    assert actions == list(range(9))


def test_a_late_chunk_holds_one_step_then_skips_the_past():
    ex = ChunkExecutor(horizon=8, exec_horizon=4, lead_steps=1)
    actions, _ = _run(ex, 9, late={3})
    assert actions[:4] == [0, 1, 2, 3]
    assert actions[4] is None  # the chunk planned at step 3 arrived one step late
    assert actions[5:8] == [5, 6, 7]  # ... and its action for step 4 was skipped
    assert ex.late_steps == 1


def test_blending_crossfades_with_the_old_chunks_prediction():
    ex = ChunkExecutor(horizon=8, exec_horizon=4, lead_steps=1, blend_steps=1)
    ex.plan_request()
    ex.deliver(np.zeros((8, 1)), 0, ex.generation)
    for _ in range(3):
        ex.pop()
    assert ex.plan_request() == 1
    ex.pop()
    ex.deliver(np.ones((8, 1)), 1, ex.generation)
    assert float(ex.pop()[0]) == pytest.approx(0.5)  # half old prediction (0), half new (1)
    assert float(ex.pop()[0]) == 1.0


def test_reset_drops_plans_of_the_previous_episode():
    ex = ChunkExecutor(horizon=8, exec_horizon=4, lead_steps=1)
    old = ex.generation
    ex.plan_request()
    ex.reset()
    assert not ex.deliver(np.zeros((8, 1)), 0, old)
    assert ex.pop() is None


def test_bad_schedules_are_rejected():
    with pytest.raises(LpdsError):
        ChunkExecutor(horizon=8, exec_horizon=4, lead_steps=4)
    with pytest.raises(LpdsError):
        ChunkExecutor(horizon=4, exec_horizon=8)


def test_integrator_is_the_tasks_target_rule():
    """Against FrankaLift.step: same targets, same gripper commands, for random actions."""
    from lpds_ros.envs import make_env

    env = make_env("franka-lift")
    task = env.unwrapped
    env.reset(seed=3)
    integ = DeltaTargetIntegrator()
    rng = np.random.default_rng(0)
    for _ in range(15):
        action = rng.uniform(-1.2, 1.2, 4)
        target, quat, grip = integ.step(action, task.sim.tcp_position())
        env.step(action.astype(np.float32))
        sim_target, sim_quat, sim_grip = task.sim.target()
        np.testing.assert_allclose(target, sim_target, atol=1e-12)
        assert grip == sim_grip
        assert abs(abs(float(quat @ sim_quat)) - 1.0) < 1e-9
    env.close()


# ----------------------------------------------------------------------------------------------- sim bridge
@pytest.fixture(scope="module")
def bridge():
    from lpds_ros.envs.sim_bridge import SimBridge

    b = SimBridge("franka-lift", max_episode_steps=1000)
    yield b
    b.close()


def _drive(bridge, target, steps):
    for _ in range(steps):
        bridge.set_target(target, [1.0, 0.0, 0.0, 0.0])
        report = bridge.step()
    return report


def test_bridge_grasp_succeeds_on_the_cube_and_fails_on_air(bridge):
    bridge.reset(seed=0)
    cube, _ = bridge.object_pose()
    _drive(bridge, cube + [0, 0, 0.08], 25)
    _drive(bridge, cube + [0, 0, -0.005], 25)
    goal, _ = bridge.start_gripper("grasp", 0.04, 0.035, 0.04, force=40.0)
    steps = 0
    while not goal.done and steps < 60:
        _drive(bridge, cube + [0, 0, -0.005], 1)
        steps += 1
    assert goal.done and goal.success, goal.error
    assert 0.045 < goal.final_width < 0.075  # the 5 cm cube, at some yaw

    goal, _ = bridge.start_gripper("move", 0.08)
    _drive(bridge, bridge.ee_pose()[0], 20)
    assert goal.done and goal.success
    _drive(bridge, cube + [0, 0, 0.15], 30)
    goal, _ = bridge.start_gripper("grasp", 0.04, 0.035, 0.04)
    while not goal.done:
        _drive(bridge, cube + [0, 0, 0.15], 1)
    assert not goal.success and "no object" in goal.error


def test_bridge_reflex_stops_the_arm_until_recovery(bridge):
    bridge.reset(seed=1)
    start = bridge.ee_pose()[0]
    bridge.inject_fault("reflex")
    assert not bridge.set_target(start + [0.1, 0, 0], [1.0, 0, 0, 0])
    for _ in range(10):
        bridge.step()
    assert np.linalg.norm(bridge.ee_pose()[0] - start) < 0.005
    assert bridge.recover() and bridge.robot_mode == 1
    report = _drive(bridge, start + [0.05, 0, 0], 20)
    assert bridge.robot_mode == 2 and np.linalg.norm(bridge.ee_pose()[0] - (start + [0.05, 0, 0])) < 0.01
    assert report.steps == 30


def test_bridge_time_taps_and_episodes(bridge):
    from lpds_ros.envs.sim_bridge import JOINT_OFFSETS
    from lpds_ros.safety.franka import forward_kinematics

    bridge.reset(seed=2)
    t0 = bridge.time
    taps = []
    cuts = bridge.taps(50.0)
    bridge.step(cuts, on_tap=taps.append)
    assert bridge.time == pytest.approx(t0 + 0.05)
    # 50 Hz on the sim-time grid: every 0.02 s inside the period
    grid = [round(k * 0.02, 9) for k in range(int(t0 / 0.02) + 1, int((t0 + 0.05) / 0.02) + 1) if round(k * 0.02, 9) < t0 + 0.05 - 1e-9]
    assert taps == pytest.approx(grid)
    # a new episode never reuses a stamp
    end = bridge.time
    bridge.reset(seed=3)
    assert bridge.time > end
    # joints in Franka's convention: the DH kinematics give the sim's TCP (0.1459 m fingertip offset)
    _, tcp = forward_kinematics(bridge.joint_positions()[None], 0.1459)
    assert np.linalg.norm(tcp[0, :3, 3] - bridge.ee_pose()[0]) < 0.003
    assert JOINT_OFFSETS[5] == pytest.approx(np.pi / 2)


# ----------------------------------------------------------------------------------------------- perception trigger
def test_trigger_all_fires_once_per_consistent_state():
    trig = ObservationTrigger("all", ["eef", "joints"])
    assert not trig.update("eef", 1.0)
    assert trig.update("joints", 1.0)
    trig.published()
    assert not trig.update("eef", 1.05)
    assert trig.update("joints", 1.05)


def test_trigger_by_source_respects_the_min_period():
    trig = ObservationTrigger("eef", ["eef", "joints"], min_period_s=0.05)
    trig.update("joints", 0.0)
    assert trig.update("eef", 0.0)
    trig.published()
    assert not trig.update("eef", 0.01)
    assert trig.update("eef", 0.05)


# ----------------------------------------------------------------------------------------------- names YAML
def test_topics_yaml_has_issue_9s_names():
    from lpds_ros.nodes.topics import load_topics

    t = load_topics(REPO / "config" / "topics.yaml")
    assert (t.target_pose, t.current_pose, t.joint_states) == ("target_pose", "current_pose", "/joint_states")
    assert t.robot_state == "/franka_robot_state_broadcaster/robot_state"
    assert (t.gripper_homing, t.gripper_move, t.gripper_grasp, t.gripper_joint_states) == (
        "/franka_gripper/homing", "/franka_gripper/move", "/franka_gripper/grasp", "/franka_gripper/joint_states")
    assert (t.observation, t.action_raw, t.estop, t.clock) == ("/lpds/observation", "/lpds/action_raw", "/lpds/estop", "/clock")


def test_topics_yaml_missing_or_bad_key_is_one_line(tmp_path):
    from lpds_ros.nodes.topics import load_topics

    text = (REPO / "config" / "topics.yaml").read_text()
    missing = tmp_path / "missing.yaml"
    missing.write_text(re.sub(r"(?m)^grasp.*$|^gripper_grasp:.*$", "", text))
    with pytest.raises(ConfigError, match=r"missing topic key\(s\) \['gripper_grasp'\]") as info:
        load_topics(missing)
    assert "\n" not in str(info.value)
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("/lpds/estop  ", "/lpds//estop"))
    with pytest.raises(ConfigError, match="estop"):
        load_topics(bad)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(text + "\nextra_topic: /x\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_topics(unknown)


def test_graph_params_file_is_checked(tmp_path):
    from lpds_ros.nodes.graph import load_graph_params

    params = load_graph_params(REPO / "config" / "sim_graph.yaml")
    assert params["safety_filter_node"]["robot"] == "panda"
    bad = tmp_path / "p.yaml"
    bad.write_text("policy_node:\n  ros__parameters:\n    lead_step: 1\n")
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['lead_step'\]"):
        load_graph_params(bad)
    for name in ("franka_graph.yaml",):
        load_graph_params(REPO / "config" / name)


def test_convert_round_trips():
    from lpds_ros.nodes import convert

    layout = {"robot0_eef_pos": 3, "robot0_gripper_width": 1}
    labels = convert.layout_labels(layout)
    assert labels[:2] == ["robot0_eef_pos[0]", "robot0_eef_pos[1]"] and convert.labels_to_layout(labels) == layout
    msg = convert.numpy_to_pose([1, 2, 3], [0, 0, 0, 1], 12.345678901, "fr3_link0")
    pos, quat, stamp = convert.pose_to_numpy(msg)
    assert pos.tolist() == [1, 2, 3] and quat.tolist() == [0, 0, 0, 1] and stamp == pytest.approx(12.345678901, abs=1e-9)
    raw = convert.action_raw_from_msg(convert.action_raw_msg([0.4, 0, 0.2], [1, 0, 0, 0], 1.0, [0.1, 0, 0, 1], 3.5))
    assert raw[2] == 1.0 and raw[3] == 3.5
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    np.testing.assert_array_equal(convert.image_to_numpy(convert.image_msg(image, 1.0, "cam")), image)


# ----------------------------------------------------------------------------------------------- launch files
def _console_scripts() -> set[str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    scripts = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.match(r"^\w+ = [\w.]+:\w+$", node.value):
            scripts.add(node.value.split(" = ")[0])
    return scripts


def _launch_facts(path: Path) -> tuple[list[tuple[str, str]], list[tuple[str, list[str]]]]:
    """(package, executable) of every Node(...) and (package, path parts) of every
    PathJoinSubstitution([FindPackageShare(pkg), 'a', 'b']) in a launch file."""
    tree = ast.parse(path.read_text())
    nodes, files = [], []
    for call in ast.walk(tree):
        if not isinstance(call, ast.Call):
            continue
        name = getattr(call.func, "id", getattr(call.func, "attr", ""))
        kwargs = {k.arg: k.value for k in call.keywords}
        if name == "Node":
            nodes.append((ast.literal_eval(kwargs["package"]), ast.literal_eval(kwargs["executable"])))
        if name == "PathJoinSubstitution" and isinstance(call.args[0], ast.List):
            first, *rest = call.args[0].elts
            assert getattr(first.func, "id", "") == "FindPackageShare", ast.dump(first)
            files.append((ast.literal_eval(first.args[0]), [ast.literal_eval(e) for e in rest]))
    return nodes, files


@pytest.mark.parametrize("launch", sorted(p.name for p in (REPO / "launch").glob("*.py")))
def test_launch_file_names_real_executables_and_files(launch):
    path = REPO / "launch" / launch
    compile(path.read_text(), str(path), "exec")
    nodes, files = _launch_facts(path)
    scripts = _console_scripts()
    ours = [exe for pkg, exe in nodes if pkg == "lpds_ros"]
    assert ours, "the launch file starts no lpds node"
    for exe in ours:
        assert exe in scripts, f"{launch}: executable {exe} is not a console script in setup.py"
    # executables of other packages: the ones the robot computer provides
    assert {(p, e) for p, e in nodes if p != "lpds_ros"} <= {("controller_manager", "spawner")}
    for pkg, parts in files:
        if pkg == "lpds_ros":
            assert (REPO.joinpath(*parts)).is_file(), f"{launch} names {'/'.join(parts)}, which does not exist"
        else:
            assert (pkg, parts) == ("franka_bringup", ["launch", "franka.launch.py"]), (pkg, parts)
    # every lpds file the launch names is installed by setup.py's data_files
    setup = (REPO / "setup.py").read_text()
    for pkg, parts in files:
        if pkg == "lpds_ros":
            assert f'glob("{parts[0]}/*.{parts[-1].rsplit(".", 1)[1]}")' in setup, parts


def test_sim_launch_has_the_four_nodes_and_franka_launch_the_robot():
    sim_nodes, _ = _launch_facts(REPO / "launch" / "sim.launch.py")
    assert sorted(e for _, e in sim_nodes) == ["lpds_perception_node", "lpds_policy_node", "lpds_safety_filter_node", "lpds_sim_node"]
    robot_nodes, robot_files = _launch_facts(REPO / "launch" / "franka.launch.py")
    assert "lpds_sim_node" not in [e for _, e in robot_nodes]
    assert ("franka_bringup", ["launch", "franka.launch.py"]) in robot_files
    text = (REPO / "launch" / "franka.launch.py").read_text()
    for needed in ("robot_ip", "cartesian_impedance_controller", "pose_broadcaster", "load_gripper", "controllers_yaml"):
        assert needed in text


def test_lpds_graph_cli(capsys):
    import argparse

    from lpds_ros.cli import build_parser, main
    from lpds_ros.nodes.graph import graph_params

    assert main(["graph", "--scripted"]) == 2  # only --sim starts from Python
    assert "ros2 launch lpds_ros franka.launch.py" in capsys.readouterr().err
    args = build_parser().parse_args(["graph", "--sim", "--task", "franka-lift", "--policy", "x", "--mode", "base",
                                      "--lead-steps", "0", "--seed", "7"])
    assert isinstance(args, argparse.Namespace)
    params = graph_params(args)
    assert params["policy_node"]["model_dir"] == "x" and params["policy_node"]["mode"] == "base"
    assert params["policy_node"]["lead_steps"] == 0 and params["policy_node"]["seed"] == 7
    assert params["sim_node"]["auto_start"] is False
