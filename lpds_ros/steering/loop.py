"""The online fine-tuning loop (``lpds finetune``): chunked decisions on in-process envs, replay, updates.

One iteration of ``train``:

1. evaluate and checkpoint when their env-step marks are passed (so a resumed run starts with updates);
2. ``floor(updates_due)`` gradient updates, where every chunk transition adds ``utd`` to ``updates_due``;
3. one decision for every training env, decoded in one batch through the frozen decoder, whose first
   H_exec actions each env executes (``ChunkEnvs``); the transitions go to the replay buffer.

Budgets count env steps (each executed action is one), never chunks.  An env whose episode ends in the
middle of a chunk stops there, its transition carries the k <= H_exec steps it executed (reward
Σ_{i<k} γ^i r_i, discount γ^k, ``done`` = termination only) and it is reset with its next episode seed.
Gymnasium's vector envs cannot stop one env in the middle of a chunk (every ``step`` steps all envs,
and NEXT_STEP autoreset would spend the rest of the chunk's actions in the new episode), so the loop
steps the envs itself — sync vector envs step their envs one after another in-process anyway; the
expensive part, decoding, is batched.

A checkpoint (one file, written atomically) holds the steering state, the replay buffer, every RNG, the
loop counters, the learning curve and — when the envs can be pickled — the envs themselves, so a resumed
run continues exactly as if it had not been killed.  It records the decoder's SHA-256; resuming or loading
it on another decoder is an ``LpdsError``.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from lpds_ros.config import config_from_dict, config_to_dict, load_config
from lpds_ros.errors import LpdsError
from lpds_ros.steering import envstate
from lpds_ros.steering.buffer import ReplayBuffer, transition_fields
from lpds_ros.steering.config import FinetuneConfig, LPDSConfig
from lpds_ros.steering.entropy import action_entropy, entropy_ratio
from lpds_ros.steering.registry import get_method, make_agent, method_config
from lpds_ros.utils import atomic_write_bytes, atomic_write_text

CHECKPOINT_FILE = "checkpoint.pt"
RESULT_FILE = "result.json"
LOG_FILE = "log.jsonl"
CHECKPOINT_FORMAT = "lpds_ros.steering"
RESUMABLE_CHANGES = frozenset({"out", "policy", "env_steps", "device", "progress", "torch_threads", "checkpoint_every",
                               "eval_envs"})
"""FinetuneConfig fields a resumed run may change: where it runs and for how long, not what it learns."""


def episode_seed(seed: int, env_index: int, episode: int) -> int:
    """The reset seed of training env ``env_index``'s ``episode``-th episode (independent streams)."""
    return int(np.random.SeedSequence([seed, env_index, episode]).generate_state(1)[0])


