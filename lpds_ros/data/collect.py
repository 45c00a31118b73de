"""`lpds collect`: roll out a demonstrator in a task and record the episodes as an HDF5 demo file."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from lpds_ros.data.hdf5 import DatasetError, DemoWriter
from lpds_ros.errors import LpdsError


def rollout(env, act: Callable[[np.ndarray], np.ndarray], seed: int) -> dict:
    """One episode with ``act(obs) -> action``; returns the arrays a demo file stores."""
    obs, _ = env.reset(seed=seed)
    observations, actions, rewards, dones = [], [], [], []
    success = False
    while True:
        action = np.asarray(act(obs), dtype=np.float32)
        next_obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
        dones.append(terminated)
        success = success or bool(info.get("success", False))
        obs = next_obs
        if terminated or truncated:
            break
    return dict(obs=np.stack(observations), actions=np.stack(actions), rewards=np.asarray(rewards, np.float32),
                dones=np.asarray(dones, bool), success=success)


def collect(task: str, episodes: int, noise: float, out: str | Path, seed: int = 0,
            successful_only: bool = False, overwrite: bool = False, demonstrator=None) -> dict:
    """Record ``episodes`` episodes (all of them, or only successes with ``successful_only``)."""
    from lpds_ros.envs import make_env

    if episodes <= 0:
        raise LpdsError(f"--episodes must be positive, got {episodes}")
    if noise < 0:
        raise LpdsError(f"--noise must be >= 0, got {noise}")
    env = make_env(task)
    if demonstrator is None:
        from lpds_ros.data.scripted import make_demonstrator

        demonstrator = make_demonstrator(task, noise=noise, seed=seed)
    meta = env.unwrapped.env_meta()
    meta.update(demonstrator=type(demonstrator).__name__, noise=noise, seed=seed)
    kept, attempts, successes = 0, 0, 0
    with DemoWriter(out, env.unwrapped.obs_layout, meta, overwrite=overwrite) as writer, \
            tqdm(total=episodes, desc=f"collect {task}", unit="ep") as bar:
        while kept < episodes:
            if successful_only and attempts >= 10 * episodes:
                raise DatasetError(f"only {kept} successes in {attempts} attempts; lower --noise or drop --successful-only")
            demonstrator.reset()
            ep = rollout(env, demonstrator.act, seed + attempts)
            attempts += 1
            successes += ep["success"]
            if successful_only and not ep["success"]:
                continue
            writer.add_episode(**ep)
            kept += 1
            bar.update(1)
            bar.set_postfix(success=f"{successes / attempts:.0%}")
    env.close()
    return {"task": task, "episodes": kept, "attempts": attempts, "success_rate": successes / attempts, "out": str(out)}


def main(args: argparse.Namespace) -> int:
    stats = collect(args.task, args.episodes, args.noise, args.out, seed=args.seed,
                    successful_only=args.successful_only, overwrite=args.overwrite)
    print(f"wrote {stats['episodes']} episodes to {stats['out']} "
          f"(demonstrator success {stats['success_rate']:.1%} over {stats['attempts']} attempts)")
    return 0
