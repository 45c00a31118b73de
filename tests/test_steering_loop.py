"""The online loop, checkpoints and the bench, on a toy task (and one smoke run on franka-lift)."""
import argparse
import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from lpds_ros import envs as envs_pkg
from lpds_ros import policies as policies_pkg
from lpds_ros.config import ConfigError
from lpds_ros.errors import LpdsError
from lpds_ros.steering import bench, loop
from lpds_ros.steering.config import DSRLConfig, FinetuneConfig, LPDSConfig
from lpds_ros.steering.toy import TOY_TASKS, BimodalDecoder

SMALL = dict(hidden_dims=(32, 32), batch_size=32)


def toy_decoder(sha="toy-a"):
    return BimodalDecoder(obs_dim=2, action_dim=1, horizon=4, exec_horizon=2, sharpness=1.0, checkpoint_sha256=sha)


@pytest.fixture
def toy_tasks(monkeypatch):
    real = envs_pkg.make_env

    def make_env(task, **kwargs):
        return TOY_TASKS[task]() if task in TOY_TASKS else real(task, **kwargs)

    monkeypatch.setattr(envs_pkg, "make_env", make_env)


def toy_config(out, **overrides):
    values = dict(task="toy-reach", policy="unused", method="lpds", out=str(out), env_steps=160, num_envs=4,
                  utd=0.5, learning_starts=48, eval_every=80, eval_episodes=2, eval_envs=2, checkpoint_every=80,
                  entropy_states=3, entropy_latents=16, progress=False)
    return FinetuneConfig(**{**values, **overrides})


@pytest.mark.parametrize("n_step", [1, 3])
def test_resume_after_a_kill_continues_bit_for_bit(tmp_path, toy_tasks, n_step):
    agent_config = LPDSConfig(delta=0.2, n_step=n_step, **SMALL)
    whole = loop.Trainer(toy_config(tmp_path / "whole", env_steps=240), agent_config, decoder=toy_decoder())
    whole_result = whole.run()
    # "Killed" right after the checkpoint at 80 env steps: a run whose budget ends there wrote that checkpoint.
    killed = loop.Trainer(toy_config(tmp_path / "killed", env_steps=80), agent_config, decoder=toy_decoder())
    killed.run()
    resumed = loop.Trainer(toy_config(tmp_path / "killed", env_steps=240), agent_config, decoder=toy_decoder())
    state = loop.read_checkpoint(tmp_path / "killed", "toy-a")
    assert state["loop"]["env_steps"] == 80 and state["envs"]
    # the next update from the checkpoint equals the uninterrupted run's next update
    resumed.load_checkpoint(tmp_path / "killed" / loop.CHECKPOINT_FILE)
    batch = resumed.buffer.sample(32, np.random.default_rng(0), n_step, 4)
    if n_step > 1:  # the loop lays rows out env by env, so most rows extend over their env's next decisions
        rows = np.arange(len(resumed.buffer))
        extended = resumed.buffer.gather(rows, n_step, 4)["discount"] < resumed.buffer.gather(rows)["discount"]
        assert extended.mean() > 0.5
    m1 = resumed.agent.update(batch)
    again = loop.Trainer(toy_config(tmp_path / "killed", env_steps=240), agent_config, decoder=toy_decoder())
    again.load_checkpoint(tmp_path / "killed" / loop.CHECKPOINT_FILE)
    assert again.agent.update(batch) == m1
    # and the whole resumed run ends exactly where the uninterrupted one did
    resumed_result = loop.Trainer(toy_config(tmp_path / "killed", env_steps=240), agent_config,
                                  decoder=toy_decoder()).run(resume=True)
    assert resumed_result["curve"] == whole_result["curve"]
    assert resumed_result["updates"] == whole_result["updates"] > 0
    final_whole = loop.read_checkpoint(tmp_path / "whole", "toy-a")["agent"]["modules"]
    final_resumed = loop.read_checkpoint(tmp_path / "killed", "toy-a")["agent"]["modules"]
    assert all(torch.equal(final_whole[k], final_resumed[k]) for k in final_whole)
    lines = (tmp_path / "killed" / loop.LOG_FILE).read_text().splitlines()
    assert lines == (tmp_path / "whole" / loop.LOG_FILE).read_text().splitlines()


