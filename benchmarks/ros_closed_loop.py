"""The same policy through the ROS 2 graph and in the plain gymnasium loop: success rates, policy-node cycle
time and end-to-end latency.  Writes results/ros_closed_loop.json.

    .venv/bin/python benchmarks/ros_closed_loop.py [--policy models/franka-lift-diffusion] [--episodes 20]

* **gym**: ``make_env(task)`` stepped with the chunks of the same ONNX policy, scheduled by the same
  ``ChunkExecutor`` as policy_node (``--lead-steps``) and drawing the same noise
  (``default_rng([policy seed, episode seed])``): the only difference left to the ROS side is the graph.
  ``gym_lead0`` is the schedule of ``lpds evaluate`` (plan at the seam).
* **ros**: ``lpds graph --sim``'s ``SimGraph`` in this process (lockstep on /clock), episodes with seeds
  seed .. seed + N - 1; ``ros_lead0`` once more with the evaluator's schedule.
* **cycle time**: policy_node's observation callback until its /lpds/action_raw publish (wall, p50/p99).
  The chunk inference runs on a worker thread, planned a step ahead, so it is reported on its own.
* **end-to-end latency**: from sim_node publishing a state (stamp t) to safety_filter_node publishing the
  target_pose decided on the observation stamped t (wall, p50/p99): perception + policy + safety + 3 DDS hops.

The ROS numbers are wall-clock and depend on the machine's load; the success rates do not (lockstep).
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def gym_success(task: str, export: Path, seeds: list[int], policy_seed: int, lead: int) -> list[dict]:
    from lpds_ros.envs import make_env
    from lpds_ros.runtime.chunking import ChunkExecutor, OnnxChunkPolicy

    policy = OnnxChunkPolicy(export, mode="auto", providers="cpu")
    env = make_env(task)
    runs = []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        ex = ChunkExecutor(policy.horizon, policy.exec_horizon, min(lead, policy.exec_horizon - 1))
        rng = np.random.default_rng([policy_seed, seed])
        success, steps = False, 0
        while True:
            offset = ex.plan_request()
            if offset is not None:
                eps = rng.standard_normal((policy.horizon, policy.action_dim)).astype(np.float32)
                ex.deliver(policy.chunk(obs, eps), offset, ex.generation)
            obs, _, terminated, truncated, info = env.step(ex.pop().astype(np.float32))
            steps += 1
            success = success or bool(info.get("success"))
            if terminated or truncated:
                break
        runs.append({"seed": seed, "success": success, "steps": steps})
    env.close()
    return runs


def ros_success(task: str, export: Path, seeds: list[int], policy_seed: int, lead: int) -> tuple[list[dict], dict]:
    from lpds_ros.nodes.graph import SimGraph, load_graph_params

    params = load_graph_params(REPO / "config" / "sim_graph.yaml")
    for node in ("sim_node", "perception_node", "policy_node"):
        params[node]["task"] = task
    params["policy_node"].update(backend="onnx", model_dir=str(export), seed=policy_seed, lead_steps=lead)
    with SimGraph(params) as graph:
        runs = []
        for seed in seeds:
            runs.append(graph.run_episode(seed, timeout_s=600))
            r = runs[-1]
            print(f"  ros seed {seed}: {'success' if r['success'] else 'failure'} in {r['steps']} steps, "
                  f"{r['wall_s']:.1f} s wall", flush=True)
        sim, policy, safety = (graph.nodes[n] for n in ("sim_node", "policy_node", "safety_filter_node"))
        e2e = [safety.publish_wall[k] - sim.state_wall[k] for k in safety.publish_wall if k in sim.state_wall]
        obs_to_raw = [policy.publish_wall[k] - sim.state_wall[k] for k in policy.publish_wall if k in sim.state_wall]
        timing = {
            "policy_cycle_ms": _pct(policy.cycle_s),
            "policy_inference_ms": _pct(policy.inference_s),
            "end_to_end_ms": _pct(e2e),
            "state_to_action_raw_ms": _pct(obs_to_raw),
            "lockstep_timeouts": sim.lockstep_timeouts,
            "held_steps": policy.holds,
            "samples": {"cycle": len(policy.cycle_s), "end_to_end": len(e2e)},
        }
    return runs, timing


def _pct(values) -> dict:
    v = np.asarray(list(values), dtype=np.float64) * 1000.0
    if v.size == 0:
        return {}
    return {"p50": round(float(np.percentile(v, 50)), 3), "p99": round(float(np.percentile(v, 99)), 3),
            "max": round(float(v.max()), 3), "n": int(v.size)}


def _rate(runs: list[dict]) -> float:
    return sum(r["success"] for r in runs) / len(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="franka-lift")
    parser.add_argument("--policy", default=str(REPO / "models" / "franka-lift-diffusion"),
                        help="policy folder (exported to ONNX on the fly) or `lpds export` folder")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="first episode seed")
    parser.add_argument("--policy-seed", type=int, default=0, help="policy_node's noise seed")
    parser.add_argument("--lead-steps", type=int, default=1)
    parser.add_argument("--out", default=str(REPO / "results" / "ros_closed_loop.json"))
    args = parser.parse_args()
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 6))  # below the test runs' blocks (8..231)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

    from lpds_ros.nodes.graph import resolve_policy

    export = resolve_policy(args.policy)
    seeds = list(range(args.seed, args.seed + args.episodes))
    t0 = time.perf_counter()
    gym_runs = gym_success(args.task, export, seeds, args.policy_seed, args.lead_steps)
    gym_lead0 = gym_success(args.task, export, seeds, args.policy_seed, 0)
    gym_s = time.perf_counter() - t0
    print(f"gym (lead {args.lead_steps}): {_rate(gym_runs):.0%}; gym (lead 0): {_rate(gym_lead0):.0%}  [{gym_s:.1f} s]", flush=True)
    t0 = time.perf_counter()
    ros_runs, timing = ros_success(args.task, export, seeds, args.policy_seed, args.lead_steps)
    ros_s = time.perf_counter() - t0
    ros_lead0 = ros_success(args.task, export, seeds, args.policy_seed, 0)[0] if args.lead_steps != 0 else ros_runs
    agree = sum(a["success"] == b["success"] for a, b in zip(gym_runs, ros_runs))
    result = {
        "task": args.task, "policy": str(args.policy), "export": str(export), "episodes": args.episodes,
        "seeds": [seeds[0], seeds[-1]], "policy_seed": args.policy_seed, "lead_steps": args.lead_steps,
        "success_rate": {"gym": _rate(gym_runs), "gym_lead0": _rate(gym_lead0), "ros": _rate(ros_runs),
                         "ros_lead0": _rate(ros_lead0)},
        "difference_points": round(100 * (_rate(ros_runs) - _rate(gym_runs)), 1),
        "episodes_with_same_outcome": agree,
        "episodes_with_same_outcome_lead0": sum(a["success"] == b["success"] for a, b in zip(gym_lead0, ros_lead0)),
        "timing": timing,
        "wall_s": {"gym_both": round(gym_s, 1), "ros": round(ros_s, 1)},
        "runs": {"gym": gym_runs, "gym_lead0": gym_lead0, "ros": ros_runs, "ros_lead0": ros_lead0},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg": os.getloadavg()},
        "command": "python benchmarks/ros_closed_loop.py " + " ".join(sys.argv[1:]),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("success_rate", "difference_points", "episodes_with_same_outcome",
                                             "episodes_with_same_outcome_lead0", "timing")}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
