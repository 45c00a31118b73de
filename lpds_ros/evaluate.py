"""Roll out a chunked policy on a task and measure success, return and episode length.

One evaluator for every caller (``lpds evaluate``, ``lpds demo``, the fine-tuning loop's periodic
evaluation): a policy is a function ``act(obs (B, obs_dim), eps (B, H, d)) -> chunk (B, H, d)`` that is
called once per decision; the first ``exec_horizon`` actions of the chunk are executed.  Episode ``i``
resets with seed ``seed + i`` and draws its noise from its own generator, so results do not depend on
how many envs run in parallel.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from lpds_ros.errors import LpdsError

ActFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class EvalResult:
    success_rate: float
    return_mean: float
    return_std: float
    length_mean: float
    length_std: float
    episodes: int
    seed: int
    successes: list[bool]
    returns: list[float]
    lengths: list[int]

    def summary(self) -> dict:
        d = asdict(self)
        for key in ("successes", "returns", "lengths"):
            d.pop(key)
        return d


def evaluate(task: str, act: ActFn, horizon: int, exec_horizon: int, action_dim: int, episodes: int = 50,
             seed: int = 0, num_envs: int = 8, noise_scale: float = 1.0, progress: bool = True,
             env_kwargs: dict | None = None) -> EvalResult:
    """Run ``episodes`` episodes; ``noise_scale=0`` evaluates the mean (ε = 0) policy."""
    from lpds_ros.envs import make_env

    if episodes <= 0:
        raise LpdsError(f"episodes must be positive, got {episodes}")
    if not 1 <= exec_horizon <= horizon:
        raise LpdsError(f"exec_horizon {exec_horizon} must be in [1, horizon={horizon}]")
    envs = [make_env(task, **(env_kwargs or {})) for _ in range(min(num_envs, episodes))]
    successes = [False] * episodes
    returns = [0.0] * episodes
    lengths = [0] * episodes
    rngs: list[np.random.Generator | None] = [None] * len(envs)
    episode_of: list[int | None] = [None] * len(envs)
    obs = [None] * len(envs)
    next_episode = 0
    finished = finished_successes = 0

    def start(slot: int) -> None:
        nonlocal next_episode
        if next_episode >= episodes:
            episode_of[slot] = None
            return
        episode_of[slot] = next_episode
        rngs[slot] = np.random.default_rng([seed, next_episode])
        obs[slot], _ = envs[slot].reset(seed=seed + next_episode)
        next_episode += 1

    for slot in range(len(envs)):
        start(slot)
    bar = tqdm(total=episodes, desc=f"evaluate {task}", unit="ep", disable=not progress)
    while any(e is not None for e in episode_of):
        active = [s for s, e in enumerate(episode_of) if e is not None]
        batch_obs = np.stack([obs[s] for s in active]).astype(np.float32)
        eps = np.stack([rngs[s].standard_normal((horizon, action_dim)) for s in active]).astype(np.float32)
        chunks = np.asarray(act(batch_obs, eps * noise_scale))
        if chunks.shape != (len(active), horizon, action_dim):
            raise LpdsError(f"policy returned chunks of shape {chunks.shape}, expected {(len(active), horizon, action_dim)}")
        for row, slot in enumerate(active):
            ep = episode_of[slot]
            for t in range(exec_horizon):
                obs[slot], reward, terminated, truncated, info = envs[slot].step(chunks[row, t])
                returns[ep] += float(reward)
                lengths[ep] += 1
                successes[ep] = successes[ep] or bool(info.get("success", False))
                if terminated or truncated:
                    finished += 1
                    finished_successes += successes[ep]
                    bar.update(1)
                    bar.set_postfix(success=f"{finished_successes / finished:.0%}")
                    start(slot)
                    break
    bar.close()
    for env in envs:
        env.close()
    return EvalResult(
        success_rate=float(np.mean(successes)), return_mean=float(np.mean(returns)), return_std=float(np.std(returns)),
        length_mean=float(np.mean(lengths)), length_std=float(np.std(lengths)), episodes=episodes, seed=seed,
        successes=successes, returns=returns, lengths=lengths,
    )


def policy_act_fn(policy) -> ActFn:
    """The base policy as an ``act`` function: w = ε, decoded by the frozen decoder."""
    import torch

    def act(obs: np.ndarray, eps: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return policy.decode(torch.from_numpy(obs), torch.from_numpy(eps)).numpy()

    return act


def evaluate_policy_dir(task: str, policy_dir: str | Path, steering: str | None = None, **kwargs) -> EvalResult:
    from lpds_ros.policies import load_policy

    policy = load_policy(policy_dir)
    if steering is not None:
        from lpds_ros.steering import (
            load_steering_act_fn,  # the steered act function for any method
        )

        act = load_steering_act_fn(steering, policy)
    else:
        act = policy_act_fn(policy)
    return evaluate(task, act, policy.horizon, policy.exec_horizon, policy.action_dim, **kwargs)


def _print(result: EvalResult, label: str, as_json: bool) -> None:
    print(f"{label}: success {result.success_rate:.1%} over {result.episodes} episodes (seed {result.seed}); "
          f"return {result.return_mean:.3f} ± {result.return_std:.3f}; length {result.length_mean:.1f} ± {result.length_std:.1f}")
    if as_json:
        print(json.dumps(result.summary()))


def main(args: argparse.Namespace) -> int:
    result = evaluate_policy_dir(args.task, args.policy, steering=args.steering, episodes=args.episodes,
                                 seed=args.seed, num_envs=args.num_envs)
    _print(result, f"{args.task} / {args.policy}", args.json)
    return 0


def shipped_model_dir(task: str, backbone: str) -> Path:
    """Where a shipped base policy lives: models/<task>-<backbone> next to the package (source tree or share/)."""
    root = Path(__file__).resolve().parent.parent
    for candidate in (root / "models", Path.cwd() / "models"):
        if (candidate / f"{task}-{backbone}").is_dir():
            return candidate / f"{task}-{backbone}"
    raise LpdsError(f"no shipped model models/{task}-{backbone}; train one with `lpds pretrain` (see README)")


def demo(args: argparse.Namespace) -> int:
    path = shipped_model_dir(args.task, args.backbone)
    result = evaluate_policy_dir(args.task, path, episodes=args.episodes, seed=args.seed)
    _print(result, f"shipped base policy {path.name}", False)
    return 0
