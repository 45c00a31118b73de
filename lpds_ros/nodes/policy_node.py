"""policy_node: observation in, the next absolute TCP target out, once per control step.

Subscribes  /lpds/observation (labelled vector), /lpds/episode (episode start/end events)
Publishes   /lpds/action_raw (labelled vector: target x y z qx qy qz qw, gripper 0/1, raw action), stamped with
            the observation's stamp so the safety filter's watchdog judges the target by its data's age

The policy is an ``lpds export`` folder run by onnxruntime (``backend: onnx``; ``mode`` base: w = eps,
steered: w = eps + Delta(s), auto: steered when the folder has steering.onnx), or the task's scripted
demonstrator (``backend: scripted``; for smoke runs without a trained policy).  Chunks are planned ahead on a
worker thread while the current one executes (``lpds_ros.runtime.chunking.ChunkExecutor``: ``lead_steps``,
time-aligned seam, optional crossfade ``blend_steps``); each step's task action becomes an absolute target
with the task's own rule (``DeltaTargetIntegrator``).  A chunk that is late at the seam is waited for
(``wait_for_chunk``, the lockstep sim) or the step is held and the actions whose time passed are skipped;
an episode's first chunk is always waited for (up to ``chunk_timeout_s``), the arm holding still meanwhile.
Per episode the noise comes from ``numpy.random.default_rng([seed, episode_seed])``.

Fine-tuning through the graph (``lpds finetune --via-ros``, docs/ros.md):

* ``collect_transitions``: each decision (planned at the seam, ``lead_steps`` 0) becomes a chunk transition
  -- observation, eps, latent w, executed actions, the sim's per-step rewards (``step_report``), the next
  observation, terminated / truncated -- published on ``transition`` (``lpds_ros.runtime.transitions``).
* ``hot_swap``: new steering weights (an ONNX steering graph) arrive on ``steering_weights`` and replace the
  running ones between two decisions (``lpds_ros.runtime.hotswap.SteeringSlot``: the decoder's SHA-256 must
  match, else they are rejected).  The swap is prepared in its own callback group, so control steps go on
  meanwhile; each outcome is reported on ``steering_status`` (JSON).  The decoder is never changed.

With either flag the node decodes w = eps + Delta(s) itself (the slot's Delta; 0 until weights arrive, or
the export's own steering.onnx in steered/auto mode) through the export's decoder graph.
"""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String, UInt8MultiArray

from lpds_ros.config import ConfigError
from lpds_ros.errors import LpdsError
from lpds_ros.nodes import convert
from lpds_ros.nodes.params import (
    check_choice,
    check_positive,
    declare_params,
    param,
    run_node,
)
from lpds_ros.nodes.topics import load_topics
from lpds_ros.runtime.chunking import ChunkExecutor, DeltaTargetIntegrator


