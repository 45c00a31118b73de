"""Behaviour-cloning a backbone: chunking, the loss going down on a real HDF5 file, the CLI, resume."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lpds_ros.cli import main as lpds
from lpds_ros.config import ConfigError
from lpds_ros.data.hdf5 import DemoWriter, load_demos
from lpds_ros.errors import LpdsError
from lpds_ros.policies import PolicyConfig, load_policy
from lpds_ros.policies.train import (
    TrainConfig,
    lr_at,
    make_chunks,
    pretrain,
    read_overrides,
)

SMALL = dict(hidden_dim=64, num_layers=2, cond_dim=32, time_embed_dim=16, horizon=4, exec_horizon=2)
OBS_LAYOUT = {"robot0_eef_pos": 3, "object": 2}


def synthetic_episodes(n: int, steps: int = 30, seed: int = 0) -> list[SimpleNamespace]:
    """A reach-like task: the action is a smooth function of the observation."""
    rng = np.random.default_rng(seed)
    episodes = []
    for _ in range(n):
        obs = np.cumsum(rng.normal(scale=0.1, size=(steps, 5)), axis=0).astype(np.float32)
        actions = np.tanh(obs[:, :2] - obs[:, 2:4] + 0.05 * rng.normal(size=(steps, 2))).astype(np.float32)
        episodes.append(SimpleNamespace(obs=obs, actions=actions, rewards=np.zeros(steps, np.float32),
                                        dones=np.zeros(steps, bool), success=True))
    return episodes


@pytest.fixture
def demo_file(tmp_path):
    path = tmp_path / "demos.hdf5"
    with DemoWriter(path, OBS_LAYOUT, {"task": "toy-reach"}) as writer:
        for e in synthetic_episodes(12):
            writer.add_episode(e.obs, e.actions, e.rewards, e.dones, e.success)
    return path


def policy_config(backbone: str = "diffusion") -> PolicyConfig:
    return PolicyConfig(obs_dim=5, action_dim=2, backbone=backbone, **SMALL)


def test_chunks_repeat_the_last_action_past_the_end():
    actions = np.arange(6, dtype=np.float32).reshape(3, 2)
    episode = SimpleNamespace(obs=np.zeros((3, 4), np.float32), actions=actions)
    obs, chunks = make_chunks([episode, episode], horizon=4)
    assert obs.shape == (6, 4) and chunks.shape == (6, 4, 2)
    assert chunks[0].tolist() == [[0, 1], [2, 3], [4, 5], [4, 5]]
    assert chunks[2].tolist() == [[4, 5]] * 4
    with pytest.raises(LpdsError, match="demo 0"):
        make_chunks([SimpleNamespace(obs=np.zeros((2, 4)), actions=np.zeros((3, 2)))], horizon=4)


def test_train_config_and_overrides(tmp_path):
    with pytest.raises(ConfigError, match="TrainConfig.batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="TrainConfig.ema_decay"):
        TrainConfig(ema_decay=1.0)
    config = TrainConfig(epochs=10, warmup_steps=5, lr=1.0)
    assert lr_at(0, 100, config) == pytest.approx(0.2) and lr_at(4, 100, config) == pytest.approx(1.0)
    assert lr_at(99, 100, config) < 1e-3
    path = tmp_path / "o.yaml"
    path.write_text("policy: {hidden_dim: 32}\ntrain: {lr: 0.01}\n")
    assert read_overrides(path) == ({"hidden_dim": 32}, {"lr": 0.01})
    for text in ("policy: {obs_dim: 3}\n", "optim: {lr: 1}\n"):
        path.write_text(text)
        with pytest.raises(ConfigError):
            read_overrides(path)


def test_loss_decreases_on_hdf5_demos(demo_file):
    demos = load_demos(demo_file)
    losses = []
    policy = pretrain(demos.episodes, policy_config("flow"), TrainConfig(epochs=12, batch_size=64, warmup_steps=10),
                      progress=False, callback=lambda epoch, info: losses.append(info["loss"]))
    assert len(losses) == 12 and losses[-1] < 0.6 * losses[0], losses
    assert not policy.training and not any(p.requires_grad for p in policy.parameters())
    assert policy.metadata["num_pairs"] == 12 * 30 and policy.metadata["steps"] == 12 * 6


def test_cli_pretrain_writes_a_loadable_policy(demo_file, tmp_path, capsys):
    overrides = tmp_path / "small.yaml"
    overrides.write_text(json.dumps({"policy": SMALL, "train": {"batch_size": 128, "checkpoint_every": 1}}))
    out = tmp_path / "policy"
    argv = ["pretrain", "--task", "toy-reach", "--demos", str(demo_file), "--backbone", "diffusion", "--out", str(out),
            "--config", str(overrides), "--epochs", "2", "--max-demos", "5", "--seed", "3"]
    assert lpds(argv) == 0
    assert "pretrained diffusion on 5 demos" in capsys.readouterr().out
    policy = load_policy(out)
    meta = policy.metadata
    assert (meta["task"], meta["obs_keys"], meta["num_demos"], meta["epochs"]) == ("toy-reach", list(OBS_LAYOUT), 5, 2)
    assert meta["demos_file"] == str(demo_file) and meta["wall_time_s"] >= 0 and meta["seed"] == 3
    assert policy.config.horizon == 4 and policy.num_inference_steps == 5
    with torch.no_grad():
        chunk = policy.decode(torch.zeros(3, 5), torch.zeros(3, 4, 2))
    assert chunk.shape == (3, 4, 2) and torch.isfinite(chunk).all()
    # A second run into the same folder without --resume is refused in one line.
    assert lpds(argv) == 2
    assert "--resume" in capsys.readouterr().err


class Interrupt(Exception):
    pass


def test_resume_continues_exactly(tmp_path):
    episodes = synthetic_episodes(4)
    train = TrainConfig(epochs=4, batch_size=32, warmup_steps=4, checkpoint_every=2)
    straight = pretrain(episodes, policy_config(), train, tmp_path / "a", seed=1, progress=False)

    def stop_after_two(epoch, info):
        if epoch == 3:  # the checkpoint of epoch 2 is the last one written
            raise Interrupt

    with pytest.raises(Interrupt):
        pretrain(episodes, policy_config(), train, tmp_path / "b", seed=1, progress=False, callback=stop_after_two)
    state = json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 2 and not (tmp_path / "b" / "model.safetensors").exists()
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoint").iterdir()) == [
        "epoch-00002.optim.pt", "epoch-00002.safetensors", "state.json"]
    with pytest.raises(LpdsError, match="seed differs"):
        pretrain(episodes, policy_config(), train, tmp_path / "b", seed=2, progress=False, resume=True)
    resumed = pretrain(episodes, policy_config(), train, tmp_path / "b", seed=1, progress=False, resume=True)
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    assert resumed.checkpoint_sha256 == straight.checkpoint_sha256
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["config.json", "model.safetensors"]
    with pytest.raises(LpdsError, match="no checkpoint"):
        pretrain(episodes, policy_config(), train, tmp_path / "b", seed=1, progress=False, resume=True)
