"""``lpds finetune --via-ros``: LP-DS with its transitions gathered by the policy node from the ROS sim graph.

The run is the gymnasium loop's ``Trainer`` (same agent, same replay buffer, same update schedule, same
evaluation, checkpoints and files: log.jsonl, result.json, checkpoint.pt, tensorboard/), with one hook
replaced: ``collect`` takes the chunk transitions the graph produced instead of stepping in-process envs.

    this process (learner)                           the sim graph (lpds graph --sim's SimGraph)
    ----------------------                           -------------------------------------------
    Trainer.run: updates, evaluation, checkpoints    sim_node -> perception_node -> policy_node
    RosLink node  <- transition (Float64MultiArray)  <- policy_node (collect_transitions, lead_steps 0)
                  -> steering_weights (ONNX bytes)   -> policy_node (hot_swap: swapped between decisions)
                  -> reset_episode / <- episode      <-> sim_node (lockstep on /clock)

* **Transitions** (``lpds_ros.runtime.transitions``): per decision the policy node sends the observation,
  eps, the latent w = eps + Delta(s) it decoded, the executed slice of the chunk, the k <= H_exec per-step
  rewards, terminated / truncated and the next observation.  Here they become replay rows exactly as
  ``ChunkEnvs.step`` makes them (r = sum_i gamma^i r_i, discount gamma^k, done = terminated), and the
  noise critic's prior pair (eps', Phi(s, eps')) is drawn and decoded here with the frozen decoder, as
  ``LPDSAgent.act`` does beside each decision.
* **Weights** (``lpds_ros.runtime.hotswap``): every ``swap_every`` env steps (once updates have begun) the
  steering network is traced to the steering ONNX graph, tagged with the decoder's SHA-256 and a version,
  and published (transient-local, so a restarted node gets the latest).  The policy node verifies and
  swaps it in between two decisions without stopping; the decoder never changes.
* **Episodes**: reset with the gymnasium loop's training seeds (``episode_seed(seed, 0, k)``, env 0), the
  next one only when the learner has taken every transition and done every update due, so the policy
  acting in the sim is never more than one episode behind the learner.  Evaluation is the gymnasium
  loop's (the same fixed episodes), so the two learning curves compare directly.

Budgets count env steps of whole transitions received (a transition the policy node could not complete is
dropped there, never counted).  The graph runs one env (``num_envs`` is 1).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lpds_ros.errors import LpdsError
from lpds_ros.steering.config import FinetuneConfig
from lpds_ros.steering.loop import RESULT_FILE, Trainer, episode_seed

GRAPH_MODES = ("process", "processes", "inline")
ROS_METHODS = ("lpds", "lpds-nolagrange")
"""Methods whose policy is w = eps + Delta(s) (a steering graph the policy node can run)."""


@dataclass
class RosOptions:
    """How the graph is run for fine-tuning."""

    swap_every: int = 100
    """Env steps between two steering-weight swaps into the running policy node (once updates began)."""
    graph: str = "process"
    """Where the graph's four nodes run: ``process``, together in one child process (the learner keeps its
    own core); ``processes``, one process per node, as the launch file starts them; ``inline``, in the
    learner's process (starts fastest, for tests; the nodes then share the interpreter with the updates)."""
    params_file: str | None = None
    """ROS 2 parameter file of the nodes (default: config/sim_graph.yaml)."""
    transition_timeout_s: float = 120.0
    """Wall seconds without a transition (while an episode runs) before the run stops with an error."""
    reset_retry_s: float = 3.0
    """Wall seconds after which an unanswered episode reset is sent again."""

    def __post_init__(self) -> None:
        if isinstance(self.swap_every, bool) or not isinstance(self.swap_every, int) or self.swap_every < 1:
            raise LpdsError(f"--swap-every must be a positive number of env steps, got {self.swap_every!r}")
        if self.graph not in GRAPH_MODES:
            raise LpdsError(f"--graph {self.graph!r}: choose one of {list(GRAPH_MODES)}")


