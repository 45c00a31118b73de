"""The wrapped gymnasium locomotion and Adroit tasks (spaces, seeding, success, termination, snapshots), the SAC
expert (`lpds expert`), expert demos (`lpds collect --expert`) and a tiny bench on hopper.  Real MuJoCo."""
import argparse
import json

import gymnasium
import mujoco
import numpy as np
import pytest
import torch

from lpds_ros.envs import GYM_TASKS, TASKS, make_env, make_vector_env
from lpds_ros.errors import LpdsError

DIMS = {  # task: (obs_dim, action_dim, horizon)
    "hopper": (11, 3, 1000), "walker2d": (17, 6, 1000), "halfcheetah": (17, 6, 1000),
    "adroit-pen": (45, 24, 100), "adroit-door": (39, 28, 200), "adroit-hammer": (46, 26, 200),
    "adroit-relocate": (39, 30, 200),
}


def test_registry_lists_every_gym_and_adroit_task():
    assert GYM_TASKS == list(DIMS)
    for task, (_, _, horizon) in DIMS.items():
        assert TASKS[task].max_episode_steps == horizon


@pytest.mark.parametrize("task", list(DIMS))
def test_spaces_seeding_and_meta(task):
    obs_dim, action_dim, _ = DIMS[task]
    env = make_env(task)
    assert env.action_space == gymnasium.spaces.Box(-1.0, 1.0, (action_dim,), np.float32)
    assert env.observation_space.shape == (obs_dim,) and env.observation_space.dtype == np.float32
    assert sum(env.unwrapped.obs_layout.values()) == obs_dim
    actions = np.random.default_rng(0).uniform(-1, 1, (15, action_dim)).astype(np.float32)

    def rollout(seed):
        obs, info = env.reset(seed=seed)
        assert obs.dtype == np.float32 and info == {"success": False}
        out = [obs]
        for a in actions:
            obs, reward, terminated, truncated, info = env.step(a)
            assert isinstance(reward, float) and set(info) == {"success"} and not truncated
            out.append(obs)
            if terminated:
                break
        return np.stack(out)

    first = rollout(3)
    rollout(7)
    np.testing.assert_array_equal(rollout(3), first)  # bit for bit
    assert not np.array_equal(make_env(task).reset(seed=4)[0], first[0])  # reset noise depends on the seed
    meta = env.unwrapped.env_meta()
    assert json.loads(json.dumps(meta)) == meta and meta["obs_dim"] == obs_dim and meta["action"]["dim"] == action_dim
    with pytest.raises(LpdsError, match="shape"):
        env.step(np.zeros(action_dim + 1, np.float32))
    with pytest.raises(LpdsError, match="non-finite"):
        env.step(np.full(action_dim, np.nan, np.float32))


def test_unknown_option_is_one_clear_error():
    with pytest.raises(LpdsError, match="terminate_on_success"):
        make_env("hopper", dense_reward=True)


def test_locomotion_terminates_on_a_fall_and_has_no_success():
    env = make_env("hopper")
    env.reset(seed=0)
    for t in range(1000):
        _, _, terminated, truncated, info = env.step(np.array([1.0, -1.0, 1.0], np.float32))
        assert not info["success"]
        if terminated or truncated:
            break
    assert terminated and t < 200  # hopper falls over quickly under a bang-bang action
    env = make_env("halfcheetah")
    env.reset(seed=0)
    assert not any(env.step(np.ones(6, np.float32))[2] for _ in range(100))  # the cheetah never terminates


def _open_door(env):
    inner = env.unwrapped.env
    inner.data.qpos[inner.door_hinge_addrs] = 1.55
    mujoco.mj_forward(inner.model, inner.data)
    return env.step(np.zeros(28, np.float32))


def test_adroit_success_signal_and_the_termination_choice():
    env = make_env("adroit-door", success_hold=1)  # the raw per-step signal
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(np.zeros(28, np.float32))
    assert not info["success"] and not terminated
    _, reward, terminated, _, info = _open_door(env)
    assert info["success"] and not terminated and reward > 10  # default: the episode runs on (dense bonus)
    env = make_env("adroit-door")  # default: DAPG's criterion, the goal held on 25 steps of the episode
    env.reset(seed=0)
    flags = [_open_door(env)[4]["success"] for _ in range(25)]
    assert flags == [False] * 24 + [True]
    assert not env.reset(seed=0)[1]["success"] and not _open_door(env)[4]["success"]  # the count restarts
    env = make_env("adroit-door", terminate_on_success=True, success_hold=1)
    env.reset(seed=0)
    _, _, terminated, _, info = _open_door(env)
    assert info["success"] and terminated
    with pytest.raises(LpdsError, match="success_hold"):
        make_env("adroit-pen", success_hold=0)


