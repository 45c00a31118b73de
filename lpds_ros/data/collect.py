"""`lpds collect`: roll out a demonstrator in a task and record the episodes as an HDF5 demo file.

The demonstrator is the task's scripted one (Franka tasks), or with ``expert`` a SAC expert trained by
``lpds expert`` (gym / Adroit tasks): a = clip(tanh(μ(s)) + noise · N(0, I), −1, 1).  Noising the expert is
how the "medium" demo sets are made (DESIGN §6: about ⅓–½ of the expert's return); the chosen noise and the
resulting returns are recorded in the file's env_meta and printed.
"""
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
            successful_only: bool = False, overwrite: bool = False, demonstrator=None,
            expert: str | Path | None = None) -> dict:
    """Record ``episodes`` episodes (all of them, or only successes with ``successful_only``).

    ``expert``: an ``lpds expert`` folder to roll out (noised by ``noise``) instead of the scripted demonstrator."""
    from lpds_ros.envs import make_env

    if episodes <= 0:
        raise LpdsError(f"--episodes must be positive, got {episodes}")
    if noise < 0:
        raise LpdsError(f"--noise must be >= 0, got {noise}")
    env = make_env(task)
    expert_meta = None
    if demonstrator is None and expert is not None:
        from lpds_ros.steering.expert import ExpertDemonstrator, load_expert

        loaded = load_expert(expert)
        if loaded.meta.get("task") != task or loaded.obs_dim != env.observation_space.shape[0]:
            raise LpdsError(f"{expert}: expert trained on {loaded.meta.get('task')!r} (obs {loaded.obs_dim}), "
                            f"not on {task!r} (obs {env.observation_space.shape[0]})")
        demonstrator = ExpertDemonstrator(loaded, noise=noise, seed=seed)
        expert_meta = {"path": str(expert), "eval_return": loaded.meta.get("eval_return"),
                       "env_steps": loaded.meta.get("env_steps"), "seed": loaded.meta.get("seed")}
    if demonstrator is None:
        from lpds_ros.data.scripted import DEMONSTRATORS, make_demonstrator

        if task not in DEMONSTRATORS:
            raise LpdsError(f"{task} has no scripted demonstrator; pass --expert DIR (train one with "
                            f"`lpds expert --task {task}`)")
        demonstrator = make_demonstrator(task, noise=noise, seed=seed)
    if getattr(demonstrator, "privileged", False):  # plans from the simulator's state (the pen's MPPI)
        demonstrator.attach(env)
    meta = env.unwrapped.env_meta()
    meta.update(demonstrator=type(demonstrator).__name__, noise=noise, seed=seed)
    if expert_meta is not None:
        meta["expert"] = expert_meta
    kept, attempts, successes = 0, 0, 0
    returns: list[float] = []
    with DemoWriter(out, env.unwrapped.obs_layout, meta, overwrite=overwrite) as writer, \
            tqdm(total=episodes, desc=f"collect {task}", unit="ep") as bar:
        while kept < episodes:
            if successful_only and attempts >= 10 * episodes:
                raise DatasetError(f"only {kept} successes in {attempts} attempts; lower --noise or drop --successful-only")
            demonstrator.reset()
            ep = rollout(env, demonstrator.act, seed + attempts)
            attempts += 1
            successes += ep["success"]
            returns.append(float(ep["rewards"].sum()))
            if successful_only and not ep["success"]:
                continue
            writer.add_episode(**ep)
            kept += 1
            bar.update(1)
            bar.set_postfix(success=f"{successes / attempts:.0%}", ret=f"{np.mean(returns):.4g}")
    env.close()
    return {"task": task, "episodes": kept, "attempts": attempts, "success_rate": successes / attempts, "out": str(out),
            "return_mean": float(np.mean(returns)), "return_std": float(np.std(returns)),
            "expert_return": expert_meta["eval_return"] if expert_meta else None}


def main(args: argparse.Namespace) -> int:
    stats = collect(args.task, args.episodes, args.noise, args.out, seed=args.seed,
                    successful_only=args.successful_only, overwrite=args.overwrite,
                    expert=getattr(args, "expert", None))
    line = (f"wrote {stats['episodes']} episodes to {stats['out']} "
            f"(demonstrator success {stats['success_rate']:.1%} over {stats['attempts']} attempts; "
            f"return {stats['return_mean']:.4g} ± {stats['return_std']:.3g}")
    if stats["expert_return"] is not None:
        line += f", {stats['return_mean'] / stats['expert_return']:.0%} of the expert's {stats['expert_return']:.4g}"
    print(line + ")")
    return 0
