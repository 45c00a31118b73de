"""The Franka tasks: registry, spaces, seeded determinism, success/termination, vector envs, rendering,
the simulation core's tracking, and the frame helpers.  Real MuJoCo physics throughout."""
import json

import gymnasium
import numpy as np
import pytest

from lpds_ros import frames
from lpds_ros.envs import (
    FRANKA_TASKS,
    TASKS,
    make_env,
    make_vector_env,
    register_gym_ids,
)
from lpds_ros.errors import LpdsError

ROBOT_KEYS = ["robot0_joint_pos", "robot0_joint_vel", "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_width"]


@pytest.fixture(scope="module", params=FRANKA_TASKS)
def env(request):
    e = make_env(request.param)
    yield e
    e.close()


def _slice(layout, key):
    start = 0
    for k, n in layout.items():
        if k == key:
            return slice(start, start + n)
        start += n
    raise KeyError(key)


def test_registry_names_and_horizons():
    assert FRANKA_TASKS == ["franka-lift", "franka-pickplace", "franka-insert"] == list(TASKS)[:3]
    for spec in (TASKS[t] for t in FRANKA_TASKS):  # the gym/Adroit tasks: tests/test_gym_tasks.py
        assert 50 <= spec.max_episode_steps <= 200 and ":" in spec.entry_point


def test_unknown_task_and_option_are_one_clear_error():
    with pytest.raises(LpdsError, match="franka-lift, franka-pickplace, franka-insert"):
        make_env("franka-stack")
    with pytest.raises(LpdsError, match="unknown option"):
        make_env("franka-lift", horizon=5)
    with pytest.raises(LpdsError, match="action_scale"):
        make_env("franka-lift", action_scale=-1.0)
    with pytest.raises(LpdsError, match="unknown task"):
        make_vector_env("nope", 2)


def test_spaces_layout_and_meta(env):
    u = env.unwrapped
    assert env.action_space == gymnasium.spaces.Box(-1.0, 1.0, (4,), np.float32)
    assert env.observation_space.dtype == np.float32
    layout = u.obs_layout
    assert list(layout)[:5] == ROBOT_KEYS and ("goal_pos" in layout) == (u.task_name != "franka-lift")
    assert env.observation_space.shape == (sum(layout.values()),)
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.float32 and env.observation_space.contains(obs) and info == {"success": False}
    # eef at home, pointing down, quaternion (x, y, z, w) in the down hemisphere; gripper open
    np.testing.assert_allclose(obs[_slice(layout, "robot0_eef_pos")], [0.45, 0.0, 0.22], atol=2e-4)
    np.testing.assert_allclose(obs[_slice(layout, "robot0_eef_quat")], frames.DOWN_QUAT_XYZW, atol=1e-3)
    assert obs[_slice(layout, "robot0_gripper_width")][0] == pytest.approx(0.08, abs=1e-6)
    rel = obs[_slice(layout, "object_to_eef_pos")]
    np.testing.assert_allclose(rel, obs[_slice(layout, "robot0_eef_pos")] - obs[_slice(layout, "object_pos")], atol=1e-6)
    meta = u.env_meta()
    assert json.loads(json.dumps(meta)) == meta
    assert meta["task"] == u.task_name and meta["control_hz"] == 20 and meta["obs_layout"] == layout
    assert meta["max_episode_steps"] == TASKS[u.task_name].max_episode_steps and meta["action"]["dim"] == 4
    # the recorded kwargs rebuild the same env
    assert make_env(u.task_name, **meta["kwargs"]).unwrapped.env_meta() == meta


def test_seeded_reset_is_bit_for_bit_reproducible(env):
    actions = np.random.default_rng(1).uniform(-1, 1, (40, 4)).astype(np.float32)

    def rollout(seed):
        out = [env.reset(seed=seed)[0]]
        out += [env.step(a)[0] for a in actions]
        return np.stack(out)

    first = rollout(3)
    env.reset(seed=99)  # anything in between must not matter
    env.step(actions[0])
    np.testing.assert_array_equal(rollout(3), first)
    other = env.reset(seed=4)[0]
    assert not np.array_equal(other, first[0])  # the object start differs
    assert np.array_equal(make_env(env.unwrapped.task_name).reset(seed=3)[0], first[0])  # a fresh env agrees