def test_vector_env_and_env_snapshots_are_exact():
    from lpds_ros.steering import envstate

    envs = make_vector_env("walker2d", 2, seed=5)
    obs, _ = envs.reset(seed=5)
    assert obs.shape == (2, 17) and obs.dtype == np.float32 and not np.array_equal(obs[0], obs[1])
    _, rewards, _, _, infos = envs.step(np.zeros((2, 6), np.float32))
    assert rewards.shape == (2,) and infos["success"].tolist() == [False, False]
    envs.close()
    rng = np.random.default_rng(0)
    for task in ("hopper", "adroit-relocate"):  # relocate randomises its model (object/target placement)
        d = DIMS[task][1]
        env = make_env(task)
        env.reset(seed=2)
        for _ in range(5):
            env.step(rng.uniform(-1, 1, d).astype(np.float32))
        restored = envstate.loads(envstate.dumps([env]), envstate.find_models([make_env(task)]))[0]
        for _ in range(20):
            a = rng.uniform(-1, 1, d).astype(np.float32)
            x, y = env.step(a), restored.step(a)
            assert np.array_equal(x[0], y[0]) and x[1:4] == y[1:4]
        assert np.array_equal(env.reset(seed=9)[0], restored.reset(seed=9)[0])


def test_expert_and_expert_demos_on_a_tiny_budget(tmp_path, capsys):
    from lpds_ros.cli import main
    from lpds_ros.data.hdf5 import load_demos
    from lpds_ros.steering.expert import load_expert

    out = tmp_path / "experts" / "hopper"
    args = ["expert", "--task", "hopper", "--steps", "240", "--learning-starts", "120", "--eval-every", "120",
            "--eval-episodes", "1", "--seed", "3", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    assert "best deterministic return" in capsys.readouterr().out
    meta = json.loads((out / "expert.json").read_text())
    assert meta["task"] == "hopper" and meta["obs_dim"] == 11 and meta["action_dim"] == 3
    curve = json.loads((out / "result.json").read_text())["curve"]
    assert meta["eval_return"] == max(p["return_mean_latent"] for p in curve)
    expert = load_expert(out)
    a = expert.act(np.zeros(11, np.float32))
    assert a.shape == (3,) and np.all(np.abs(a) <= 1)
    assert main(args) == 2 and "--resume" in capsys.readouterr().err  # never overwrites a run by accident

    demos = tmp_path / "hopper.hdf5"
    assert main(["collect", "--task", "hopper", "--expert", str(out), "--noise", "0.3", "--episodes", "2",
                 "--seed", "5", "--out", str(demos)]) == 0
    assert "of the expert's" in capsys.readouterr().out
    ds = load_demos(demos)
    assert len(ds.episodes) == 2 and ds.obs_dim == 11 and ds.action_dim == 3
    assert all(np.abs(e.actions).max() <= 1 for e in ds.episodes)
    assert ds.env_meta["expert"]["path"] == str(out) and ds.env_meta["noise"] == 0.3
    # the same command and seed give the same file contents
    again = tmp_path / "again.hdf5"
    main(["collect", "--task", "hopper", "--expert", str(out), "--noise", "0.3", "--episodes", "2", "--seed", "5",
          "--out", str(again)])
    assert all(np.array_equal(x.actions, y.actions) for x, y in zip(ds.episodes, load_demos(again).episodes))
    # user errors are one line
    assert main(["collect", "--task", "hopper", "--episodes", "1", "--out", str(tmp_path / "x.hdf5")]) == 2
    assert "--expert" in capsys.readouterr().err
    assert main(["collect", "--task", "walker2d", "--expert", str(out), "--episodes", "1",
                 "--out", str(tmp_path / "y.hdf5")]) == 2
    assert "trained on 'hopper'" in capsys.readouterr().err
    assert main(["collect", "--task", "hopper", "--expert", str(tmp_path), "--episodes", "1",
                 "--out", str(tmp_path / "z.hdf5")]) == 2


def test_tiny_bench_on_hopper_writes_the_result_schema(tmp_path):
    from lpds_ros.policies import PolicyConfig, make_policy
    from lpds_ros.steering import bench

    torch.manual_seed(0)
    policy = make_policy(PolicyConfig(obs_dim=11, action_dim=3, hidden_dim=32, num_layers=1, cond_dim=16,
                                      time_embed_dim=8))
    policy.save(tmp_path / "models" / "hopper-diffusion")
    args = argparse.Namespace(tasks="hopper", backbones="diffusion", methods="base,lpds", steps=96, seeds=1,
                              seed_offset=0, jobs=1, results=str(tmp_path / "results"),
                              policy_root=str(tmp_path / "models"), num_envs=4, utd=0.25, learning_starts=48,
                              eval_every=96, eval_episodes=2, checkpoint_every=None, entropy_states=3,
                              entropy_latents=16, device=None, force=False, ray_address=None, no_progress=True)
    assert bench.main(args) == 0
    doc = json.loads((tmp_path / "results" / "hopper-diffusion.json").read_text())
    bench.validate_aggregate(doc)
    assert doc["task"] == "hopper" and doc["delta"] == 0.5 and doc["delta_per_dim"] == pytest.approx(0.5 / 24)
    lpds = doc["methods"]["lpds"]
    assert lpds["final_success_mean"] == 0.0 and lpds["final_return_mean"] > 0  # no success notion; a return
    run = json.loads((tmp_path / "results" / "runs" / "hopper" / "diffusion" / "lpds" / "seed0.json").read_text())
    assert run["action_dim"] == 3 and run["latent_dim"] == 24 and run["updates"] > 0 and run["envs_restored"]
