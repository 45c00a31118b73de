"""``lpds graph --sim``: the sim graph of launch/sim.launch.py started from Python, and N episodes through it.

``ros2 launch`` is not available here (no wheel), so this starts the same four nodes with the same
parameter file (config/sim_graph.yaml): in one process on a ``MultiThreadedExecutor`` (default; the nodes
are importable classes, as in ros2/examples' composition demo) or one process per node (``--processes``,
each ``python -m lpds_ros.nodes.<node> --ros-args --params-file ...``, as the launch file does).  A small
runner node then resets the sim once per episode (seed, seed + 1, ...) over ``reset_episode``, waits for
its ``episode`` end event, and reports the success rate.

Everything runs in lockstep on /clock: the sim advances only when the safety filter's command for the
last state arrived, so the outcome does not depend on the machine's speed.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from lpds_ros.config import ConfigError
from lpds_ros.errors import LpdsError
from lpds_ros.nodes.spinner import BackgroundSpinner, teardown
from lpds_ros.nodes.topics import load_topics, package_file

NODES = ("sim_node", "perception_node", "policy_node", "safety_filter_node")
_MODULES = {name: f"lpds_ros.nodes.{name}" for name in NODES}


def _param_classes() -> dict[str, type]:
    from lpds_ros.nodes.perception_node import PerceptionParams
    from lpds_ros.nodes.policy_node import PolicyParams
    from lpds_ros.nodes.safety_filter_node import SafetyNodeParams
    from lpds_ros.nodes.sim_node import SimParams

    return {"sim_node": SimParams, "perception_node": PerceptionParams, "policy_node": PolicyParams,
            "safety_filter_node": SafetyNodeParams}


def load_graph_params(path: str | Path) -> dict[str, dict[str, Any]]:
    """A ROS 2 parameter file (``<node>: {ros__parameters: {...}}``) as {node: {name: value}}.

    Raises ``ConfigError`` (one line) for unreadable YAML, an unknown node, a missing ``ros__parameters``
    or a parameter the node does not declare.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: parameter file not found")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping of node names")
    classes = _param_classes()
    out: dict[str, dict[str, Any]] = {}
    for node, section in doc.items():
        if node not in classes:
            raise ConfigError(f"{path}: unknown node {node!r}; nodes: {list(classes)}")
        if not isinstance(section, dict) or not isinstance(section.get("ros__parameters"), dict) or len(section) != 1:
            raise ConfigError(f"{path}: {node} must hold exactly one mapping 'ros__parameters'")
        values = dict(section["ros__parameters"])
        values.pop("use_sim_time", None)
        fields = {f.name: f for f in dataclasses.fields(classes[node])}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ConfigError(f"{path}: {node}: unknown parameter(s) {unknown}; valid: {sorted(fields)}")
        out[node] = values
    return out