def steering_onnx_bytes(agent, decoder_sha256: str, version: int) -> bytes:
    """The agent's Delta_theta as the steering ONNX graph (an export's steering.onnx), tagged for hot swap."""
    from lpds_ros.runtime import graphs
    from lpds_ros.runtime.export import OPSET, _to_onnx, as_shift_module
    from lpds_ros.runtime.hotswap import META_DECODER, META_UPDATES, META_VERSION
    from lpds_ros.runtime.manifest import steering_io
    from lpds_ros.runtime.specialize import SteeringGraph

    module = SteeringGraph(as_shift_module(agent), agent.horizon, agent.action_dim)
    example = torch.zeros(1, agent.obs_dim, device=agent.device)
    model = _to_onnx(module, (example,), steering_io(agent.obs_dim, agent.horizon, agent.action_dim), OPSET)
    graphs.set_metadata(model, {META_DECODER: str(decoder_sha256), META_VERSION: str(int(version)),
                                META_UPDATES: str(int(agent.num_updates)), "lpds_ros.graph": "steering"})
    return model.SerializeToString()


class RosLink:
    """The learner's node in the graph's context: transitions in, weights and resets out, events in."""

    def __init__(self, context, executor, topics, layout: list[tuple[str, int]]) -> None:
        import rclpy
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from std_msgs.msg import Float64MultiArray, Int64, String, UInt8MultiArray

        self.topics = t = topics
        self.layout = layout
        self.node = rclpy.create_node("lpds_learner", context=context)
        self.transitions: queue.Queue = queue.Queue()
        self.bad_messages = 0
        self.status: list[dict] = []
        self.events: list[dict] = []
        self._events_lock = threading.Lock()
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_weights = self.node.create_publisher(UInt8MultiArray, t.steering_weights, latched)
        self.pub_reset = self.node.create_publisher(Int64, t.reset_episode, 10)
        self.node.create_subscription(Float64MultiArray, t.transition, self._on_transition, 1000)
        self.node.create_subscription(String, t.steering_status, self._on_status, 100)
        self.node.create_subscription(String, t.episode, self._on_episode, 100)
        executor.add_node(self.node)

    def _on_transition(self, msg) -> None:
        from lpds_ros.nodes import convert

        try:
            self.transitions.put(convert.transition_from_msg(msg, self.layout))
        except LpdsError as exc:
            self.bad_messages += 1
            if self.bad_messages == 1:
                self.node.get_logger().error(str(exc))

    def _on_status(self, msg) -> None:
        try:
            self.status.append(json.loads(msg.data))
        except json.JSONDecodeError:
            pass

    def _on_episode(self, msg) -> None:
        try:
            event = json.loads(msg.data)
        except json.JSONDecodeError:
            return
        event["received"] = time.monotonic()
        with self._events_lock:
            self.events.append(event)

    def take_events(self) -> list[dict]:
        with self._events_lock:
            events, self.events = self.events, []
        return events

    def wait_connected(self, timeout_s: float = 60.0) -> None:
        """Until the policy node publishes transitions to us and listens to our weights, and the sim to resets."""
        t = self.topics
        deadline = time.monotonic() + timeout_s
        while (self.pub_weights.get_subscription_count() < 1 or self.pub_reset.get_subscription_count() < 1
               or self.node.count_publishers(_absolute(t.transition)) < 1):
            if time.monotonic() > deadline:
                raise LpdsError(f"the policy node did not connect to the learner within {timeout_s:.0f} s "
                                f"({t.transition} / {t.steering_weights}); is collect_transitions / hot_swap on?")
            time.sleep(0.05)


def _absolute(topic: str) -> str:
    return topic if topic.startswith("/") else "/" + topic