@dataclass(frozen=True)
class PolicyParams:
    topics_file: str = param("", "names YAML (empty: the package's config/topics.yaml)")
    backend: str = param("onnx", "onnx (an `lpds export` folder) or scripted (the task's demonstrator)")
    model_dir: str = param("", "onnx: the export folder (manifest.json, decoder.onnx[, steering.onnx])")
    mode: str = param("auto", "onnx: base (w = eps), steered (w = eps + Delta(s)) or auto")
    task: str = param("franka-lift", "task (observation layout, the scripted demonstrator)")
    seed: int = param(0, "noise seed; episode e draws from default_rng([seed, episode seed])")
    lead_steps: int = param(1, "plan the next chunk this many steps before the seam (0: at the seam, waiting)")
    blend_steps: int = param(0, "crossfade this many actions at the seam (0: switch)")
    wait_for_chunk: bool = param(True, "a late chunk is waited for (lockstep sim); false: hold that step")
    chunk_timeout_s: float = param(2.0, "wall seconds to wait for a late chunk before holding")
    action_scale_m: float = param(0.05, "metres the target moves per step at |action| = 1 (the task's)")
    max_lead_m: float = param(0.02, "the target stays within this (per axis) of the measured TCP (the task's)")
    target_low: list = param([0.25, -0.35, 0.01], "the task's target box, lower corner (base frame)")
    target_high: list = param([0.75, 0.35, 0.40], "the task's target box, upper corner")
    providers: str = param("cpu", "onnxruntime providers: cpu or auto (CUDA/TensorRT when present)")
    threads: int = param(1, "onnxruntime intra-op threads")
    collect_transitions: bool = param(False, "publish one chunk transition per decision on `transition` (fine-tuning; needs lead_steps 0, blend_steps 0)")
    hot_swap: bool = param(False, "take new steering weights from `steering_weights` while running (fine-tuning)")

    def __post_init__(self) -> None:
        check_choice(self, "backend", ("onnx", "scripted"))
        check_choice(self, "mode", ("auto", "base", "steered"))
        check_positive(self, "lead_steps", allow_zero=True)
        check_positive(self, "blend_steps", allow_zero=True)
        check_positive(self, "chunk_timeout_s")
        if self.backend == "onnx" and not self.model_dir:
            raise ConfigError("PolicyParams.model_dir: the onnx backend needs an `lpds export` folder")
        if (self.collect_transitions or self.hot_swap) and self.backend != "onnx":
            raise ConfigError("PolicyParams: collect_transitions / hot_swap need the onnx backend")
        if self.collect_transitions and (self.lead_steps != 0 or self.blend_steps != 0):
            raise ConfigError("PolicyParams.collect_transitions needs lead_steps 0 and blend_steps 0 "
                              "(a transition starts at the state its chunk was planned from, as in the gymnasium loop)")


