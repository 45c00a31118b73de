"""lpds: record demos, pretrain a frozen diffusion/flow policy, steer it with LP-DS, export it, run it on ROS 2.

Each sub-command is declared here with argparse only (cheap to import: `lpds --help` never loads torch
or MuJoCo) and names the function that runs it as ``"module:function"``, imported when it is called.
A user mistake raises ``LpdsError`` and is printed as one line; anything else keeps its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from lpds_ros.errors import LpdsError


def _add_collect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("collect", help="roll out a scripted demonstrator (or expert) and write an HDF5 demo file")
    p.add_argument("--task", required=True, help="task name, e.g. franka-lift")
    p.add_argument("--episodes", type=int, default=200, help="number of episodes to record")
    p.add_argument("--noise", type=float, default=0.1, help="std of the Gaussian noise added to the demonstrator's actions")
    p.add_argument("--out", required=True, help="output .hdf5 path")
    p.add_argument("--seed", type=int, default=0, help="first episode's reset seed (episode i uses seed + i)")
    p.add_argument("--successful-only", action="store_true", help="keep only the episodes that succeeded")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--expert", help="roll out this `lpds expert` folder (gym/Adroit tasks) instead of a scripted demonstrator")
    p.set_defaults(handler="lpds_ros.data.collect:main")


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="behaviour-clone a diffusion or flow policy on demos (it is frozen afterwards)")
    p.add_argument("--task", required=True)
    p.add_argument("--demos", required=True, help="HDF5 demo file from `lpds collect`")
    p.add_argument("--backbone", choices=["diffusion", "flow"], default="diffusion")
    p.add_argument("--out", required=True, help="output folder (config.json + model.safetensors)")
    p.add_argument("--config", help="YAML with PolicyConfig/TrainConfig overrides")
    p.add_argument("--max-demos", type=int, help="use only the first N demos (limits coverage on purpose)")
    p.add_argument("--epochs", type=int, help="override the number of epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.set_defaults(handler="lpds_ros.policies.train:main")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="roll out a policy and print success rate, return and episode length")
    p.add_argument("--task", required=True)
    p.add_argument("--policy", required=True, help="policy folder, e.g. models/franka-lift-diffusion")
    p.add_argument("--steering", help="steering checkpoint (LP-DS/DSRL); default: the base policy")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-envs", type=int, default=8, help="parallel envs (in-process, batched decoding)")
    p.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    p.set_defaults(handler="lpds_ros.evaluate:main")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="evaluate the shipped base policy on franka-lift (the out-of-the-box check)")
    p.add_argument("--task", default="franka-lift")
    p.add_argument("--backbone", choices=["diffusion", "flow"], default="diffusion")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler="lpds_ros.evaluate:demo")


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a frozen decoder (and its LP-DS steering net) to ONNX + manifest for the runtime")
    p.add_argument("--policy", required=True, help="policy folder, e.g. models/franka-lift-diffusion")
    p.add_argument("--steering", help="LP-DS steering checkpoint trained against this policy (exports steering.onnx)")
    p.add_argument("--out", required=True, help="output folder (manifest.json, decoder.onnx, steering.onnx)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset of the default domain (>= 17)")
    p.add_argument("--no-specialize", action="store_true", help="write the plain traced decoder graph (slower; for debugging)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    p.set_defaults(handler="lpds_ros.runtime.export:main")


def _add_bench_latency(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench-latency", help="per-call latency of onnxruntime vs eager torch (p50/p99/max) and batch-64 throughput")
    p.add_argument("--model", help="export folder (or policy folder, exported on the fly); default: the reference "
                   "policies (3 x 512 MLP denoiser, chunk 8 x 7, diffusion K=5, flow K=4 and K=10) with random weights")
    p.add_argument("--policy", help="torch policy folder for the eager side (default: the one the manifest records)")
    p.add_argument("--steering", help="steering checkpoint for the eager side (default: the one the manifest records)")
    p.add_argument("--mode", choices=["auto", "steered", "base"], default="auto", help="steered: w = eps + Delta(s); base: w = eps")
    p.add_argument("--calls", type=int, default=10_000, help="timed batch-1 calls per backend (>= 10000 for the report)")
    p.add_argument("--batch", type=int, default=64, help="batch size of the throughput measurement (0: skip)")
    p.add_argument("--batch-calls", type=int, default=300, help="timed calls of the throughput measurement")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads of onnxruntime and torch")
    p.add_argument("--providers", default="cpu", help="onnxruntime providers: cpu, auto (CUDA/TensorRT when present) or a name")
    p.add_argument("--cpu", type=int, help="pin this process to one CPU core (like taskset -c N)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write the results JSON here (default without --model: results/latency.json)")
    p.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    p.set_defaults(handler="lpds_ros.runtime.bench:main")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """The fine-tuning run's knobs, shared by `finetune` (one run) and `bench` (every run of the grid)."""
    p.add_argument("--num-envs", dest="num_envs", type=int, help="training envs, decoded in one batch (default 8)")
    p.add_argument("--utd", type=float, help="gradient updates per chunk transition (default 1)")
    p.add_argument("--delta", type=float, help="LP-DS bound on E||Delta||^2 (default: the task's, see steering/config.py)")
    p.add_argument("--learning-starts", dest="learning_starts", type=int, help="env steps of the base policy before updates (default 2000)")
    p.add_argument("--eval-every", dest="eval_every", type=int, help="env steps between evaluations (default 5000)")
    p.add_argument("--eval-episodes", dest="eval_episodes", type=int, help="episodes per evaluation (default 20)")
    p.add_argument("--checkpoint-every", dest="checkpoint_every", type=int, help="env steps between checkpoints (default 10000)")
    p.add_argument("--entropy-states", dest="entropy_states", type=int, help="states of the entropy metric (default 16)")
    p.add_argument("--entropy-latents", dest="entropy_latents", type=int, help="latents per state of the entropy metric (default 256)")
    p.add_argument("--device", help="torch device of the decoder and steering nets: cpu (default) or cuda")
    p.add_argument("--no-progress", dest="no_progress", action="store_true", help="no progress bar")