class RosTrainer(Trainer):
    """``Trainer`` whose transitions come from the ROS sim graph; see the module doc."""

    def __init__(self, config: FinetuneConfig, agent_config=None, decoder=None, options: RosOptions | None = None) -> None:
        if config.method not in ROS_METHODS:
            raise LpdsError(f"--via-ros runs {', '.join(ROS_METHODS)} (a latent shift the policy node can run), "
                            f"not {config.method!r}")
        if config.num_envs != 1:
            config = dataclasses.replace(config, num_envs=1)  # the graph is one env
        super().__init__(config, agent_config, decoder)
        self.options = options or RosOptions()
        if not self.decoder_sha256:
            raise LpdsError(f"{config.policy}: the decoder has no checkpoint SHA-256 (load it from a policy folder)")
        unknown = set(self.agent.extra_fields) - {"latent", "prior_latent", "prior_action"}
        if unknown:
            raise LpdsError(f"--via-ros cannot fill the replay fields {sorted(unknown)} of {config.method}")
        from lpds_ros.runtime.transitions import transition_layout

        a = self.agent
        self.layout = transition_layout(a.obs_dim, a.horizon, a.exec_horizon, a.action_dim)
        self.graph = None
        self.link: RosLink | None = None
        self.version = 0
        self.swapped_at_steps = -np.inf
        self.swapped_at_updates = 0
        self.ros_stats: dict[str, Any] = {"transitions": 0, "episodes": 0, "resets_sent": 0, "weights_sent": 0,
                                          "policy_lag_versions": [], "graph_wall_s": 0.0, "graph_env_steps": 0}
        self.timing["swap"] = 0.0
        self._episode_index = 0
        self._running_seed: int | None = None  # the episode the graph is running (reset sent, end not seen)
        self._reset_sent_at = 0.0
        self._started = False
        self._episode_acc: dict[int, dict[str, float]] = {}
        self._last_transition = time.monotonic()

    # ------------------------------------------------------------------------------- the graph
    def start_graph(self) -> None:
        import rclpy
        from rclpy.executors import MultiThreadedExecutor

        from lpds_ros.nodes.graph import SimGraph, load_graph_params, resolve_policy
        from lpds_ros.nodes.spinner import BackgroundSpinner
        from lpds_ros.nodes.topics import load_topics, package_file

        c, mode = self.config, self.options.graph
        params_file = Path(self.options.params_file) if self.options.params_file else package_file("config/sim_graph.yaml")
        params = load_graph_params(params_file)
        for node in ("sim_node", "perception_node", "policy_node"):
            params.setdefault(node, {})["task"] = c.task
        params["policy_node"].update(backend="onnx", model_dir=str(resolve_policy(c.policy)), mode="base", lead_steps=0,
                                     blend_steps=0, seed=int(c.seed), collect_transitions=True, hot_swap=True)
        # lockstep: the sim waits for every command (a loaded machine slows the run, never changes it)
        params["sim_node"].update(auto_start=False, auto_reset=False, lockstep_timeout_s=30.0)
        try:
            if mode == "process":
                self._child = _start_graph_host(params, params_file)
                self._context = rclpy.Context()
                rclpy.init(context=self._context)
                self._executor = MultiThreadedExecutor(num_threads=3, context=self._context)
                self._spinner = BackgroundSpinner(self._executor, "lpds_learner.spin").start()
                context, executor, topics = self._context, self._executor, load_topics(None)
            else:
                # inline: SimGraph shortens the GIL switch interval so the learner's torch ops keep moving
                self.graph = SimGraph(params, processes=mode == "processes", params_file=params_file)
                self.graph.start()
                context, executor, topics = self.graph.context, self.graph.executor, self.graph.topics
            self.link = RosLink(context, executor, topics, self.layout)
            if self.graph is not None:
                self.graph.nodes["lpds_learner"] = self.link.node  # SimGraph.stop destroys it after its executor
            self.link.wait_connected()
        except BaseException:
            self.stop_graph()
            raise

    def stop_graph(self) -> None:
        import rclpy

        if self.graph is not None:
            self.graph.stop()
            self.graph = None
        if getattr(self, "_executor", None) is not None:
            self._spinner.shutdown()
            if self.link is not None:
                self.link.node.destroy_node()
            if self._context.ok():
                rclpy.shutdown(context=self._context)
            self._executor = None
        child = getattr(self, "_child", None)
        if child is not None:
            _stop_graph_host(child)
            self._child = None

    def run(self, resume: bool = False) -> dict[str, Any]:
        if resume:
            raise LpdsError("--via-ros runs cannot be resumed (the graph's episodes are not in the checkpoint); start a new --out")
        self.start_graph()
        try:
            return super().run(resume=False)
        finally:
            self.stop_graph()

    # ------------------------------------------------------------------------------- episodes
    def _drive_episodes(self) -> None:
        """Send the next episode's reset when the last one ended (called only when the learner caught up)."""
        now = time.monotonic()
        for event in self.link.take_events():
            if event.get("seed") != self._running_seed:
                continue
            if event.get("event") == "start":
                self._started = True
            elif event.get("event") == "end":
                self.ros_stats["graph_wall_s"] += event["received"] - self._reset_sent_at
                self.ros_stats["graph_env_steps"] += int(event.get("steps", 0))
                self.ros_stats["episodes"] += 1
                self._running_seed = None
        if self._running_seed is None:
            self._running_seed = episode_seed(self.config.seed, 0, self._episode_index)
            self._episode_index += 1
            self._send_reset()
        elif not self._started and now - self._reset_sent_at > self.options.reset_retry_s:
            self._send_reset()  # lost before discovery completed; resetting with the same seed again is harmless

    def _send_reset(self) -> None:
        from std_msgs.msg import Int64

        self._started = False
        self._reset_sent_at = time.monotonic()
        self._last_transition = self._reset_sent_at
        self.link.pub_reset.publish(Int64(data=int(self._running_seed)))
        self.ros_stats["resets_sent"] += 1

    # ------------------------------------------------------------------------------- weights
    def _maybe_swap(self) -> None:
        a = self.agent
        if a.num_updates <= self.swapped_at_updates or self.env_steps - self.swapped_at_steps < self.options.swap_every:
            return
        from lpds_ros.nodes import convert

        start = time.perf_counter()
        self.version += 1
        self.link.pub_weights.publish(convert.weights_msg(steering_onnx_bytes(a, self.decoder_sha256, self.version)))
        self.swapped_at_steps, self.swapped_at_updates = self.env_steps, a.num_updates
        self.ros_stats["weights_sent"] += 1
        self.timing["swap"] += time.perf_counter() - start

    # ------------------------------------------------------------------------------- the hook
    def collect(self) -> tuple[dict[str, np.ndarray], list[dict[str, float]], int, int]:
        """The transitions the policy node sent since the last call (waits for at least one)."""
        self._maybe_swap()
        start = time.perf_counter()
        items: list[dict[str, Any]] = []
        budget = self.config.env_steps - self.env_steps
        while True:
            while budget > 0:
                try:
                    item = self.link.transitions.get_nowait()
                except queue.Empty:
                    break
                items.append(item)
                budget -= item["steps"]
            if items:
                break
            self._drive_episodes()  # nothing left to learn from: the next episode may start
            self._check_alive()
            try:  # block briefly for the next one
                item = self.link.transitions.get(timeout=0.05)
            except queue.Empty:
                continue
            items.append(item)
            budget -= item["steps"]
        self._last_transition = time.monotonic()
        self.timing["env"] += time.perf_counter() - start
        start = time.perf_counter()
        fields, finished, steps = self._replay_rows(items)
        self.timing["act"] += time.perf_counter() - start
        return fields, finished, steps, len(items)

    def _check_alive(self) -> None:
        children = list(getattr(self.graph, "_children", [])) + [c for c in [getattr(self, "_child", None)] if c is not None]
        for child in children:
            if child.poll() is not None:
                raise LpdsError(f"a graph process exited with status {child.returncode} (see its message above)")
        if self._running_seed is not None and time.monotonic() - self._last_transition > self.options.transition_timeout_s:
            raise LpdsError(f"no transition from the policy node for {self.options.transition_timeout_s:.0f} s "
                            f"(episode seed {self._running_seed}); is the graph running?")

    @torch.no_grad()
    def _replay_rows(self, items: list[dict[str, Any]]) -> tuple[dict[str, np.ndarray], list[dict[str, float]], int]:
        """Transitions -> the replay rows ``ChunkEnvs.step`` + ``LPDSAgent.act`` would have made."""
        a = self.agent
        n, h, e, d = len(items), a.horizon, a.exec_horizon, a.action_dim
        gamma = float(a.config.gamma)
        rewards = np.stack([t["rewards"] for t in items])  # [n, E], zero after k
        k = np.array([t["steps"] for t in items])
        fields: dict[str, np.ndarray] = {
            "obs": np.stack([t["obs"] for t in items]).astype(np.float32),
            "next_obs": np.stack([t["next_obs"] for t in items]).astype(np.float32),
            "reward": (rewards * gamma ** np.arange(e)).sum(1).astype(np.float32),
            "discount": (gamma ** k).astype(np.float32),
            "done": np.array([t["terminated"] for t in items], dtype=np.float32),
            "action": np.stack([t["action"] for t in items]).reshape(n, e, d).astype(np.float32),
        }
        extras = a.extra_fields
        if "latent" in extras:
            fields["latent"] = np.stack([t["latent"] for t in items]).reshape(n, h, d).astype(np.float32)
        if "prior_latent" in extras:  # the noise critic's prior pair, as LPDSAgent.act draws it beside a decision
            obs = torch.from_numpy(fields["obs"]).to(self.device)
            eps = a.randn(n, h, d, generator=self.act_generator)
            fields["prior_latent"] = eps.cpu().numpy()
            fields["prior_action"] = a.decode(obs, eps)[:, :e].cpu().numpy()
        finished = []
        for t in items:
            acc = self._episode_acc.setdefault(t["episode_seed"], {"return": 0.0, "success": 0.0, "length": 0})
            acc["return"] += float(t["rewards"][: t["steps"]].sum())
            acc["length"] += t["steps"]
            acc["success"] = max(acc["success"], float(t["success"]))
            if t["terminated"] or t["truncated"]:
                finished.append(self._episode_acc.pop(t["episode_seed"]))
            if t["steering_version"] >= 0:
                self.ros_stats["policy_lag_versions"].append(self.version - t["steering_version"])
        self.ros_stats["transitions"] += n
        return fields, finished, int(k.sum())

    # ------------------------------------------------------------------------------- result
    def result(self, elapsed: float, steps_this_session: int) -> dict[str, Any]:
        result = super().result(elapsed, steps_this_session)
        s = self.ros_stats
        lag = s["policy_lag_versions"]
        swaps = [m for m in (self.link.status if self.link else []) if m.get("event") == "swapped"]
        rejected = [m for m in (self.link.status if self.link else []) if m.get("event") == "rejected"]
        result["via_ros"] = {
            "graph": {"process": "the four nodes in one child process", "processes": "one process per node",
                      "inline": "the four nodes in the learner's process"}[self.options.graph],
            "swap_every": self.options.swap_every, "weights_sent": s["weights_sent"], "swaps_acknowledged": len(swaps),
            "swaps_rejected": len(rejected), "rejections": [m.get("reason") for m in rejected][:5],
            "transitions": s["transitions"], "bad_messages": self.link.bad_messages if self.link else 0,
            "episodes_completed": s["episodes"], "resets_sent": s["resets_sent"],
            "policy_lag_versions_mean": float(np.mean(lag)) if lag else None,
            "steered_transitions": len(lag),
            "graph_env_steps": s["graph_env_steps"], "graph_wall_s": s["graph_wall_s"],
            "graph_env_steps_per_s": s["graph_env_steps"] / s["graph_wall_s"] if s["graph_wall_s"] > 0 else None,
            "swap_s": self.timing["swap"],
        }
        return result


