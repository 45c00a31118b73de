"""``lpds teleop``: teleoperate the sim mirror (``--sim``) or the arm, and record demos (and a bag).

``--sim`` starts sim_node, perception_node and safety_filter_node (config/sim_graph.yaml) with teleop_node
in this process, in place of policy_node; interactively the sim runs in real time (``lockstep: false``),
with a key script (``--keys``) it runs in lockstep, deterministically.  Without ``--sim`` only teleop_node
starts, for a graph that runs already (on the robot: ``ros2 launch lpds_ros franka.launch.py
start_policy:=false``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from lpds_ros.errors import LpdsError

SIM_NODES = ("sim_node", "perception_node", "safety_filter_node")


def teleop_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """teleop_node's parameters from the command line."""
    values: dict[str, Any] = {"task": args.task, "out": str(args.out), "sim_episodes": bool(args.sim), "seed": args.seed,
                              "speed": float(args.speed), "spacemouse": args.spacemouse, "keyboard": not args.keys,
                              "keys_script": args.keys or ""}
    if args.bag:
        values["bag_dir"] = str(args.bag)
    if args.bag_topics:
        values["bag_topics"] = [k.strip() for k in args.bag_topics.split(",") if k.strip()]
    if args.topics:
        values["topics_file"] = str(args.topics)
    return values


class TeleopGraph:
    """teleop_node (+ the sim graph's other three nodes with ``sim_params``) on one executor."""

    def __init__(self, teleop: dict[str, Any], sim_params: dict[str, dict[str, Any]] | None = None,
                 keys=None, device=None, topics_file: str | None = None, domain_id: int | None = None):
        self.teleop_params, self.sim_params = teleop, sim_params
        self.keys, self.device, self.topics_file, self.domain_id = keys, device, topics_file, domain_id
        self.nodes: dict[str, Any] = {}

    def start(self) -> "TeleopGraph":
        import rclpy
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.parameter import Parameter

        from lpds_ros.nodes.graph import _coerce, make_node
        from lpds_ros.nodes.spinner import BackgroundSpinner
        from lpds_ros.nodes.teleop_node import TeleopNode, TeleopParams

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=self.domain_id)
        try:
            sim_time = self.sim_params is not None
            if sim_time:
                for name in SIM_NODES:
                    self.nodes[name] = make_node(name, self.sim_params, self.context, self.topics_file)
            overrides = [Parameter(k, value=v) for k, v in _coerce(TeleopParams, self.teleop_params).items()]
            if sim_time:
                overrides.append(Parameter("use_sim_time", value=True))
            self.teleop = TeleopNode(keys=self.keys, device=self.device, context=self.context, parameter_overrides=overrides)
            self.nodes["teleop_node"] = self.teleop
            self.executor = MultiThreadedExecutor(num_threads=6, context=self.context)
            for node in self.nodes.values():
                self.executor.add_node(node)
            self._spinner = BackgroundSpinner(self.executor, "lpds_teleop.spin").start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        import rclpy

        from lpds_ros.nodes.spinner import teardown

        teardown(reversed(list(self.nodes.values())), getattr(self, "_spinner", None))
        self._spinner = self.executor = None
        self.nodes.clear()
        if getattr(self, "context", None) is not None and self.context.ok():
            rclpy.shutdown(context=self.context)

    def __enter__(self) -> "TeleopGraph":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def wait(self, timeout_s: float | None = None) -> None:
        """Until the operator quits (q), or a key script has run out and no episode is open."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        node = self.teleop
        while not node.quit_requested:
            scripted_done = getattr(node.keys, "done", False)
            if scripted_done and node.recorder.state == node.recorder.IDLE:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise LpdsError(f"teleop did not finish within {timeout_s:.0f} s")
            if not self.context.ok():
                break
            time.sleep(0.05)


def main(args: argparse.Namespace) -> int:
    from lpds_ros.nodes.graph import load_graph_params
    from lpds_ros.nodes.topics import package_file

    if Path(args.out).suffix not in (".hdf5", ".h5"):
        raise LpdsError(f"--out {args.out}: demo files end in .hdf5 or .h5")
    if args.bag and Path(args.bag).exists():
        raise LpdsError(f"--bag {args.bag}: already exists; give a new directory")
    sim_params = None
    if args.sim:
        sim_params = load_graph_params(args.params or package_file("config/sim_graph.yaml"))
        sim = sim_params.setdefault("sim_node", {})
        sim.update(task=args.task, auto_start=False, auto_reset=False, max_episode_steps=args.max_steps)
        sim_params.setdefault("perception_node", {})["task"] = args.task
        if not args.keys:  # a person at the keys: real time; a key script: lockstep (deterministic)
            sim.update(lockstep=False, real_time_factor=1.0)
    graph = TeleopGraph(teleop_overrides(args), sim_params, topics_file=args.topics)
    with graph:
        print("lpds teleop: " + ("sim " + args.task if args.sim else "the running graph") + f"; demos -> {args.out}",
              file=sys.stderr, flush=True)
        graph.wait(args.timeout)
        recorder = graph.teleop.recorder
        appender = graph.teleop.appender
        total = appender.total_demos if appender is not None else 0
    print(f"lpds teleop: saved {recorder.saved} episode(s), discarded {recorder.discarded}; {args.out} holds {total} demo(s)")
    return 0