def _add_expert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("expert", help="train a SAC expert on a task (keeps the best checkpoint) for `lpds collect --expert`")
    p.add_argument("--task", required=True, help="task name, e.g. hopper")
    p.add_argument("--steps", type=int, default=100_000, help="budget in env steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="expert folder (default: experts/<task>)")
    p.add_argument("--learning-starts", dest="learning_starts", type=int, help="random-action env steps before updates (default 5000)")
    p.add_argument("--eval-every", dest="eval_every", type=int, help="env steps between evaluations (default 5000)")
    p.add_argument("--eval-episodes", dest="eval_episodes", type=int, help="episodes per evaluation (default 5)")
    p.add_argument("--utd", type=float, help="gradient updates per env step (default 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--resume", action="store_true", help="continue the run checkpointed in --out")
    p.add_argument("--no-progress", dest="no_progress", action="store_true", help="no progress bar")
    p.set_defaults(handler="lpds_ros.steering.expert:main")


def _add_finetune(sub: argparse._SubParsersAction) -> None:
    from lpds_ros.steering.registry import METHODS

    p = sub.add_parser("finetune", help="steer a frozen policy online (LP-DS or a baseline); budget in env steps")
    p.add_argument("--task", required=True, help="task name, e.g. franka-lift")
    p.add_argument("--policy", help="frozen base policy folder (default: models/<task>-<backbone>)")
    p.add_argument("--backbone", choices=["diffusion", "flow"], default="diffusion", help="picks the default --policy")
    p.add_argument("--method", choices=list(METHODS), default="lpds", help="steering method")
    p.add_argument("--steps", type=int, default=30_000, help="budget in env steps (not chunks)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="run folder (default: runs/<task>-<backbone>/<method>/seed<seed>)")
    p.add_argument("--buffer-size", dest="buffer_size", type=int, help="replay capacity in chunk transitions (default: the budget's chunk count; "
                   "once full, the oldest rows make room)")
    p.add_argument("--eval-envs", dest="eval_envs", type=int, help="parallel envs of an evaluation (default 10)")
    p.add_argument("--threads", dest="torch_threads", type=int, help="torch threads (default 1)")
    p.add_argument("--agent-config", dest="agent_config", help="YAML of the method's config fields (LPDSConfig, DSRLConfig, ...)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt if it exists")
    p.add_argument("--via-ros", dest="via_ros", action="store_true",
                   help="gather the transitions through the ROS 2 sim graph's policy node and hot-swap the steering into it (lpds)")
    p.add_argument("--swap-every", dest="swap_every", type=int, help="--via-ros: env steps between steering-weight swaps (default 100)")
    p.add_argument("--graph", choices=["process", "processes", "inline"],
                   help="--via-ros: the four nodes in one child process (default), one process each, or in the learner's")
    _add_run_options(p)
    p.set_defaults(handler="lpds_ros.steering.loop:main")


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="the steering comparison: cached runs per (task, backbone, method, seed), table and plots")
    p.add_argument("--tasks", default="franka-lift", help="comma-separated task names")
    p.add_argument("--backbones", default="diffusion", help="comma-separated: diffusion,flow")
    p.add_argument("--methods", default="base,dsrl,lpds", help="comma-separated steering methods")
    p.add_argument("--steps", type=int, default=30_000, help="budget of each run in env steps")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds per cell")
    p.add_argument("--seed-offset", dest="seed_offset", type=int, default=0, help="first seed")
    p.add_argument("--jobs", type=int, default=2, help="parallel runs (processes, one torch thread each)")
    p.add_argument("--results", default="results", help="results folder (runs/ cache, aggregates, plots)")
    p.add_argument("--policy-root", dest="policy_root", default="models", help="base policies live at <root>/<task>-<backbone>")
    p.add_argument("--force", action="store_true", help="re-run cells that are already cached (their run folders are discarded first)")
    p.add_argument("--ray-address", dest="ray_address", help="send runs to an existing Ray cluster (optional `ray` extra)")
    p.add_argument("--agent-config", dest="agent_config",
                   help="YAML of method config fields, one section per method (e.g. 'lpds: {actor_delay: 2000}')")
    _add_run_options(p)
    p.set_defaults(handler="lpds_ros.steering.bench:main")


def _add_graph(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("graph", help="start the ROS 2 node graph of launch/sim.launch.py from Python and run episodes through it")
    p.add_argument("--sim", action="store_true", help="the MuJoCo sim graph (the only one that starts from Python)")
    p.add_argument("--task", help="task name (default: the parameter file's, franka-lift)")
    p.add_argument("--policy", help="policy for policy_node: an `lpds export` folder or a policy folder (exported on the fly)")
    p.add_argument("--scripted", action="store_true", help="drive the graph with the task's scripted demonstrator instead")
    p.add_argument("--mode", choices=["auto", "base", "steered"], help="base: w = eps; steered: w = eps + Delta(s)")
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="first episode's reset seed (episode i uses seed + i)")
    p.add_argument("--lead-steps", dest="lead_steps", type=int, help="plan the next chunk this many steps before the seam")
    p.add_argument("--params", help="ROS 2 parameter file of the nodes (default: config/sim_graph.yaml)")
    p.add_argument("--topics", help="topic/action names YAML (default: config/topics.yaml)")
    p.add_argument("--processes", action="store_true", help="one process per node instead of one multi-threaded process")
    p.add_argument("--episode-timeout", dest="episode_timeout", type=float, default=300.0, help="wall seconds per episode")
    p.add_argument("--out", help="write the results JSON here")
    p.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    p.set_defaults(handler="lpds_ros.nodes.graph:main")


def _add_teleop(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("teleop", help="teleoperate the arm or the sim (keyboard / SpaceMouse, through the safety filter) and record demos")
    p.add_argument("--out", required=True, help="HDF5 demo file; each saved episode is appended atomically (created if missing)")
    p.add_argument("--task", default="franka-lift", help="task whose observation layout is recorded")
    p.add_argument("--sim", action="store_true", help="start the MuJoCo sim, perception and safety filter in this process")
    p.add_argument("--seed", type=int, default=0, help="--sim: the n-th episode resets with seed + n")
    p.add_argument("--max-steps", dest="max_steps", type=int, default=1200, help="--sim: episode horizon in control steps (60 s)")
    p.add_argument("--speed", type=float, default=0.3, help="key press speed as a fraction of the task's 5 cm/step action")
    p.add_argument("--spacemouse", choices=["auto", "on", "off"], default="auto", help="use a 3Dconnexion SpaceMouse (pyspacemouse)")
    p.add_argument("--keys", help="scripted keys 'STEP:KEYS ...' instead of the terminal (the sim then runs in lockstep)")
    p.add_argument("--bag", help="also record a rosbag2 (MCAP) of the raw topics into this new directory")
    p.add_argument("--bag-topics", dest="bag_topics", help="comma-separated config/topics.yaml keys to bag (default: state + commands)")
    p.add_argument("--params", help="--sim: ROS 2 parameter file of the sim graph (default: config/sim_graph.yaml)")
    p.add_argument("--topics", help="topic/action names YAML (default: config/topics.yaml)")
    p.add_argument("--timeout", type=float, help="stop after this many wall seconds")
    p.set_defaults(handler="lpds_ros.teleop.cli:main")


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="hand-eye calibration from recorded marker views -> calibration/hand_eye.yaml")
    p.add_argument("--views", required=True, help="folder with views.yaml (TCP pose + image per view) and the images")
    p.add_argument("--mount", choices=["hand", "fixed"], required=True,
                   help="hand: camera on the hand, marker fixed in the cell; fixed: camera in the cell, marker on the hand")
    p.add_argument("--out", default="calibration/hand_eye.yaml", help="hand-eye YAML to write")
    p.add_argument("--intrinsics", help="camera intrinsics YAML (default: calibration/camera_intrinsics.yaml)")
    p.add_argument("--marker", help="marker YAML: dictionary, id, printed size (default: calibration/marker.yaml)")
    p.add_argument("--parent-frame", dest="parent_frame", help="frame of the result (default: fr3_hand_tcp for hand, fr3_link0 for fixed)")
    p.add_argument("--camera-frame", dest="camera_frame", default="camera_color_optical_frame", help="the camera's optical frame")
    p.add_argument("--max-residual-mm", dest="max_residual_mm", type=float, default=2.0, help="warn when the views disagree by more")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(handler="lpds_ros.calibration.handeye:main")



# One entry per sub-command, in the order `lpds --help` lists them.
COMMANDS = [_add_collect, _add_teleop, _add_pretrain, _add_evaluate, _add_demo, _add_export, _add_bench_latency,
            _add_expert, _add_finetune, _add_bench, _add_graph, _add_calibrate]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lpds", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module_name, func_name = args.handler.split(":")
    try:
        handler = getattr(importlib.import_module(module_name), func_name)
        return int(handler(args) or 0)
    except LpdsError as exc:
        print(f"lpds {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lpds {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