def _coerce(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """Ints where the field is a float (YAML's 1 vs 1.0), tuples to lists: what rclpy's typing expects."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = {}
    for name, value in values.items():
        default = fields[name].default
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, tuple):
            value = list(value)
        if isinstance(value, list) and isinstance(default, tuple) and default and isinstance(default[0], float):
            value = [float(v) for v in value]
        out[name] = value
    return out


def make_node(name: str, params: dict[str, dict[str, Any]], context, topics_file: str | None = None):
    """Graph node ``name`` (one of NODES) in this process, with its parameter-file values as overrides;
    every node but the sim follows the sim's /clock."""
    from rclpy.parameter import Parameter

    from lpds_ros.nodes.perception_node import PerceptionNode
    from lpds_ros.nodes.policy_node import PolicyNode
    from lpds_ros.nodes.safety_filter_node import SafetyFilterNode
    from lpds_ros.nodes.sim_node import SimNode

    makers = {"sim_node": SimNode, "perception_node": PerceptionNode, "policy_node": PolicyNode,
              "safety_filter_node": SafetyFilterNode}
    values = _coerce(_param_classes()[name], params.get(name, {}))
    if topics_file:
        values["topics_file"] = str(topics_file)
    overrides = [Parameter(k, value=v) for k, v in values.items()]
    if name != "sim_node":
        overrides.append(Parameter("use_sim_time", value=True))
    return makers[name](context=context, parameter_overrides=overrides)


class SimGraph:
    """The four nodes + a runner node, started in this process or as child processes."""

    def __init__(self, params: dict[str, dict[str, Any]], processes: bool = False, params_file: Path | None = None,
                 topics_file: str | None = None):
        self.params = params
        self.processes = processes
        self.params_file = params_file
        self.topics = load_topics(topics_file)
        self.topics_file = topics_file
        self.nodes: dict[str, Any] = {}
        self._children: list[subprocess.Popen] = []
        self._events: list[dict] = []
        self._events_cv = threading.Condition()

    # ------------------------------------------------------------------ start / stop
    def start(self) -> None:
        import rclpy
        from rclpy.executors import MultiThreadedExecutor
        from std_msgs.msg import Int64, String

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        try:
            if self.processes:
                self._spawn()
            else:
                for name in NODES:
                    self.nodes[name] = make_node(name, self.params, self.context, self.topics_file)
            from franka_msgs.action import Grasp, Move
            from rclpy.action import ActionClient

            self.runner = rclpy.create_node("lpds_graph_runner", context=self.context)
            self.pub_reset = self.runner.create_publisher(Int64, self.topics.reset_episode, 10)
            self.runner.create_subscription(String, self.topics.episode, self._on_episode, 10)
            # probes of the gripper servers; they live as long as the runner (destroying an entity while
            # the executor waits on it kills the executor)
            self._gripper_probes = [ActionClient(self.runner, kind, name)
                                    for kind, name in ((Grasp, self.topics.gripper_grasp), (Move, self.topics.gripper_move))]
            self.executor = MultiThreadedExecutor(num_threads=8, context=self.context)
            # made before it spins, so that a failure below still shuts this executor down in stop()
            self._spinner = BackgroundSpinner(self.executor, "lpds_graph.spin")
            if not self.processes:
                # Nodes in this process share one GIL: at the default 5 ms switch interval a busy executor
                # thread makes every other thread (torch, the caller) wait up to 5 ms per hand-over.
                sys.setswitchinterval(5e-4)
            for node in [*self.nodes.values(), self.runner]:
                self.executor.add_node(node)
            self._spinner.start()
            self._wait_connected()
        except BaseException:
            self.stop()
            raise

    def _spawn(self) -> None:
        env = dict(os.environ)
        for name in NODES:
            cmd = [sys.executable, "-m", _MODULES[name], "--ros-args", "-r", f"__node:={name}"]
            if self.params_file is not None:
                cmd += ["--params-file", str(self.params_file)]
            for key, value in self.params.get(name, {}).items():
                if key == "topics_file" and self.topics_file:
                    continue
                cmd += ["-p", f"{key}:={_ros_arg(value)}"]
            if self.topics_file:
                cmd += ["-p", f"topics_file:={self.topics_file}"]
            if name != "sim_node":
                cmd += ["-p", "use_sim_time:=true"]
            self._children.append(subprocess.Popen(cmd, env=env))

    def _wait_connected(self, timeout_s: float = 60.0) -> None:
        """Until every topic of the loop has its publisher and subscriber and the gripper servers answer."""
        t = self.topics
        loop = [(t.reset_episode, 1, 0), (t.observation, 1, 1), (t.action_raw, 1, 1), (t.target_pose, 1, 1),
                (t.current_pose, 2, 1), (t.object_pose, 1, 1), (t.episode, 3, 1)]
        deadline = time.monotonic() + timeout_s
        while True:
            missing = [topic for topic, subs, pubs in loop
                       if self.runner.count_subscribers(self._resolve(topic)) < subs
                       or self.runner.count_publishers(self._resolve(topic)) < pubs]
            if not self.pub_reset.get_subscription_count():  # matched, not only known to the graph
                missing.append(t.reset_episode)
            missing += [probe._action_name for probe in self._gripper_probes if not probe.server_is_ready()]
            if not missing:
                break
            for child in self._children:
                if child.poll() is not None:
                    raise LpdsError(f"a graph process exited with status {child.returncode} (see its message above)")
            if time.monotonic() > deadline:
                raise LpdsError(f"the sim graph did not connect within {timeout_s:.0f} s: no peers on {missing}")
            time.sleep(0.05)
        time.sleep(0.5)  # endpoint matching between the other nodes completes about when the graph shows them

    def _resolve(self, topic: str) -> str:
        return topic if topic.startswith("/") else "/" + topic

    def stop(self) -> None:
        import rclpy

        teardown(self.nodes.values(), getattr(self, "_spinner", None))
        self._spinner = None
        self.nodes.clear()
        for child in self._children:
            if child.poll() is None:
                child.terminate()
        for child in self._children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        self._children.clear()
        if getattr(self, "runner", None) is not None:
            self.runner.destroy_node()
            self.runner = None
        if getattr(self, "context", None) is not None and self.context.ok():
            rclpy.shutdown(context=self.context)

    def __enter__(self) -> "SimGraph":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ episodes
    def _on_episode(self, msg) -> None:
        try:
            event = json.loads(msg.data)
        except json.JSONDecodeError:
            return
        with self._events_cv:
            self._events.append(event)
            self._events_cv.notify_all()

    def run_episode(self, seed: int, timeout_s: float = 300.0, reset_retry_s: float = 3.0) -> dict:
        """Reset the sim with ``seed`` and wait for that episode's end event (wall ``timeout_s``).

        The reset is sent again while no start event for it has come back within ``reset_retry_s`` (a
        message sent before discovery completed is lost; resetting with the same seed again is harmless)."""
        from std_msgs.msg import Int64

        with self._events_cv:
            self._events.clear()
        t0 = time.perf_counter()
        self.pub_reset.publish(Int64(data=int(seed)))
        sent = time.monotonic()
        deadline = sent + timeout_s
        with self._events_cv:
            while True:
                ends = [e for e in self._events if e.get("event") == "end" and e.get("seed") == seed]
                if ends:
                    event = ends[-1]
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LpdsError(f"episode with seed {seed} did not end within {timeout_s:.0f} s of wall time")
                started = any(e.get("event") == "start" and e.get("seed") == seed for e in self._events)
                if not started and time.monotonic() - sent > reset_retry_s:
                    self.pub_reset.publish(Int64(data=int(seed)))
                    sent = time.monotonic()
                self._events_cv.wait(timeout=min(left, 0.5))
        return {"seed": seed, "success": bool(event["success"]), "steps": int(event["steps"]),
                "min_tcp_object_m": event.get("min_tcp_object_m"), "sim_time_s": float(event["stamp"]),
                "wall_s": time.perf_counter() - t0}

    def run_episodes(self, episodes: int, seed: int = 0, timeout_s: float = 300.0, progress: bool = False) -> list[dict]:
        results = []
        for i in range(episodes):
            results.append(self.run_episode(seed + i, timeout_s))
            if progress:
                r = results[-1]
                print(f"episode {i + 1}/{episodes} seed {r['seed']}: {'success' if r['success'] else 'failure'} "
                      f"in {r['steps']} steps ({r['wall_s']:.1f} s wall)", file=sys.stderr, flush=True)
        return results


def _ros_arg(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_ros_arg(v) for v in value) + "]"
    return str(value)


def graph_params(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The parameter file plus the command line's overrides."""
    params = load_graph_params(args.params or package_file("config/sim_graph.yaml"))
    sim, policy = params.setdefault("sim_node", {}), params.setdefault("policy_node", {})
    perception = params.setdefault("perception_node", {})
    if args.task:
        for section in (sim, policy, perception):
            section["task"] = args.task
    if args.policy:
        policy["backend"], policy["model_dir"] = "onnx", str(args.policy)
    elif args.scripted:
        policy["backend"] = "scripted"
    if args.mode:
        policy["mode"] = args.mode
    if args.lead_steps is not None:
        policy["lead_steps"] = args.lead_steps
    policy["seed"] = args.seed
    sim["auto_start"] = False
    return params


def resolve_policy(path: str | Path) -> Path:
    """An ``lpds export`` folder for ``path``: itself, or -- for a torch policy folder (config.json +
    model.safetensors) -- its export, made once into ``$LPDS_CACHE`` (default ~/.cache/lpds_ros)/onnx."""
    path = Path(path)
    if (path / "manifest.json").is_file():
        return path
    if not (path / "config.json").is_file():
        raise LpdsError(f"{path}: neither an `lpds export` folder (manifest.json) nor a policy folder (config.json)")
    from lpds_ros.utils import sha256_file

    weights = path / "model.safetensors"
    if not weights.is_file():
        raise LpdsError(f"{weights}: missing")
    cache = Path(os.environ.get("LPDS_CACHE", Path.home() / ".cache" / "lpds_ros"))
    out = cache / "onnx" / f"{path.resolve().name}-{sha256_file(weights)[:16]}"
    if not (out / "manifest.json").is_file():
        from lpds_ros.policies import load_policy
        from lpds_ros.runtime.export import export_policy

        export_policy(load_policy(path), out, overwrite=True)
    return out


def main(args: argparse.Namespace) -> int:
    if not args.sim:
        raise LpdsError("only the sim graph starts from Python (`lpds graph --sim`); on the robot computer run "
                        "`ros2 launch lpds_ros franka.launch.py robot_ip:=...`")
    if not args.policy and not args.scripted:
        default = Path("models") / f"{args.task or 'franka-lift'}-diffusion"
        if not default.is_dir():
            raise LpdsError(f"give --policy <policy or export folder> or --scripted ({default} does not exist)")
        args.policy = str(default)
    if args.policy:
        args.policy = str(resolve_policy(args.policy))
    params = graph_params(args)
    params_file = Path(args.params) if args.params else package_file("config/sim_graph.yaml")
    graph = SimGraph(params, processes=args.processes, params_file=params_file, topics_file=args.topics)
    t0 = time.perf_counter()
    with graph:
        results = graph.run_episodes(args.episodes, args.seed, args.episode_timeout, progress=not args.json)
    successes = [r["success"] for r in results]
    summary = {"task": params["sim_node"].get("task", "franka-lift"), "policy": params["policy_node"].get("model_dir") or "scripted",
               "episodes": len(results), "seed": args.seed, "success_rate": sum(successes) / len(results),
               "wall_s": time.perf_counter() - t0, "runs": results}
    print(f"lpds graph --sim: success {summary['success_rate']:.0%} over {len(results)} episodes "
          f"(seeds {args.seed}..{args.seed + len(results) - 1}), {summary['wall_s']:.1f} s wall")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, indent=2))
    if args.json:
        print(json.dumps(summary))
    return 0