def test_reset_randomises_object_position_and_yaw():
    env = make_env("franka-lift")
    layout = env.unwrapped.obs_layout
    poses = np.stack([env.reset(seed=s)[0][_slice(layout, "object_pos")] for s in range(20)])
    quats = np.stack([env.reset(seed=s)[0][_slice(layout, "object_quat")] for s in range(20)])
    assert poses[:, 0].std() > 0.02 and poses[:, 1].std() > 0.02
    assert np.all((poses[:, 0] >= 0.42) & (poses[:, 0] <= 0.58) & (np.abs(poses[:, 1]) <= 0.08))
    np.testing.assert_allclose(poses[:, 2], 0.025, atol=1e-6)
    yaws = np.array([frames.yaw_of_quat(q) for q in quats])
    assert yaws.std() > 0.2 and np.all(np.abs(yaws) <= np.pi / 4 + 1e-6)


def _place_and_step(env, seed, body, pos, quat=(0.0, 0.0, 0.0, 1.0)):
    env.reset(seed=seed)
    sim = env.unwrapped.sim
    sim.set_object_pose(body, pos, quat)
    sim.forward()
    return env.step(np.array([0.0, 0.0, 0.0, -1.0], np.float32))


def test_success_gives_reward_one_and_terminates():
    env = make_env("franka-lift")
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(np.zeros(4, np.float32))
    assert (reward, terminated, truncated, info["success"]) == (0.0, False, False, False)
    # the cube 15 cm up (it is falling, still above the 5 cm success height after one step)
    _, reward, terminated, _, info = _place_and_step(env, 0, "cube", [0.5, 0.0, 0.175])
    assert (reward, terminated, info["success"]) == (1.0, True, True)

    env = make_env("franka-pickplace")
    env.reset(seed=1)
    goal = env.unwrapped._goal
    _, reward, terminated, _, info = _place_and_step(env, 1, "can", [goal[0] + 0.02, goal[1] - 0.02, 0.0605])
    assert (reward, terminated, info["success"]) == (1.0, True, True)
    _, reward, terminated, _, info = _place_and_step(env, 1, "can", [goal[0] + 0.2, goal[1], 0.05])
    assert (reward, terminated, info["success"]) == (0.0, False, False)

    env = make_env("franka-insert")
    env.reset(seed=2)
    goal = env.unwrapped._goal
    _, reward, terminated, _, info = _place_and_step(env, 2, "peg", [goal[0], goal[1], 0.05])  # all the way in
    assert (reward, terminated, info["success"]) == (1.0, True, True)
    _, reward, terminated, _, info = _place_and_step(env, 2, "peg", [goal[0], goal[1], 0.11])  # resting on top
    assert (reward, terminated, info["success"]) == (0.0, False, False)


def test_time_limit_truncates_at_the_horizon_and_dense_reward_is_below_one():
    env = make_env("franka-lift", dense_reward=True)
    env.reset(seed=0)
    rewards = []
    for t in range(TASKS["franka-lift"].max_episode_steps):
        _, r, terminated, truncated, info = env.step(np.array([0.0, 0.0, -1.0, -1.0], np.float32))
        rewards.append(r)
        assert not terminated and not info["success"]
        assert truncated == (t == TASKS["franka-lift"].max_episode_steps - 1)
    assert 0.0 < min(rewards) and max(rewards) < 1.0


def test_actions_move_a_persistent_target_and_the_gripper():
    env = make_env("franka-lift")
    layout = env.unwrapped.obs_layout
    obs0, _ = env.reset(seed=0)
    for _ in range(10):
        obs, *_ = env.step(np.array([1.0, 0.0, 0.0, 1.0], np.float32))
    dx = obs[_slice(layout, "robot0_eef_pos")] - obs0[_slice(layout, "robot0_eef_pos")]
    assert dx[0] > 0.08 and abs(dx[1]) < 0.005 and abs(dx[2]) < 0.005  # ~0.25 m/s along +x only
    assert obs[_slice(layout, "robot0_gripper_width")][0] < 0.01  # closing (on nothing; ~0.2 s time constant)
    for _ in range(10):
        obs, *_ = env.step(np.array([0.0, 0.0, 0.0, -1.0], np.float32))  # zero motion: the arm settles, no drift
    before = obs[_slice(layout, "robot0_eef_pos")].copy()
    for _ in range(20):
        obs, *_ = env.step(np.array([0.0, 0.0, 0.0, -1.0], np.float32))
    np.testing.assert_allclose(obs[_slice(layout, "robot0_eef_pos")], before, atol=1e-3)
    assert obs[_slice(layout, "robot0_gripper_width")][0] > 0.075  # open again
    with pytest.raises(LpdsError, match="shape"):
        env.step(np.zeros(3, np.float32))
    with pytest.raises(LpdsError, match="non-finite"):
        env.step(np.array([np.nan, 0, 0, 0], np.float32))