class ChunkEnvs:
    """N gymnasium envs stepped one chunk at a time; finished episodes are reset at once.

    ``obs`` [N, obs_dim] is every env's current observation.  ``step(actions [N, H_exec, d])`` executes
    each env's slice until it ends and returns the transition fields and the episodes that finished.
    """

    def __init__(self, envs: list[Any], seed: int, gamma: float) -> None:
        self.envs = envs
        self.seed = seed
        self.gamma = gamma
        self.episodes = [0] * len(envs)
        self.ep_return = np.zeros(len(envs))
        self.ep_length = np.zeros(len(envs), dtype=np.int64)
        self.ep_success = np.zeros(len(envs), dtype=bool)
        self.obs = np.stack([self._reset(i) for i in range(len(envs))])

    def _reset(self, i: int) -> np.ndarray:
        obs, _ = self.envs[i].reset(seed=episode_seed(self.seed, i, self.episodes[i]))
        self.episodes[i] += 1
        self.ep_return[i], self.ep_length[i], self.ep_success[i] = 0.0, 0, False
        return np.asarray(obs, dtype=np.float32)

    def step(self, actions: np.ndarray) -> tuple[dict[str, np.ndarray], list[dict[str, float]], int]:
        """-> (fields obs/reward/next_obs/done/discount [N, ...], finished episodes, env steps taken)."""
        n, exec_horizon = actions.shape[:2]
        obs = self.obs.copy()
        next_obs = np.empty_like(self.obs)
        reward = np.zeros(n, dtype=np.float32)
        discount = np.ones(n, dtype=np.float32)
        done = np.zeros(n, dtype=np.float32)
        finished, steps = [], 0
        for i, env in enumerate(self.envs):
            terminated = truncated = False
            for t in range(exec_horizon):
                o, r, terminated, truncated, info = env.step(actions[i, t])
                steps += 1
                reward[i] += discount[i] * r
                discount[i] *= self.gamma
                self.ep_return[i] += r
                self.ep_length[i] += 1
                self.ep_success[i] |= bool(info.get("success", False))
                if terminated or truncated:
                    break
            next_obs[i] = o
            done[i] = float(terminated)
            if terminated or truncated:
                finished.append({"return": float(self.ep_return[i]), "success": float(self.ep_success[i]),
                                 "length": int(self.ep_length[i])})
                self.obs[i] = self._reset(i)
            else:
                self.obs[i] = o
        return {"obs": obs, "reward": reward, "next_obs": next_obs, "done": done, "discount": discount}, finished, steps


def _make_env(task: str):
    from lpds_ros import envs

    return envs.make_env(task)


def load_decoder(path: str | Path, device: str = "cpu"):
    """The frozen decoder in ``path`` (eval mode, no gradients)."""
    from lpds_ros import policies

    decoder = policies.load_policy(path, device=device)
    decoder.eval()
    decoder.requires_grad_(False)
    return decoder


# ---------------------------------------------------------------------------------------- metrics
@torch.no_grad()
def probe_states(decoder, task: str, count: int, seed: int, stride: int = 3, device: str = "cpu") -> np.ndarray:
    """``count`` states visited by the base policy (w = ε) from fixed reset seeds: every ``stride``-th
    decision of its rollouts.  The same for every method and run seed, so entropies compare."""
    env = _make_env(task)
    gen = torch.Generator().manual_seed(seed)
    states, episode, decisions = [], 0, 0
    obs, _ = env.reset(seed=seed)
    while len(states) < count:
        if decisions % stride == 0:
            states.append(np.asarray(obs, dtype=np.float32))
        decisions += 1
        eps = torch.randn((1, decoder.horizon, decoder.action_dim), generator=gen).to(device)
        chunk = decoder.decode(torch.as_tensor(obs, dtype=torch.float32, device=device)[None], eps)[0].cpu().numpy()
        for t in range(decoder.exec_horizon):
            obs, _, terminated, truncated, _ = env.step(chunk[t])
            if terminated or truncated:
                episode += 1
                obs, _ = env.reset(seed=seed + episode)
                break
    env.close()
    return np.stack(states)


@torch.no_grad()
def sample_chunks(chunk_fn: Callable, states: np.ndarray, latents: int, seed: int, shape: tuple[int, int],
                  device: str = "cpu") -> torch.Tensor:
    """[S, M, H, d]: ``chunk_fn(obs, eps)`` at each state for M fresh standard-normal eps."""
    gen = torch.Generator().manual_seed(seed)
    s = len(states)
    obs = torch.from_numpy(states).repeat_interleave(latents, dim=0).to(device)
    eps = torch.randn((s * latents, *shape), generator=gen).to(device)
    return chunk_fn(obs, eps).reshape(s, latents, *shape)