def test_resume_under_other_settings_is_refused(tmp_path, toy_tasks):
    agent_config = LPDSConfig(delta=0.2, **SMALL)
    loop.Trainer(toy_config(tmp_path, env_steps=80), agent_config, decoder=toy_decoder()).run()
    # a longer budget is a continuation ...
    longer = loop.Trainer(toy_config(tmp_path, env_steps=160), agent_config, decoder=toy_decoder())
    longer.load_checkpoint(tmp_path / loop.CHECKPOINT_FILE)
    # ... another UTD or δ is another experiment
    other_utd = loop.Trainer(toy_config(tmp_path, env_steps=160, utd=2.0), agent_config, decoder=toy_decoder())
    with pytest.raises(LpdsError, match="utd 0.5 -> 2.0"):
        other_utd.load_checkpoint(tmp_path / loop.CHECKPOINT_FILE)
    other_delta = loop.Trainer(toy_config(tmp_path, env_steps=160), LPDSConfig(delta=0.5, **SMALL), decoder=toy_decoder())
    with pytest.raises(LpdsError, match="agent config"):
        other_delta.load_checkpoint(tmp_path / loop.CHECKPOINT_FILE)
    # a checkpoint written before a config field existed resumes: the field counts at its default
    state = torch.load(tmp_path / loop.CHECKPOINT_FILE, weights_only=False)
    del state["agent_config"]["learn_scale"], state["finetune_config"]["knn_k"]
    torch.save(state, tmp_path / loop.CHECKPOINT_FILE)
    longer.load_checkpoint(tmp_path / loop.CHECKPOINT_FILE)


def test_checkpoint_on_another_decoder_is_rejected(tmp_path, toy_tasks):
    loop.Trainer(toy_config(tmp_path / "run", env_steps=40, eval_every=40, method="dsrl"), DSRLConfig(**SMALL),
                 decoder=toy_decoder("sha-of-a")).run()
    with pytest.raises(LpdsError, match="trained against decoder sha256 sha-of-a"):
        loop.load_agent(tmp_path / "run", toy_decoder("sha-of-b"))
    assert loop.load_agent(tmp_path / "run", toy_decoder("sha-of-a")).name == "dsrl"
    with pytest.raises(LpdsError, match="trained against decoder"):
        loop.Trainer(toy_config(tmp_path / "run", env_steps=40, method="dsrl"), DSRLConfig(**SMALL),
                     decoder=toy_decoder("sha-of-b")).run(resume=True)


def test_lpds_gauss_runs_in_the_loop_and_the_exporter_refuses_it(tmp_path, toy_tasks):
    from lpds_ros.runtime.export import load_steering

    result = loop.Trainer(toy_config(tmp_path / "run", method="lpds-gauss"), LPDSConfig(delta=0.2, **SMALL),
                          decoder=toy_decoder()).run()
    assert result["updates"] > 0 and result["final"]["deviation"] > 0  # 2 KL, moved off 0 by training
    agent = loop.load_agent(tmp_path / "run", toy_decoder())
    assert agent.config.learn_scale and agent.config.delta == 0.2
    with pytest.raises(LpdsError, match="lpds-gauss .* w = eps \\+ Delta\\(s\\) only"):
        load_steering(tmp_path / "run", toy_decoder())