def train_via_ros(config: FinetuneConfig, agent_config=None, options: RosOptions | None = None, decoder=None) -> dict[str, Any]:
    """One fine-tuning run with its transitions gathered through the ROS sim graph; returns (and writes) its result."""
    return RosTrainer(config, agent_config, decoder, options).run()


def ros_environment() -> str:
    """This run's DDS domain: ``ROS_DOMAIN_ID`` if set, else one of 1..6 by process id, with discovery kept on
    this machine (two runs side by side must not exchange transitions)."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 6))
    return os.environ["ROS_DOMAIN_ID"]


def main(args: argparse.Namespace) -> int:
    """``lpds finetune --via-ros ...`` (the rest of the flags as for the gymnasium loop)."""
    from lpds_ros.config import load_config
    from lpds_ros.steering.loop import finetune_config_from_args
    from lpds_ros.steering.registry import get_method, method_config

    if args.policy is None:
        from lpds_ros.evaluate import shipped_model_dir

        args.policy = str(shipped_model_dir(args.task, args.backbone))
    if args.out is None:
        args.out = f"runs/{args.task}-{args.backbone}/{args.method}-ros/seed{args.seed}"
    if args.resume:
        raise LpdsError("--via-ros runs cannot be resumed (the graph's episodes are not in the checkpoint); start a new --out")
    if getattr(args, "num_envs", None) not in (None, 1):
        raise LpdsError("--via-ros runs one env (the sim graph); drop --num-envs")
    config = finetune_config_from_args(args)
    config = dataclasses.replace(config, num_envs=1)
    agent_config = None
    if args.agent_config:
        agent_config = load_config(args.agent_config, get_method(config.method).config_class)
    agent_config = method_config(config.method, agent_config, config.task, config.delta)
    options = RosOptions(swap_every=args.swap_every if getattr(args, "swap_every", None) else RosOptions.swap_every,
                         graph=getattr(args, "graph", None) or RosOptions.graph)
    domain = ros_environment()
    if config.progress:
        print(f"lpds finetune --via-ros: sim graph on ROS_DOMAIN_ID {domain} "
              f"(graph: {options.graph})", file=sys.stderr, flush=True)
    result = train_via_ros(config, agent_config, options)
    final, ros = result["final"], result["via_ros"]
    print(f"{config.method} on {config.task} via ROS (seed {config.seed}), {result['env_steps']} env steps: "
          f"success {final['success']:.1%}, mean-latent success {final['success_mean_latent']:.1%}, deviation "
          f"{final['deviation']:.4g}; {result['timing']['env_steps_per_s_this_session'] or 0:.0f} env steps/s overall, "
          f"{ros['graph_env_steps_per_s'] or 0:.0f} in the graph; {ros['weights_sent']} weight swaps "
          f"({ros['swaps_acknowledged']} acknowledged); wrote {Path(config.out) / RESULT_FILE}")
    return 0


# ------------------------------------------------------------------------------------ the graph's own process
def _start_graph_host(params: dict, params_file: Path, timeout_s: float = 120.0):
    """A child process running the four nodes (``SimGraph`` in one process); returns once it is connected."""
    import subprocess

    child = subprocess.Popen([sys.executable, "-m", "lpds_ros.steering.ros_learner", "--host-graph", json.dumps(params),
                              str(params_file)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=dict(os.environ), text=True)
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(child.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    if not line or line[0].strip() != "ready":
        _stop_graph_host(child)
        raise LpdsError(f"the sim graph process did not start within {timeout_s:.0f} s"
                        + (f" (exit status {child.returncode}; see its message above)" if child.returncode else ""))
    return child


def _stop_graph_host(child) -> None:
    import subprocess

    if child.poll() is None:
        try:
            child.stdin.close()  # end of input: the host stops its graph and exits
        except OSError:
            pass
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _host_graph(params_json: str, params_file: str) -> int:
    """The child's side: start the graph, say "ready", run until stdin closes (the learner ended) or SIGTERM."""
    import signal

    from lpds_ros.nodes.graph import SimGraph

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    graph = SimGraph(json.loads(params_json), processes=False, params_file=Path(params_file))
    try:
        graph.start()
        print("ready", flush=True)
        sys.stdin.read()
    except LpdsError as exc:
        print(f"lpds finetune --via-ros: sim graph: error: {exc}", file=sys.stderr)
        return 2
    finally:
        graph.stop()
    return 0


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--host-graph":
    raise SystemExit(_host_graph(sys.argv[2], sys.argv[3]))
