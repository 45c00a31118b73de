"""LP-DS fine-tuning through the ROS 2 sim graph (`lpds finetune --via-ros`) beside the plain gymnasium loop.

    .venv/bin/python benchmarks/ros_finetune.py [--steps 6000] [--seed 0]

Writes results/ros_finetune.json and .png:

* **learning curves**: the same LP-DS run (same decoder, agent config, seed, budget, training episode seeds,
  one env, UTD, warm-up, evaluation episodes) once with the gymnasium loop stepping the env in-process and
  once with its transitions gathered by policy_node from the sim graph (sim_node + perception + policy +
  safety filter, lockstep on /clock) and its steering hot-swapped into the running node.  Evaluation is the
  loop's own (fixed seeded gym episodes), so the curves differ only in where the training data came from.
* **overhead**: env steps per second of collection alone (UTD 0: no updates, no swaps), direct
  (``ChunkEnvs`` + decoding in-process) vs through ROS (graph + transition messages + replay rows), and
  the whole fine-tuning runs' env steps per second (updates included).

Wall-clock numbers depend on the machine's load (recorded beside them); the ROS run's outcome does not
(lockstep), but its learner acts on weights up to ``--swap-every`` env steps old.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="franka-lift")
    parser.add_argument("--policy", default=str(REPO / "models" / "franka-lift-diffusion"))
    parser.add_argument("--steps", type=int, default=6000, help="env-step budget of each learning run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learning-starts", type=int, default=2000)
    parser.add_argument("--eval-every", type=int, default=1500)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--swap-every", type=int, default=100)
    parser.add_argument("--graph", default="process", choices=["process", "processes", "inline"])
    parser.add_argument("--collect-steps", type=int, default=1000, help="env steps of each collection-only run (0: skip)")
    parser.add_argument("--work", default=str(REPO / "runs" / "ros_finetune"), help="run folders")
    parser.add_argument("--out", default=str(REPO / "results" / "ros_finetune.json"))
    args = parser.parse_args()

    from lpds_ros.steering.config import FinetuneConfig
    from lpds_ros.steering.loop import train
    from lpds_ros.steering.registry import method_config
    from lpds_ros.steering.ros_learner import RosOptions, ros_environment, train_via_ros

    domain = ros_environment()
    work = Path(args.work)
    base = FinetuneConfig(task=args.task, policy=args.policy, method="lpds", env_steps=args.steps, seed=args.seed,
                          num_envs=1, learning_starts=args.learning_starts, eval_every=args.eval_every,
                          eval_episodes=args.eval_episodes, checkpoint_every=args.steps, progress=True)
    agent_config = method_config("lpds", None, args.task, None)
    options = RosOptions(swap_every=args.swap_every, graph=args.graph)
    runs, walls = {}, {}
    for name, fn in (("gym", train), ("ros", train_via_ros)):
        config = dataclasses.replace(base, out=str(work / name))
        t0 = time.perf_counter()
        runs[name] = fn(config, agent_config) if name == "gym" else fn(config, agent_config, options)
        walls[name] = time.perf_counter() - t0
        final = runs[name]["final"]
        print(f"{name}: success {final['success']:.0%} (mean latent {final['success_mean_latent']:.0%}) after "
              f"{runs[name]['env_steps']} env steps, {walls[name]:.0f} s wall", flush=True)

    collect = {}
    if args.collect_steps:
        for name, fn in (("gym", train), ("ros", train_via_ros)):
            config = dataclasses.replace(base, out=str(work / f"collect-{name}"), env_steps=args.collect_steps, utd=0.0,
                                         learning_starts=0, eval_every=10 * args.collect_steps, eval_episodes=1,
                                         eval_envs=1, entropy_states=2, entropy_latents=8, progress=False)
            r = fn(config, agent_config) if name == "gym" else fn(config, agent_config, options)
            t = r["timing"]
            collect[name] = {"env_steps": r["env_steps"], "collect_s": t["env"] + t["act"],
                             "env_steps_per_s": r["env_steps"] / (t["env"] + t["act"])}
            if name == "ros":
                collect[name]["graph_env_steps_per_s"] = r["via_ros"]["graph_env_steps_per_s"]

    def curve(r):
        return [{k: p[k] for k in ("env_steps", "success", "success_mean_latent", "return", "deviation", "alpha",
                                   "entropy_ratio", "updates")} for p in r["curve"]]

    result = {
        "task": args.task, "policy": args.policy, "method": "lpds", "seed": args.seed, "budget_env_steps": args.steps,
        "settings": {"num_envs": 1, "utd": base.utd, "learning_starts": args.learning_starts, "eval_every": args.eval_every,
                     "eval_episodes": args.eval_episodes, "swap_every": args.swap_every, "graph": args.graph,
                     "delta": agent_config.delta},
        "curves": {name: curve(r) for name, r in runs.items()},
        "final": {name: {k: r["final"][k] for k in ("success", "success_mean_latent", "deviation", "entropy_ratio")}
                  for name, r in runs.items()},
        "updates": {name: r["updates"] for name, r in runs.items()},
        "via_ros": runs["ros"]["via_ros"],
        "throughput_env_steps_per_s": {
            "finetune_gym": runs["gym"]["env_steps"] / walls["gym"], "finetune_ros": runs["ros"]["env_steps"] / walls["ros"],
            "collect_only": collect,
            "collect_only_ros_over_gym": (collect["ros"]["env_steps_per_s"] / collect["gym"]["env_steps_per_s"]) if collect else None,
        },
        "timing": {name: r["timing"] for name, r in runs.items()},
        "wall_s": walls,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg_end": os.getloadavg(),
                    "ros_domain_id": domain},
        "command": "python benchmarks/ros_finetune.py " + " ".join(sys.argv[1:]),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    _plot(result, out.with_suffix(".png"))
    print(json.dumps({k: result[k] for k in ("final", "throughput_env_steps_per_s")}, indent=2))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    labels = {"gym": "gymnasium loop (in-process env)", "ros": "via ROS (sim graph, hot swap)"}
    for name, points in result["curves"].items():
        x = [p["env_steps"] for p in points]
        axes[0].plot(x, [100 * p["success"] for p in points], marker="o", label=labels[name])
        axes[0].plot(x, [100 * p["success_mean_latent"] for p in points], ls="--", alpha=0.6, label=f"{name}: mean latent")
        axes[1].plot(x, [p["deviation"] for p in points], marker="o", label=labels[name])
    axes[0].set(xlabel="env steps", ylabel="success %", title=f"{result['task']} LP-DS, seed {result['seed']}")
    axes[1].axhline(result["settings"]["delta"], color="k", lw=0.8, ls=":", label="δ")
    axes[1].set(xlabel="env steps", ylabel="E‖Δ(s)‖²", title="deviation")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