def test_bench_caches_runs_and_writes_the_result_schema(tmp_path, toy_tasks, monkeypatch):
    (tmp_path / "models" / "toy-reach-diffusion").mkdir(parents=True)
    monkeypatch.setattr(policies_pkg, "load_policy", lambda path, device="cpu": toy_decoder())
    args = argparse.Namespace(tasks="toy-reach", backbones="diffusion", methods="base,lpds", steps=64, seeds=2,
                              seed_offset=0, jobs=1, results=str(tmp_path / "results"),
                              policy_root=str(tmp_path / "models"), num_envs=4, utd=0.25, learning_starts=32,
                              eval_every=32, eval_episodes=2, checkpoint_every=None, entropy_states=3,
                              entropy_latents=16, device=None, force=False, ray_address=None, no_progress=True)
    assert bench.main(args) == 0
    doc = json.loads((tmp_path / "results" / "toy-reach-diffusion.json").read_text())
    bench.validate_aggregate(doc)
    assert doc["task"] == "toy-reach" and doc["env_steps"] == 64 and doc["seeds"] == [0, 1]
    assert doc["delta"] == 0.35 and doc["delta_per_dim"] == pytest.approx(0.35 / 4)
    lpds = doc["methods"]["lpds"]
    assert lpds["curve"]["env_steps"][0] == 0 and len(lpds["curve"]["success_mean"]) == 3
    assert doc["methods"]["base"]["entropy_ratio"] == pytest.approx(1.0)
    assert (tmp_path / "results" / "toy-reach-diffusion.png").stat().st_size > 1000
    assert "| lpds (n=2) |" in (tmp_path / "results" / "toy-reach-diffusion.md").read_text()
    cached = tmp_path / "results" / "runs" / "toy-reach" / "diffusion" / "lpds" / "seed1.json"
    stamp = cached.stat().st_mtime_ns
    assert bench.main(args) == 0 and cached.stat().st_mtime_ns == stamp  # cached: not re-run
    # a bench that leaves a setting at its default does not count runs made with another value of it
    spec = dataclasses.replace(bench.plan(args)[2], options=tuple(kv for kv in bench.plan(args)[2].options if kv[0] != "utd"))
    assert bench.cache_mismatch(spec, None) == "utd 0.25"
    assert bench.cache_mismatch(dataclasses.replace(spec, options=spec.options + (("delta", 0.5),)), None) == "utd 0.25"
    spec = bench.plan(args)[2]
    assert bench.cache_mismatch(dataclasses.replace(spec, options=spec.options + (("delta", 0.5),)), None) == "delta 0.35"
    # the base policy never updates: its runs count at any UTD or warm-up, not at another evaluation protocol
    base_spec = bench.plan(args)[0]
    assert base_spec.method == "base"
    assert bench.cache_mismatch(dataclasses.replace(base_spec, options=spec.options + (("utd", 3.0), ("learning_starts", 8))), None) is None
    assert bench.cache_mismatch(dataclasses.replace(base_spec, options=spec.options + (("eval_episodes", 5),)), None) == "eval_episodes 2"

    # --agent-config: method fields for the bench; a run cached without them does not count for it
    config = tmp_path / "agent.yaml"
    config.write_text("lpds:\n  actor_delay: 3\n")
    args.agent_config, args.methods = str(config), "lpds"
    assert not bench.is_done(bench.plan(args)[0], None)
    args.results, args.seeds = str(tmp_path / "results-delay"), 1
    assert bench.main(args) == 0
    run = json.loads((tmp_path / "results-delay" / "runs" / "toy-reach" / "diffusion" / "lpds" / "seed0.json").read_text())
    assert run["agent_config"]["actor_delay"] == 3 and run["agent_overrides"] == {"actor_delay": 3}
    assert json.loads((tmp_path / "results-delay" / "toy-reach-diffusion.json").read_text())["agent_overrides"] == {"lpds": {"actor_delay": 3}}
    assert all(bench.is_done(spec, None) for spec in bench.plan(args))
    # other values into the same folder: refused before anything runs; --force discards and re-runs
    config.write_text("lpds:\n  actor_delay: 5\n")
    with pytest.raises(LpdsError, match="ran with other settings.*actor_delay"):
        bench.main(args)
    args.force = True
    assert bench.main(args) == 0
    run = json.loads((tmp_path / "results-delay" / "runs" / "toy-reach" / "diffusion" / "lpds" / "seed0.json").read_text())
    assert run["agent_config"]["actor_delay"] == 5
    for text, message in [("dsrl:\n  bound: 2.0\n", "name no method"), ("lpds:\n  actor_dealy: 3\n", "unknown key"),
                          ("lpds:\n  actor_delay: -1\n", "actor_delay"), ("- 1\n", "one section per method"),
                          ("lpds:\n  delta: 1.0\n", "--delta"), ("lpds:\n  lagrange: false\n", "fixed by the method")]:
        config.write_text(text)
        with pytest.raises(ConfigError, match=message):
            bench.plan(args)


def test_finetune_cli_smoke_on_franka_lift(tmp_path):
    """A tiny random diffusion policy on the real franka-lift task, through `lpds finetune`."""
    from lpds_ros.cli import main
    from lpds_ros.policies import PolicyConfig, make_policy

    torch.manual_seed(0)
    policy = make_policy(PolicyConfig(obs_dim=32, action_dim=4, hidden_dim=32, num_layers=1, cond_dim=16,
                                      time_embed_dim=8))
    policy.save(tmp_path / "policy")
    out = tmp_path / "run"
    code = main(["finetune", "--task", "franka-lift", "--policy", str(tmp_path / "policy"), "--method", "lpds",
                 "--steps", "96", "--out", str(out), "--num-envs", "4", "--learning-starts", "48",
                 "--eval-every", "96", "--eval-episodes", "1", "--eval-envs", "1", "--entropy-states", "2",
                 "--entropy-latents", "16", "--utd", "0.25", "--no-progress"])
    assert code == 0
    result = json.loads((out / loop.RESULT_FILE).read_text())
    assert result["env_steps"] >= 96 and result["updates"] > 0 and result["decoder_sha256"] == policy.checkpoint_sha256
    assert [p["env_steps"] for p in result["curve"]][0] == 0 and result["curve"][0]["deviation"] == 0.0
    assert (out / loop.CHECKPOINT_FILE).is_file() and list((out / "tensorboard").iterdir())
    records = [json.loads(line) for line in (out / loop.LOG_FILE).read_text().splitlines()]
    assert {r["type"] for r in records} == {"train", "eval"}
    assert any("dual/alpha" in r for r in records)
    shutil.rmtree(out)


def test_env_snapshot_of_franka_lift_is_small_and_steps_bit_identically():
    from lpds_ros.envs import make_env
    from lpds_ros.steering import envstate

    env = make_env("franka-lift")
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(10):
        env.step(rng.uniform(-1, 1, 4).astype(np.float32))
    blob = envstate.dumps([env])
    assert len(blob) < 100_000  # a plain pickle is tens of MB
    restored = envstate.loads(blob, envstate.find_models([make_env("franka-lift")]))[0]
    for _ in range(30):
        action = rng.uniform(-1, 1, 4).astype(np.float32)
        a, b = env.step(action), restored.step(action)
        assert np.array_equal(a[0], b[0]) and a[1:4] == b[1:4]