class PolicyNode(Node):
    def __init__(self, **kwargs):
        super().__init__("policy_node", **kwargs)
        from lpds_ros.envs import env_class

        self.params = p = declare_params(self, PolicyParams)
        self.topics = t = load_topics(p.topics_file or None)
        layout = env_class(p.task).layout()
        if p.backend == "onnx":
            from lpds_ros.runtime.chunking import OnnxChunkPolicy

            self.policy = OnnxChunkPolicy(p.model_dir, mode=p.mode, providers=p.providers, threads=p.threads)
        else:
            from lpds_ros.runtime.chunking import ScriptedChunkPolicy

            self.policy = ScriptedChunkPolicy(p.task, layout)
        if self.policy.obs_dim != sum(layout.values()):
            raise ConfigError(f"policy_node: the policy reads {self.policy.obs_dim} observation values, "
                              f"task {p.task} has {sum(layout.values())}")
        lead = min(p.lead_steps, self.policy.exec_horizon - 1)
        if lead != p.lead_steps:
            self.get_logger().info(f"lead_steps {p.lead_steps} -> {lead} (exec_horizon {self.policy.exec_horizon})")
        self.executor_core = ChunkExecutor(self.policy.horizon, self.policy.exec_horizon, lead, p.blend_steps)
        self.integrator = DeltaTargetIntegrator(p.action_scale_m, p.max_lead_m, p.target_low, p.target_high)
        self.layout = layout
        self._eef = self._slice(layout, "robot0_eef_pos")
        self._checked_labels = False
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy_node.plan")
        self._future: Future | None = None
        self._rng = np.random.default_rng([p.seed])
        self._episode_start: float | None = None  # stamp of the announced episode start
        self._episode_seed = 0
        self._episode_end = np.inf
        self._active_start: float | None = None
        self._last_stamp = -np.inf
        # an observation stamped after the episode's end, kept in case it is the next episode's first state
        # arriving before that episode's start event (two topics: DDS does not order them)
        self._early: JointState | None = None
        #: timing probes (wall seconds): observation callback -> action_raw publish, and chunk inference
        self.cycle_s: deque[float] = deque(maxlen=100_000)
        self.inference_s: deque[float] = deque(maxlen=100_000)
        self.publish_wall: dict[float, float] = {}
        self.holds = 0
        self.steps = 0

        self.pub = self.create_publisher(JointState, t.action_raw, 10)
        self.create_subscription(JointState, t.observation, self._on_observation, 10)
        self.create_subscription(String, t.episode, self._on_episode, 10)
        self.slot = None  # fine-tuning: the swappable steering (Delta = 0 until weights arrive)
        self.recorder = None
        self.swap_log: list[dict] = []  # {"version", "updates", "stamp": the last observation's stamp at the swap}
        if p.collect_transitions or p.hot_swap:
            self._setup_finetuning(p, t)
        self.get_logger().info(f"{p.backend} policy ({getattr(self.policy, 'mode', '')}), H={self.policy.horizon}, "
                               f"E={self.policy.exec_horizon}, lead {lead}, blend {p.blend_steps}")

    def _setup_finetuning(self, p: PolicyParams, t) -> None:
        from pathlib import Path

        from lpds_ros.runtime.hotswap import SteeringSlot
        from lpds_ros.runtime.transitions import TransitionRecorder, transition_layout

        onnx_policy = self.policy.policy
        m = onnx_policy.manifest
        self.slot = SteeringSlot(m.obs_dim, m.horizon, m.action_dim, m.decoder_checkpoint_sha256, threads=p.threads)
        if onnx_policy.steered:  # the export's own steering (its manifest ties it to the decoder) until weights come
            self.slot.load((Path(p.model_dir) / m.steering.file).read_bytes(), trusted_version=0)
        if p.collect_transitions:
            self.recorder = TransitionRecorder(m.exec_horizon)
            self.transition_layout = transition_layout(m.obs_dim, m.horizon, m.exec_horizon, m.action_dim)
            self.pub_transition = self.create_publisher(Float64MultiArray, t.transition, 100)
            self.create_subscription(JointState, t.step_report, self._on_step_report, 100)
        if p.hot_swap:
            latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
            self.pub_status = self.create_publisher(String, t.steering_status, 10)
            self.create_subscription(UInt8MultiArray, t.steering_weights, self._on_weights, latched,
                                     callback_group=MutuallyExclusiveCallbackGroup())

    # ------------------------------------------------------------------ fine-tuning
    def _on_weights(self, msg: UInt8MultiArray) -> None:
        """New steering weights: checked and prepared here (own callback group), swapped in by one assignment."""
        data = msg.data.tobytes() if hasattr(msg.data, "tobytes") else bytes(msg.data)
        try:
            steering = self.slot.load(data)
        except LpdsError as exc:
            self.get_logger().error(f"steering weights rejected: {exc}")
            self.pub_status.publish(String(data=json.dumps({"event": "rejected", "reason": str(exc),
                                                            "stamp": self._last_stamp if np.isfinite(self._last_stamp) else None})))
            return
        record = {"event": "swapped", "version": steering.version, "updates": steering.updates,
                  "stamp": self._last_stamp if np.isfinite(self._last_stamp) else None, "swaps": self.slot.swaps}
        self.swap_log.append(record)
        self.pub_status.publish(String(data=json.dumps(record)))

    def _on_step_report(self, msg: JointState) -> None:
        report = convert.step_report_from_msg(msg)
        if report is not None:
            self._publish_transitions(self.recorder.report(report["stamp"], report["step"], report["reward"],
                                                           report["success"], report["terminated"], report["truncated"]))

    def _publish_transitions(self, transitions: list) -> None:
        for transition in transitions:
            self.pub_transition.publish(convert.transition_msg(transition, self.transition_layout))

    def _steered_chunk(self, obs: np.ndarray, eps: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """(chunk, latent w = eps + Delta(s), steering version or -1) with the slot's current steering."""
        steering = self.slot.current  # read once: this decision uses one set of weights
        latent = eps + self.slot.shift(obs, steering) if steering is not None else eps
        chunk = self.policy.policy.decode(obs, latent.astype(np.float32))
        return chunk, latent, steering.version if steering is not None else -1

    @staticmethod
    def _slice(layout: dict, key: str) -> slice:
        start = 0
        for k, size in layout.items():
            if k == key:
                return slice(start, start + size)
            start += size
        raise ConfigError(f"policy_node: the observation layout has no {key!r} (needed for the target)")

    # ------------------------------------------------------------------ episodes
    def _on_episode(self, msg: String) -> None:
        event = convert.episode_event_from_msg(msg.data)
        if event is None:
            return
        early = None
        with self._lock:
            if event["event"] == "start":
                self._episode_start = event["stamp"]
                self._episode_seed = event["seed"]
                self._episode_end = np.inf
                early, self._early = self._early, None
            else:
                self._episode_end = event["stamp"]
        if early is not None:
            # dropped again if it predates this episode; its second pass through the recorder changes nothing
            self._on_observation(early)

    def _begin_episode(self) -> None:
        """First observation of an announced episode: forget chunks, targets; fresh noise stream."""
        self.executor_core.reset()
        self.integrator.reset()
        self.policy.reset()
        self._rng = np.random.default_rng([self.params.seed, self._episode_seed])
        self._active_start = self._episode_start
        self._last_stamp = -np.inf
        self.holds = 0
        if self.recorder is not None:
            self.recorder.start_episode(self._episode_seed)

    # ------------------------------------------------------------------ the control step
    def _on_observation(self, msg: JointState) -> None:
        t0 = time.perf_counter()
        labels, values, stamp = convert.vector_from_msg(msg)
        if not self._checked_labels:
            if convert.labels_to_layout(labels) != self.layout:
                self.get_logger().error(f"observation layout {convert.labels_to_layout(labels)} is not the task's {self.layout}",
                                        throttle_duration_sec=5.0)
                return
            self._checked_labels = True
        obs = values.astype(np.float32)
        if self.recorder is not None:  # an episode's final state closes its last transition (not a control step)
            self._publish_transitions(self.recorder.observation(stamp, obs))
        with self._lock:
            if self._episode_start is not None and self._episode_start != self._active_start:
                if stamp < self._episode_start - 1e-9:
                    return  # from the previous episode
                self._begin_episode()
            if stamp >= self._episode_end:
                self._early = msg
                return  # after the episode ended (or the next one's, before its start event)
            if stamp <= self._last_stamp:
                return  # old or repeated
            self._last_stamp = stamp
            offset = self.executor_core.plan_request()
            if offset is not None:
                eps = self._rng.standard_normal((self.policy.horizon, self.policy.action_dim)).astype(np.float32)
                self._future = self._pool.submit(self._plan, obs.copy(), eps, offset, self.executor_core.generation, stamp)
            need = self.executor_core.needs_chunk()
            future = self._future
        if need and future is not None and (self.params.wait_for_chunk or self.executor_core.chunks == 0):
            try:
                future.result(timeout=self.params.chunk_timeout_s)
            except Exception as exc:  # TimeoutError or an inference error: hold this step
                self.get_logger().error(f"chunk not ready: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)
        with self._lock:
            action = self.executor_core.pop()
            if action is None:
                self.holds += 1
                return
            target, quat, gripper = self.integrator.step(action, obs[self._eef])
        self.pub.publish(convert.action_raw_msg(target, quat, gripper, action, stamp))
        now = time.perf_counter()
        self.cycle_s.append(now - t0)
        self.publish_wall[round(stamp, 6)] = now
        if len(self.publish_wall) > 4096:
            self.publish_wall.pop(next(iter(self.publish_wall)))
        self.steps += 1

    def _plan(self, obs: np.ndarray, eps: np.ndarray, offset: int, generation: int, stamp: float) -> None:
        t0 = time.perf_counter()
        if self.slot is None:
            chunk = self.policy.chunk(obs, eps)
        else:
            chunk, latent, version = self._steered_chunk(obs, eps)
        self.inference_s.append(time.perf_counter() - t0)
        done = []
        with self._lock:
            if self.recorder is not None and generation == self.executor_core.generation:
                # recorded before the chunk is delivered, so before its first action can reach the sim
                done = self.recorder.decision(stamp, obs, eps, latent, chunk[: self.policy.exec_horizon], version)
            self.executor_core.deliver(chunk, offset, generation)
        if done:
            self._publish_transitions(done)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def main(args=None) -> int:
    return run_node(PolicyNode, "policy_node", args)


if __name__ == "__main__":
    raise SystemExit(main())