def test_vector_env_and_gymnasium_ids():
    envs = make_vector_env("franka-pickplace", 2, seed=5)
    obs, _ = envs.reset(seed=5)
    assert obs.shape == (2, 35) and obs.dtype == np.float32 and not np.array_equal(obs[0], obs[1])
    obs2, rewards, terminated, truncated, infos = envs.step(np.zeros((2, 4), np.float32))
    assert obs2.shape == (2, 35) and rewards.shape == (2,) and infos["success"].tolist() == [False, False]
    envs.close()
    assert register_gym_ids() == [spec.gym_id for spec in TASKS.values()]
    env = gymnasium.make("lpds/FrankaInsert-v0")
    assert env.spec.max_episode_steps == TASKS["franka-insert"].max_episode_steps
    assert env.reset(seed=0)[0].shape == (35,)


def test_rgb_array_rendering():
    env = make_env("franka-lift", render_mode="rgb_array", render_width=96, render_height=64)
    env.reset(seed=0)
    try:
        img = env.render()
    except LpdsError as exc:
        pytest.skip(f"offscreen rendering (EGL) is not available here: {exc}")
    assert img.shape == (64, 96, 3) and img.dtype == np.uint8 and img.std() > 5  # not a blank frame
    with pytest.raises(LpdsError, match="render_mode"):
        make_env("franka-lift").render()


def test_sim_core_tracks_absolute_pose_targets():
    """The ROS sim node drives FrankaSim with absolute target poses: position and orientation converge."""
    sim = make_env("franka-lift").unwrapped.sim
    sim.reset()
    target_q = frames.quat_multiply(frames.quat_from_yaw(0.4), frames.DOWN_QUAT_XYZW)
    sim.set_target([0.55, 0.12, 0.15], target_q, gripper_closed=1.0)
    path = []
    for _ in range(40):
        sim.step_control()
        path.append(sim.ee_pose()[0])
    pos, quat = sim.ee_pose()
    np.testing.assert_allclose(pos, [0.55, 0.12, 0.15], atol=1e-3)
    assert abs(abs(quat @ target_q) - 1.0) < 1e-5  # same rotation (up to sign)
    speeds = np.linalg.norm(np.diff(np.stack(path), axis=0), axis=1) * 20
    assert speeds.max() < 0.5  # a bounded-speed tracker, not a jump
    assert sim.gripper_width() < 0.002 and sim.joint_positions().shape == (7,) and sim.joint_velocities().shape == (7,)
    tpos, tquat, grip = sim.target()
    np.testing.assert_allclose(tpos, [0.55, 0.12, 0.15])
    np.testing.assert_allclose(tquat, target_q)
    assert grip == 1.0
    with pytest.raises(LpdsError, match="not a rotation"):
        sim.set_target([0.5, 0, 0.2], [0, 0, 0, 0])


def test_frame_helpers_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = frames.canonical_quat(rng.normal(size=4))
        np.testing.assert_allclose(frames.wxyz_to_xyzw(frames.xyzw_to_wxyz(q)), q)
        np.testing.assert_allclose(frames.canonical_quat(frames.matrix_to_quat(frames.quat_to_matrix(q))), q, atol=1e-9)
        r = frames.canonical_quat(rng.normal(size=4))
        np.testing.assert_allclose(frames.quat_to_matrix(frames.quat_multiply(q, r)),
                                   frames.quat_to_matrix(q) @ frames.quat_to_matrix(r), atol=1e-9)
    assert frames.yaw_of_quat(frames.quat_from_yaw(0.7)) == pytest.approx(0.7)
    np.testing.assert_allclose(frames.quat_to_matrix(frames.DOWN_QUAT_XYZW) @ [0, 0, 1], [0, 0, -1])
    np.testing.assert_allclose(frames.canonical_quat([-1.0, 0, 0, 0.01], frames.DOWN_QUAT_XYZW)[0], 1.0, atol=1e-4)