# ------------------------------------------------------------------------------------------ train
class Trainer:
    """The state of one run; ``run()`` trains to the budget, resuming from ``out/checkpoint.pt`` if asked."""

    def __init__(self, config: FinetuneConfig, agent_config=None, decoder=None) -> None:
        self.config = c = config
        torch.set_num_threads(c.torch_threads)
        self.out = Path(c.out)
        self.device = device = torch.device(c.device)
        self.decoder = decoder if decoder is not None else load_decoder(c.policy, c.device)
        self.decoder_sha256 = getattr(self.decoder, "checkpoint_sha256", None)
        torch.manual_seed(c.seed)
        self.agent = make_agent(c.method, self.decoder, agent_config, seed=c.seed, device=c.device, task=c.task,
                                delta=c.delta)
        self.agent_config = self.agent.config
        a = self.agent
        capacity = c.buffer_size or (c.env_steps // a.exec_horizon + c.num_envs + 1)
        self.buffer = ReplayBuffer(capacity, transition_fields(a.obs_dim, a.exec_horizon, a.action_dim, a.extra_fields))
        self.act_generator = torch.Generator(device=device).manual_seed(c.seed + 7919)
        self.sample_rng = np.random.default_rng([c.seed, 2])
        self.envs = ChunkEnvs([_make_env(c.task) for _ in range(c.num_envs)], c.seed, a.config.gamma)
        self.env_steps = 0
        self.decisions = 0
        self.updates_due = 0.0
        self.next_eval = 0
        self.next_checkpoint = c.checkpoint_every
        self.curve: list[dict[str, float]] = []
        self.recent_episodes: list[dict[str, float]] = []
        self.pending_metrics: dict[str, list[float]] = {}
        self.log_lines = 0
        self.timing = {"env": 0.0, "act": 0.0, "update": 0.0, "eval": 0.0, "checkpoint": 0.0}
        self.envs_restored = True
        self.probe = probe_states(self.decoder, c.task, c.entropy_states, c.eval_seed, device=device)
        shape = (a.horizon, a.action_dim)
        base = sample_chunks(self.decoder.decode, self.probe, c.entropy_latents, c.eval_seed + 1, shape, device)
        self.base_entropy = action_entropy(base, c.knn_k)
        self._writer = None

    # ------------------------------------------------------------------------------- checkpoint
    def checkpoint_bytes(self) -> bytes:
        try:
            envs_blob = envstate.dumps(self.envs)
        except Exception:  # noqa: BLE001 - an env that cannot be pickled restarts its episode on resume
            envs_blob = b""
        state = {
            "format": CHECKPOINT_FORMAT,
            "method": self.config.method,
            "task": self.config.task,
            "decoder_sha256": self.decoder_sha256,
            "finetune_config": config_to_dict(self.config),
            "agent_config": config_to_dict(self.agent_config),
            "agent": self.agent.state(),
            "buffer": self.buffer.to_bytes(),
            "envs": envs_blob,
            "act_generator": self.act_generator.get_state(),
            "sample_rng": self.sample_rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "loop": {"env_steps": self.env_steps, "decisions": self.decisions, "updates_due": self.updates_due,
                     "next_eval": self.next_eval, "next_checkpoint": self.next_checkpoint,
                     "log_lines": self.log_lines, "episodes": self.envs.episodes},
            "curve": self.curve,
            "recent_episodes": self.recent_episodes,
            "pending_metrics": self.pending_metrics,
            "timing": self.timing,
        }
        out = io.BytesIO()
        torch.save(state, out)
        return out.getvalue()

    def save_checkpoint(self) -> None:
        start = time.perf_counter()
        atomic_write_bytes(self.out / CHECKPOINT_FILE, self.checkpoint_bytes())
        self.timing["checkpoint"] += time.perf_counter() - start

    def load_checkpoint(self, path: Path) -> None:
        state = read_checkpoint(path, self.decoder_sha256)
        if state["method"] != self.config.method or state["task"] != self.config.task:
            raise LpdsError(f"{path}: checkpoint of {state['method']} on {state['task']}, this run is "
                            f"{self.config.method} on {self.config.task}")
        # Resuming under other settings would splice two experiments into one curve.
        saved, now = _saved_config(FinetuneConfig, state["finetune_config"], path), config_to_dict(self.config)
        changed = sorted(k for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k])
        if changed or _saved_config(type(self.agent_config), state["agent_config"], path) != config_to_dict(self.agent_config):
            what = ", ".join(f"{k} {saved.get(k)!r} -> {now[k]!r}" for k in changed) or "the agent config"
            raise LpdsError(f"{path}: the checkpoint was trained with other settings ({what}); "
                            "use another --out or delete the checkpoint")
        self.agent.load_state(state["agent"])
        self.buffer.load(io.BytesIO(state["buffer"]))
        self.act_generator.set_state(state["act_generator"])
        self.sample_rng.bit_generator.state = state["sample_rng"]
        torch.set_rng_state(state["torch_rng"])
        loop = state["loop"]
        self.env_steps, self.decisions = loop["env_steps"], loop["decisions"]
        self.updates_due, self.log_lines = loop["updates_due"], loop["log_lines"]
        self.next_eval, self.next_checkpoint = loop["next_eval"], loop["next_checkpoint"]
        self.curve, self.recent_episodes = state["curve"], state["recent_episodes"]
        self.pending_metrics, self.timing = state["pending_metrics"], state["timing"]
        if state["envs"]:  # the fresh envs lend their MuJoCo models to the snapshot's
            self.envs = envstate.loads(state["envs"], envstate.find_models(self.envs.envs))
        else:  # envs that cannot be pickled: in-flight episodes restart from their next seeds
            self.envs.episodes = list(loop["episodes"])
            self.envs.obs = np.stack([self.envs._reset(i) for i in range(len(self.envs.envs))])
            self.envs_restored = False
        # Drop log lines written after this checkpoint (the run was killed after it).
        log = self.out / LOG_FILE
        if log.exists():
            lines = log.read_text().splitlines(keepends=True)[: self.log_lines]
            atomic_write_text(log, "".join(lines))

    # ---------------------------------------------------------------------------------- logging
    def log(self, record: dict[str, Any]) -> None:
        record = {"env_steps": self.env_steps, **record}
        with open(self.out / LOG_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.log_lines += 1
        if self._writer is not None:
            prefix = record.get("type", "train")
            for key, value in record.items():
                if key not in ("type", "env_steps") and isinstance(value, (int, float)) and math.isfinite(value):
                    self._writer.add_scalar(f"{prefix}/{key}", value, self.env_steps)

    def flush_train_log(self) -> None:
        if not self.pending_metrics and not self.recent_episodes:
            return
        record: dict[str, Any] = {"type": "train", "updates": self.agent.num_updates}
        record |= {k: float(np.mean(v)) for k, v in self.pending_metrics.items()}
        if self.recent_episodes:
            record["episode/return"] = float(np.mean([e["return"] for e in self.recent_episodes]))
            record["episode/success"] = float(np.mean([e["success"] for e in self.recent_episodes]))
            record["episode/length"] = float(np.mean([e["length"] for e in self.recent_episodes]))
            record["episode/count"] = len(self.recent_episodes)
        self.log(record)
        self.pending_metrics, self.recent_episodes = {}, []

    # ------------------------------------------------------------------------------------- eval
    def evaluate(self) -> dict[str, float]:
        from lpds_ros.evaluate import evaluate

        c, a = self.config, self.agent
        start = time.perf_counter()

        def act(obs: np.ndarray, eps: np.ndarray) -> np.ndarray:
            return a.policy_chunk(torch.from_numpy(obs).to(self.device), torch.from_numpy(eps).to(self.device)).cpu().numpy()

        common = dict(horizon=a.horizon, exec_horizon=a.exec_horizon, action_dim=a.action_dim,
                      episodes=c.eval_episodes, seed=c.eval_seed + 1000 * c.seed, num_envs=c.eval_envs, progress=False)
        stochastic = evaluate(c.task, act, **common)
        mean = evaluate(c.task, act, noise_scale=0.0, **common)
        chunks = sample_chunks(a.policy_chunk, self.probe, c.entropy_latents, c.eval_seed + 1, (a.horizon, a.action_dim),
                               self.device)
        ent = action_entropy(chunks, c.knn_k)
        probe_obs = torch.from_numpy(self.probe).to(self.device)
        point = {
            "env_steps": self.env_steps,
            "success": stochastic.success_rate, "return": stochastic.return_mean,
            "length": stochastic.length_mean,
            "success_mean_latent": mean.success_rate, "return_mean_latent": mean.return_mean,
            "deviation": a.deviation(self._replay_states()) if len(self.buffer) else a.deviation(probe_obs),
            "deviation_probe": a.deviation(probe_obs),
            "alpha": float(a.alpha) if hasattr(a, "alpha") else None,
            "temperature": a.log_temperature.exp().item() if hasattr(a, "log_temperature") else None,
            "entropy": ent["first"], "entropy_chunk": ent["chunk"],
            "entropy_base": self.base_entropy["first"], "entropy_chunk_base": self.base_entropy["chunk"],
            "entropy_ratio": entropy_ratio(ent["first"], self.base_entropy["first"], a.action_dim),
            "entropy_ratio_chunk": entropy_ratio(ent["chunk"], self.base_entropy["chunk"], a.action_dim * a.horizon),
            "updates": a.num_updates,
        }
        self.curve.append(point)
        self.timing["eval"] += time.perf_counter() - start
        self.log({"type": "eval", **{k: v for k, v in point.items() if k != "env_steps"}})
        return point

    def _replay_states(self, count: int = 2048) -> torch.Tensor:
        """Up to ``count`` replayed states (a fixed draw per evaluation): where E‖Δ(s)‖² ≤ δ is enforced."""
        rng = np.random.default_rng([self.config.seed, 3, len(self.curve)])
        idx = rng.integers(0, len(self.buffer), size=min(count, len(self.buffer)))
        return torch.from_numpy(self.buffer.data["obs"][idx]).to(self.device)

    # -------------------------------------------------------------------------------------- run
    def run(self, resume: bool = False) -> dict[str, Any]:
        c, a = self.config, self.agent
        self.out.mkdir(parents=True, exist_ok=True)
        ckpt = self.out / CHECKPOINT_FILE
        if resume and ckpt.exists():
            self.load_checkpoint(ckpt)
        elif (self.out / LOG_FILE).exists():
            (self.out / LOG_FILE).unlink()
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(self.out / "tensorboard"), purge_step=self.env_steps)
        from tqdm import tqdm

        bar = tqdm(total=c.env_steps, initial=min(self.env_steps, c.env_steps), unit="step",
                   desc=f"{c.method} {c.task} s{c.seed}", disable=not c.progress)
        wall = time.perf_counter()
        start_steps = self.env_steps
        try:
            while True:
                # 1. evaluation and checkpoint at their marks (so a resumed run begins with updates)
                evaluated = bool(self.curve) and self.curve[-1]["env_steps"] == self.env_steps  # e.g. resumed at the end
                if (self.env_steps >= self.next_eval or self.env_steps >= c.env_steps) and not evaluated:
                    self.flush_train_log()
                    point = self.evaluate()
                    self.next_eval = (self.env_steps // c.eval_every + 1) * c.eval_every
                    bar.set_postfix(success=f"{point['success']:.0%}", dev=f"{point['deviation']:.3g}")
                if self.env_steps >= self.next_checkpoint or self.env_steps >= c.env_steps:
                    self.save_checkpoint()
                    self.next_checkpoint = (self.env_steps // c.checkpoint_every + 1) * c.checkpoint_every
                if self.env_steps >= c.env_steps:
                    break
                # 2. updates: utd per chunk transition collected since learning_starts
                start = time.perf_counter()
                while a.learns and self.updates_due >= 1.0:
                    batch = self.buffer.sample(a.config.batch_size, self.sample_rng, a.config.n_step, c.num_envs)
                    metrics = a.update({k: v.to(self.device, non_blocking=True) for k, v in batch.items()})
                    for key, value in metrics.items():
                        self.pending_metrics.setdefault(key, []).append(value)
                    self.updates_due -= 1.0
                self.timing["update"] += time.perf_counter() - start
                # 3. one decision per env, decoded in one batch; each env executes its H_exec slice
                fields, finished, steps, transitions = self.collect()
                self.buffer.add(fields)
                self.recent_episodes += finished
                self.env_steps += steps
                self.decisions += 1
                if self.env_steps >= c.learning_starts:
                    self.updates_due += c.utd * transitions
                if self.decisions % 50 == 0:
                    self.flush_train_log()
                bar.update(min(steps, c.env_steps - bar.n))
        finally:
            bar.close()
            self._writer.close()
        elapsed = time.perf_counter() - wall
        result = self.result(elapsed, self.env_steps - start_steps)
        atomic_write_text(self.out / RESULT_FILE, json.dumps(result, indent=2) + "\n")
        return result

    def collect(self) -> tuple[dict[str, np.ndarray], list[dict[str, float]], int, int]:
        """One decision per training env, decoded in one batch; each env executes its H_exec slice.

        -> (replay fields [N, ...], finished episodes, env steps taken, N transitions).  The hook
        ``lpds finetune --via-ros`` replaces (``lpds_ros.steering.ros_learner``): its transitions come from
        the ROS graph's policy node instead.
        """
        c, a = self.config, self.agent
        start = time.perf_counter()
        warmup = self.env_steps < c.learning_starts
        chunk, extras = a.act(torch.from_numpy(self.envs.obs).to(self.device), self.act_generator, warmup=warmup)
        executed = chunk[:, : a.exec_horizon].cpu()
        self.timing["act"] += time.perf_counter() - start
        start = time.perf_counter()
        fields, finished, steps = self.envs.step(executed.numpy())
        self.timing["env"] += time.perf_counter() - start
        fields["action"] = executed.numpy()
        fields |= {k: v.cpu().numpy() for k, v in extras.items()}
        return fields, finished, steps, len(executed)

    def result(self, elapsed: float, steps_this_session: int) -> dict[str, Any]:
        c, a = self.config, self.agent
        final = self.curve[-1]
        delta = a.config.delta if isinstance(a.config, LPDSConfig) else None
        return {
            "task": c.task, "method": c.method, "seed": c.seed, "policy": c.policy,
            "decoder_sha256": self.decoder_sha256,
            "env_steps": self.env_steps, "budget": c.env_steps,
            "delta": delta, "delta_per_dim": delta / a.latent_dim if delta is not None else None,
            "latent_dim": a.latent_dim, "action_dim": a.action_dim, "horizon": a.horizon, "exec_horizon": a.exec_horizon,
            "final": final, "curve": self.curve,
            "updates": a.num_updates, "envs_restored": self.envs_restored,
            "timing": {**self.timing, "wall_this_session": elapsed,
                       "env_steps_per_s_this_session": steps_this_session / elapsed if elapsed > 0 else None},
            "finetune_config": config_to_dict(c), "agent_config": config_to_dict(self.agent_config),
            "machine": machine_description(self.device),
        }


def machine_description(device: torch.device) -> str:
    """Where a run was measured, e.g. "x86_64, 16 CPUs, torch cuda (NVIDIA H200)"."""
    import os
    import platform

    text = f"{platform.machine()}, {os.cpu_count()} CPUs, torch {device.type}"
    if device.type == "cuda":
        text += f" ({torch.cuda.get_device_name(device)})"
    return text


def _saved_config(cls: type, values: dict[str, Any], path: Path) -> dict[str, Any]:
    """A config dict from a checkpoint as this version writes it: a field added since the checkpoint was
    written takes its default (what that run used).  Unchanged if it no longer loads (a field since removed)."""
    try:
        return config_to_dict(config_from_dict(cls, values, source=str(path)))
    except LpdsError:
        return values


def read_checkpoint(path: str | Path, decoder_sha256: str | None) -> dict[str, Any]:
    """Load a steering checkpoint, refusing one trained against another decoder."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise LpdsError(f"{path}: no steering checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error here
        raise LpdsError(f"{path}: not a readable steering checkpoint ({exc.__class__.__name__})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise LpdsError(f"{path}: not a steering checkpoint")
    if state["decoder_sha256"] != decoder_sha256:
        raise LpdsError(f"{path}: trained against decoder sha256 {state['decoder_sha256']}, but this decoder is "
                        f"{decoder_sha256}; steering only applies to the decoder it was trained with")
    return state


def load_agent(path: str | Path, decoder, device: str = "cpu"):
    """The trained steering agent of a checkpoint (or run folder), on its own decoder."""
    state = read_checkpoint(path, getattr(decoder, "checkpoint_sha256", None))
    method = get_method(state["method"])
    config = config_from_dict(method.config_class, state["agent_config"], source=str(path))
    agent = make_agent(state["method"], decoder, config, device=device)
    agent.load_state(state["agent"])
    agent.eval().requires_grad_(False)
    agent.decoder_checkpoint_sha256 = state["decoder_sha256"]
    return agent


load_steering = load_agent
"""The name the runtime's exporter looks for: (checkpoint, decoder) -> trained agent (LP-DS has ``shift``)."""


def load_steering_act_fn(path: str | Path, decoder, device: str = "cpu") -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``act(obs [B, obs_dim], eps [B, H, d]) -> chunk`` of a trained steering checkpoint (for the evaluator)."""
    agent = load_agent(path, decoder, device)

    def act(obs: np.ndarray, eps: np.ndarray) -> np.ndarray:
        return agent.policy_chunk(torch.from_numpy(obs).to(agent.device), torch.from_numpy(eps).to(agent.device)).cpu().numpy()

    return act


def train(config: FinetuneConfig, agent_config=None, resume: bool = False, decoder=None) -> dict[str, Any]:
    """Run one fine-tuning run to its budget; returns (and writes) its result."""
    return Trainer(config, agent_config, decoder).run(resume=resume)


# -------------------------------------------------------------------------------------------- CLI
def finetune_config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(FinetuneConfig)
              if getattr(args, f.name, None) is not None}
    values["env_steps"] = args.steps
    values["progress"] = not args.no_progress
    return config_from_dict(FinetuneConfig, values, source="lpds finetune")


def main(args: argparse.Namespace) -> int:
    if getattr(args, "via_ros", False):  # the same run with its transitions gathered through the ROS sim graph
        from lpds_ros.steering import ros_learner

        return ros_learner.main(args)
    if args.policy is None:
        from lpds_ros.evaluate import shipped_model_dir

        args.policy = str(shipped_model_dir(args.task, args.backbone))
    if args.out is None:
        args.out = f"runs/{args.task}-{args.backbone}/{args.method}/seed{args.seed}"
    config = finetune_config_from_args(args)
    agent_config = None
    if args.agent_config:
        agent_config = load_config(args.agent_config, get_method(config.method).config_class)
    agent_config = method_config(config.method, agent_config, config.task, config.delta)
    result = train(config, agent_config, resume=args.resume)
    final = result["final"]
    print(f"{config.method} on {config.task} (seed {config.seed}), {result['env_steps']} env steps: "
          f"success {final['success']:.1%}, return {final['return']:.3f}, mean-latent success "
          f"{final['success_mean_latent']:.1%}, deviation {final['deviation']:.4g}, entropy ratio "
          f"{final['entropy_ratio']:.3f}; {result['timing']['env_steps_per_s_this_session'] or 0:.0f} env steps/s; "
          f"wrote {Path(config.out) / RESULT_FILE}")
    return 0
