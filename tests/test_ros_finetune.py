"""Sim-in-the-loop fine-tuning (`lpds finetune --via-ros`): transitions from the policy node, steering hot swap.

The ROS tests: a timeout each, their own ROS_DOMAIN_ID (a block no other test run holds), localhost-only
discovery, and assertions on sim time and message order, never on wall-clock gaps.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lpds_ros.errors import LpdsError
from lpds_ros.runtime.transitions import (
    TransitionRecorder,
    decode,
    encode,
    transition_layout,
)

REPO = Path(__file__).resolve().parent.parent
OBS, H, E, D = 32, 8, 4, 4
DT = 0.05


# ------------------------------------------------------------------------------------------------ the cores
def _decide(rec: TransitionRecorder, t: float, version: int = -1) -> list:
    obs = np.full(OBS, t)
    return rec.decision(t, obs, np.zeros((H, D)), np.ones((H, D)), np.full((H, D), t), version)


def _report(rec, t, step, reward=0.0, terminated=False, truncated=False):
    return rec.report(t, step, reward, terminated, terminated, truncated)


def test_recorder_joins_decisions_reports_and_observations_in_any_order():
    rec = TransitionRecorder(E)
    rec.start_episode(11)
    assert _decide(rec, 1.0, version=3) == []
    out = [*(_report(rec, round(1.0 + DT * i, 2), i) for i in (1, 2, 3))]
    assert not any(out)
    # the next decision's observation comes before the last step report: the transition waits for it
    assert _decide(rec, 1.2) == []
    (t,) = _report(rec, 1.2, 4, reward=0.5)
    assert t["steps"] == E and t["stamp"] == 1.0 and t["next_obs"][0] == 1.2 and t["steering_version"] == 3
    assert t["rewards"].tolist() == [0, 0, 0, 0.5] and not t["terminated"] and t["episode_seed"] == 11
    assert t["action"].shape == (E, D) and np.all(t["action"] == 1.0)
    # the episode ends mid-chunk on success; the final state (not a decision) closes the transition
    _report(rec, 1.25, 5)
    _report(rec, 1.3, 6, reward=1.0, terminated=True)
    (t,) = rec.observation(1.3, np.full(OBS, 9.0))
    assert t["steps"] == 2 and t["terminated"] and t["success"] and t["rewards"].tolist() == [0, 1, 0, 0]
    assert np.all(t["next_obs"] == 9.0)
    # a truncation whose final state arrives before its report
    rec.start_episode(12)
    _decide(rec, 2.0, version=4)
    rec.observation(2.05, np.full(OBS, 5.0))
    (t,) = _report(rec, 2.05, 1, truncated=True)
    assert t["steps"] == 1 and t["truncated"] and not t["terminated"] and np.all(t["next_obs"] == 5.0)
    assert rec.emitted == 3 and rec.dropped == {}


def test_recorder_drops_what_is_not_a_whole_transition():
    rec = TransitionRecorder(E)
    rec.start_episode(1)
    _decide(rec, 1.0)
    for i in (1, 2):
        _report(rec, round(1.0 + DT * i, 2), i)
    rec.start_episode(2)  # reset in the middle of a chunk
    _decide(rec, 5.0)
    for i in (1, 2, 3):  # a held step: 3 reports, then the next decision one step late
        _report(rec, round(5.0 + DT * i, 2), i)
    _report(rec, 5.25, 5)
    assert _decide(rec, 5.25) == []
    assert rec.emitted == 0 and sum(rec.dropped.values()) == 2, rec.dropped


def test_transition_wire_layout_round_trips_and_checks_its_fields():
    layout = transition_layout(OBS, H, E, D)
    rng = np.random.default_rng(0)
    t = {name: rng.normal(size=size) for name, size in layout}
    t.update(steps=3, terminated=True, truncated=False, success=True, stamp=12.35, episode_seed=2**31 + 5, steering_version=-1)
    table, data = encode(t, layout)
    back = decode(table, data, layout)
    assert back["steps"] == 3 and back["terminated"] and back["episode_seed"] == 2**31 + 5 and back["steering_version"] == -1
    assert np.array_equal(back["latent"], t["latent"]) and back["stamp"] == 12.35
    with pytest.raises(LpdsError, match="fields"):
        decode(table, data, transition_layout(OBS + 1, H, E, D))


class _ConstantShift:
    """A steering network with Delta(s) = bias for every s (what a hot swap must make visible)."""

    def __new__(cls, bias: float):
        import torch
        from torch import nn

        class Shift(nn.Module):
            obs_dim, horizon, action_dim, num_updates, device = OBS, H, D, 7, torch.device("cpu")

            def __init__(self):
                super().__init__()
                self.linear = nn.Linear(OBS, H * D)
                nn.init.zeros_(self.linear.weight)
                nn.init.constant_(self.linear.bias, bias)

            def shift(self, obs):
                return self.linear(obs)

        return Shift()


def test_steering_slot_swaps_only_weights_for_its_decoder():
    from lpds_ros.runtime.hotswap import SteeringSlot
    from lpds_ros.steering.ros_learner import steering_onnx_bytes

    slot = SteeringSlot(OBS, H, D, "a" * 64)
    assert np.all(slot.shift(np.zeros(OBS)) == 0)  # nothing loaded: Delta = 0
    with pytest.raises(LpdsError, match="decoder"):
        slot.load(steering_onnx_bytes(_ConstantShift(0.5), "b" * 64, version=1))
    assert slot.current is None and slot.rejected == 1
    steering = slot.load(steering_onnx_bytes(_ConstantShift(0.5), "a" * 64, version=2))
    assert steering.version == 2 and steering.updates == 7 and slot.swaps == 1
    assert np.allclose(slot.shift(np.ones(OBS)), 0.5)
    with pytest.raises(LpdsError, match="not newer"):
        slot.load(steering_onnx_bytes(_ConstantShift(1.0), "a" * 64, version=2))
    with pytest.raises(LpdsError, match="not a valid ONNX"):
        slot.load(b"not onnx")
    assert slot.current.version == 2  # a rejected swap leaves the running weights alone


def test_via_ros_refuses_methods_without_a_latent_shift(tmp_path, capsys):
    from lpds_ros import cli

    rc = cli.main(["finetune", "--via-ros", "--task", "franka-lift", "--method", "dsrl", "--out", str(tmp_path / "x"),
                   "--no-progress"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and err[-1].startswith("lpds finetune: error: --via-ros runs lpds")


# ------------------------------------------------------------------------------------------------ over ROS
@pytest.fixture(scope="module")
def domain_base():
    pytest.importorskip("rclpy")
    from ros_domains import claim_domains

    return claim_domains()


@pytest.fixture
def ros_env(domain_base, monkeypatch, request, tmp_path):
    offset = 0 if request.node.name.startswith("test_hot_swap") else 1
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain_base + offset))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("LPDS_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    """A small random diffusion decoder saved as a policy folder (so it has a checkpoint SHA-256) and exported."""
    import torch

    from lpds_ros.policies import PolicyConfig, make_policy
    from lpds_ros.runtime.export import export_policy

    torch.manual_seed(0)
    policy = make_policy(PolicyConfig(obs_dim=OBS, action_dim=D, hidden_dim=32, num_layers=1, cond_dim=16,
                                      time_embed_dim=8, horizon=H, exec_horizon=E))
    policy.eval().requires_grad_(False)
    folder = policy.save(tmp_path_factory.mktemp("tiny-policy"), metadata={"task": "franka-lift"})
    export = tmp_path_factory.mktemp("tiny-export")
    export_policy(policy, export)
    return folder, export, policy.checkpoint_sha256


@pytest.mark.ros
@pytest.mark.timeout(300)
def test_hot_swap_changes_the_policy_output_while_it_keeps_publishing(ros_env, tiny_policy):
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray, String, UInt8MultiArray

    from lpds_ros.nodes import convert
    from lpds_ros.nodes.graph import SimGraph, load_graph_params
    from lpds_ros.steering.ros_learner import steering_onnx_bytes

    _, export, sha = tiny_policy
    params = load_graph_params(REPO / "config" / "sim_graph.yaml")
    params["policy_node"].update(backend="onnx", model_dir=str(export), mode="base", lead_steps=0,
                                 hot_swap=True, collect_transitions=True)
    params["sim_node"]["lockstep_timeout_s"] = 20.0
    layout = transition_layout(OBS, H, E, D)
    with SimGraph(params) as graph:
        probe = rclpy.create_node("swap_probe", context=graph.context)
        graph.nodes["swap_probe"] = probe
        actions, status, transitions = [], [], []
        probe.create_subscription(JointState, "/lpds/action_raw",
                                  lambda m: actions.append((convert.to_sec(m.header.stamp), np.array(m.position))), 200)
        probe.create_subscription(String, "/lpds/steering/status", lambda m: status.append(json.loads(m.data)), 10)
        probe.create_subscription(Float64MultiArray, "/lpds/transition",
                                  lambda m: transitions.append(convert.transition_from_msg(m, layout)), 200)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        weights = probe.create_publisher(UInt8MultiArray, "/lpds/steering/weights", latched)
        graph.executor.add_node(probe)
        deadline = time.monotonic() + 20
        while weights.get_subscription_count() < 1 or probe.count_publishers("/lpds/transition") < 1:
            assert time.monotonic() < deadline, "policy node not connected"
            time.sleep(0.05)
        time.sleep(0.5)

        def swap_mid_episode():  # a wrong-decoder swap at step 10 (rejected), a good one at step 20
            for at, data in ((10, steering_onnx_bytes(_ConstantShift(1.5), "f" * 64, 1)),
                             (20, steering_onnx_bytes(_ConstantShift(1.5), sha, 1))):
                while len(actions) < at:
                    time.sleep(0.001)
                weights.publish(convert.weights_msg(data))
                end = time.monotonic() + 20
                while len(status) < (1 if at == 10 else 2) and time.monotonic() < end:
                    time.sleep(0.002)

        swapper = threading.Thread(target=swap_mid_episode, daemon=True)
        swapper.start()
        episode = graph.run_episode(seed=7, timeout_s=60)
        swapper.join(timeout=30)
        time.sleep(0.3)  # the episode's last transition
        sim = graph.nodes["sim_node"]

    assert [s["event"] for s in status] == ["rejected", "swapped"], status
    assert "decoder" in status[0]["reason"] and status[1]["version"] == 1
    swap_stamp = status[1]["stamp"]
    stamps = np.array([s for s, _ in actions])
    # it kept publishing: one action per control period of sim time, in order, from the first step to the last
    # (plus at most one for the final observation, published before the episode's end reached the node and
    # never executed: a race seen once in a fresh-clone CI run)
    n = episode["steps"]
    assert len(actions) in (n, n + 1) and np.allclose(np.diff(stamps), DT, atol=1e-6), np.diff(stamps)
    actions, stamps = actions[:n], stamps[:n]
    assert sim.lockstep_timeouts == 0  # every step got its command: no control tick was missed
    assert 20 <= np.sum(stamps <= swap_stamp + 1e-9) < len(actions)  # swapped in the middle of the episode
    # Each decision says which weights made it.  Before the swap the output is the base policy's,
    # Phi(s, eps); after it, Phi(s, eps + Delta_new(s)) with Delta_new = 1.5: a different output.
    from lpds_ros.runtime import OnnxPolicy

    decoder = OnnxPolicy(export, mode="base", providers="cpu")
    published = {round(s, 6): a[8:] for s, a in actions}
    versions = [t["steering_version"] for t in transitions]
    assert len(transitions) == int(np.ceil(episode["steps"] / E)) and versions == sorted(versions)
    assert versions[0] == -1 and versions[-1] == 1
    for t in transitions:
        obs, eps, latent = (np.float32(t[k]) for k in ("obs", "eps", "latent"))
        eps, latent = eps.reshape(H, D), latent.reshape(H, D)
        action = t["action"].reshape(E, D)
        assert np.allclose(decoder.decode(obs, latent)[:E], action, atol=1e-5)  # the node decoded what it reports
        for i in range(t["steps"]):  # and executed it: action_raw carries the same raw actions
            assert np.allclose(published[round(t["stamp"] + DT * i, 6)], action[i], atol=1e-6)
        if t["steering_version"] == -1:
            assert t["stamp"] <= swap_stamp + 1e-9 and np.allclose(latent, eps)
        else:
            assert t["stamp"] > swap_stamp - 1e-9 and np.allclose(latent - eps, 1.5, atol=1e-5)
            assert np.abs(decoder.decode(obs, eps)[:E] - action).max() > 1e-3  # not the base policy's output


@pytest.mark.ros
@pytest.mark.timeout(420)
def test_finetune_via_ros_end_to_end(ros_env, tiny_policy, tmp_path):
    import io

    from lpds_ros import cli
    from lpds_ros.steering.buffer import transition_fields
    from lpds_ros.steering.loop import load_decoder, read_checkpoint

    folder, _, sha = tiny_policy
    out = tmp_path / "run"
    rc = cli.main(["finetune", "--via-ros", "--graph", "inline", "--task", "franka-lift", "--policy", str(folder),
                   "--steps", "240", "--learning-starts", "80", "--eval-every", "240", "--eval-episodes", "1",
                   "--eval-envs", "1", "--entropy-states", "2", "--entropy-latents", "8", "--swap-every", "40",
                   "--no-progress", "--out", str(out)])
    assert rc == 0
    result = json.loads((out / "result.json").read_text())
    ros = result["via_ros"]
    assert result["env_steps"] >= 240 and result["updates"] >= 1
    assert ros["weights_sent"] >= 1 and ros["swaps_acknowledged"] >= 1 and ros["swaps_rejected"] == 0
    assert ros["transitions"] >= 240 // E and ros["bad_messages"] == 0 and ros["steered_transitions"] >= 1
    assert [p["env_steps"] for p in result["curve"]][0] == 0 and result["curve"][-1]["env_steps"] >= 240
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert {r["type"] for r in log} >= {"eval", "train"}
    # the replay rows came from the graph with the gymnasium loop's shapes; the checkpoint is tied to the decoder
    state = read_checkpoint(out / "checkpoint.pt", sha)
    with np.load(io.BytesIO(state["buffer"])) as npz:
        n = int(npz["size"])
        data = {key.split("/", 1)[1]: npz[key] for key in npz.files if key.startswith("data/")}
    assert n == ros["transitions"]
    assert set(data) == set(transition_fields(OBS, E, D, {"latent": (H, D), "prior_latent": (H, D), "prior_action": (E, D)}))
    assert data["obs"].shape[1:] == (OBS,) and data["action"].shape[1:] == (E, D) and data["latent"].shape[1:] == (H, D)
    assert np.all(np.isfinite(data["next_obs"][:n])) and not np.array_equal(data["obs"][:n], data["next_obs"][:n])
    allowed = np.float32([0.99 ** k for k in range(1, E + 1)])  # gamma^k, k the steps the chunk executed
    assert np.all(np.isclose(data["discount"][:n, None], allowed[None], atol=1e-6).any(axis=1))
    with pytest.raises(LpdsError, match="decoder"):
        read_checkpoint(out / "checkpoint.pt", "0" * 64)
    assert load_decoder(folder).checkpoint_sha256 == sha
