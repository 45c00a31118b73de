"""Control steps per second and reset time of the Franka tasks, one process on one core.

    python benchmarks/env_speed.py [--steps 4000] [--resets 200] [--out results/env_speed.json]

Each task is stepped with a fixed sequence of uniform random actions in [-1, 1]^4 (the arm sweeps the
workspace, pushes into the table and opens/closes the gripper, so contacts are included), resetting when
an episode ends, after a warm-up.  ``steps_per_s_cpu`` divides by the process's CPU time (what one core
delivers, robust to other jobs on a shared machine); ``steps_per_s_wall`` by wall-clock time.  The target
is >= 1,000 control steps/s per task (robosuite 1.5.2's Lift does ~140 on the same kind of core).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lpds_ros.envs import TASKS, make_env  # noqa: E402
from lpds_ros.utils import atomic_write_text  # noqa: E402


def bench_task(task: str, steps: int, resets: int, seed: int = 0) -> dict:
    env = make_env(task)
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1.0, 1.0, size=(steps, 4)).astype(np.float32)
    env.reset(seed=seed)
    for a in actions[:200]:  # warm-up
        if any(env.step(a)[2:4]):
            env.reset()
    env.reset(seed=seed)
    episodes = 1
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset()
            episodes += 1
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(resets):
        env.reset(seed=seed + i)
    reset_cpu, reset_wall = time.process_time() - cpu0, time.perf_counter() - wall0
    env.close()
    return {
        "task": task,
        "steps": steps,
        "episodes": episodes,
        "steps_per_s_cpu": steps / cpu,
        "steps_per_s_wall": steps / wall,
        "reset_ms_cpu": 1e3 * reset_cpu / resets,
        "reset_ms_wall": 1e3 * reset_wall / resets,
        "max_episode_steps": TASKS[task].max_episode_steps,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--steps", type=int, default=4000, help="timed control steps per task")
    parser.add_argument("--resets", type=int, default=200, help="timed resets per task")
    parser.add_argument("--out", default="results/env_speed.json")
    args = parser.parse_args(argv)

    import mujoco

    rows = []
    print(f"{'task':18s} {'steps/s (cpu)':>14s} {'steps/s (wall)':>15s} {'reset ms':>9s}")
    for task in args.tasks:
        r = bench_task(task, args.steps, args.resets)
        rows.append(r)
        print(f"{task:18s} {r['steps_per_s_cpu']:14.0f} {r['steps_per_s_wall']:15.0f} {r['reset_ms_cpu']:9.3f}")
    result = {
        "benchmark": "env_speed",
        "description": "control steps/s (20 Hz control, 25 x 2 ms physics steps, DIK once per control step) "
                       "with uniform random actions; one process",
        "target_steps_per_s": 1000,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "load_average": list(os.getloadavg()),
                    "python": platform.python_version(), "mujoco": mujoco.__version__},
        "results": rows,
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
