"""Chunked policies at control rate: which action runs at each step, when the next chunk is planned, and
how a task action becomes the absolute TCP target the arm follows.  Pure numpy; ``nodes/policy_node``
wraps it, and ``benchmarks/ros_closed_loop.py`` runs the same code in the plain gymnasium loop.

**Planning ahead (the arm never waits on inference).**  A chunk has H predicted steps of which E are
executed.  With ``lead_steps`` L >= 1 the next chunk is requested when L actions of the current window are
left, from that step's observation, and computed while those L actions execute.  Its index 0 belongs to
the step it was planned at, so the window that runs after the seam is ``chunk[L : L + E]`` (time-aligned,
as in ACT/real-time chunking): the step planned for the seam runs at the seam.  L + E <= H keeps the window
E long (H = 8, E = 4, L = 1 by default); otherwise it shortens to H - L.  L < E.  If a chunk is still not there at
the seam ("late"), the node either waits for it (lockstep sim: sim time stands still meanwhile) or holds
the arm for that step and later skips the actions whose time has passed.  L = 0 plans at the seam from
the seam's observation, exactly like the gymnasium evaluator, and then the step waits for the inference.

**The seam.**  No blending by default: the new window replaces the old chunk at the seam (the policies are
trained and evaluated that way).  ``blend_steps`` B > 0 crossfades the first B actions of the new window
with the old chunk's own predictions for those steps (weights (j + 1) / (B + 1) on the new one), which
smooths a jump between two samples of a multimodal policy; the gripper entry is blended too and only
thresholded afterwards.

**Task actions -> targets.**  ``DeltaTargetIntegrator`` is ``FrankaTask.step``'s target rule: a persistent
target moves by ``action[:3] * action_scale``, stays within ``max_lead`` per axis of the measured TCP and
inside the task box; ``action[3] > 0`` closes the gripper.  The orientation is the fixed top-down one.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from lpds_ros.errors import LpdsError
from lpds_ros.frames import DOWN_QUAT_XYZW


class ChunkPolicy(Protocol):
    """What the policy node runs: obs [obs_dim] and prior noise eps [H, d] -> chunk [H, d] of task actions."""

    horizon: int
    exec_horizon: int
    action_dim: int
    obs_dim: int

    def chunk(self, obs: np.ndarray, eps: np.ndarray) -> np.ndarray: ...


@dataclass
class _Plan:
    chunk: np.ndarray  # (H, d)
    offset: int  # index of the chunk that belongs to the seam step
    generation: int


class ChunkExecutor:
    """The action to execute at each control step, and when to request the next chunk (see module doc).

    Per control step, in this order::

        offset = ex.plan_request()      # not None: start planning a chunk from this step's observation
        ... ex.deliver(chunk, offset, generation) when it is ready (any thread; the caller locks) ...
        if ex.needs_chunk(): wait for the delivery (lockstep) or accept a hold
        action = ex.pop()               # None: hold this step (no chunk yet)
    """

    def __init__(self, horizon: int, exec_horizon: int, lead_steps: int = 1, blend_steps: int = 0):
        if not 1 <= exec_horizon <= horizon:
            raise LpdsError(f"exec_horizon {exec_horizon} must be in [1, horizon={horizon}]")
        if not 0 <= lead_steps < exec_horizon and not lead_steps == 0:
            raise LpdsError(f"lead_steps {lead_steps} must be in [0, exec_horizon - 1 = {exec_horizon - 1}]")
        if blend_steps < 0:
            raise LpdsError(f"blend_steps must be >= 0, got {blend_steps}")
        self.horizon, self.exec_horizon = horizon, exec_horizon
        self.lead_steps, self.blend_steps = lead_steps, blend_steps
        self.generation = 0
        self.reset()

    def reset(self) -> None:
        """New episode: forget every chunk; deliveries requested before this are ignored."""
        self.generation += 1
        self._queue: deque[np.ndarray] = deque()
        self._tail = np.zeros((0, 0))
        self._plan: _Plan | None = None
        self._requested = False
        self._late = 0
        self.late_steps = 0  # steps held because a chunk was late (this episode)
        self.chunks = 0  # chunks started (this episode)

    def plan_request(self) -> int | None:
        """The offset of a chunk to plan from this step's observation, or None."""
        if self._requested or self._plan is not None:
            return None
        left = len(self._queue)
        if left == 0 or left == self.lead_steps:
            self._requested = True
            return 0 if left == 0 else self.lead_steps
        return None

    def deliver(self, chunk: np.ndarray, offset: int, generation: int) -> bool:
        """A planned chunk is ready.  False (dropped) if it was requested before the last ``reset``."""
        if generation != self.generation:
            return False
        chunk = np.asarray(chunk, dtype=np.float64)
        if chunk.ndim != 2 or chunk.shape[0] != self.horizon:
            raise LpdsError(f"planned chunk has shape {chunk.shape}, expected ({self.horizon}, d)")
        self._plan = _Plan(chunk, offset, generation)
        self._requested = False
        return True

    def needs_chunk(self) -> bool:
        """True when this step has no action unless a requested chunk arrives first."""
        return not self._queue and self._plan is None

    def pop(self) -> np.ndarray | None:
        """This step's action, or None (hold: no chunk yet, or the planned one is late)."""
        if not self._queue and self._plan is not None:
            self._start(self._plan)
            self._plan = None
        if not self._queue:
            if self.chunks > 0 or self._requested:
                self._late += 1
                self.late_steps += 1
            return None
        return self._queue.popleft()

    def _start(self, plan: _Plan) -> None:
        begin = plan.offset + (self._late if self.chunks > 0 else 0)
        end = min(plan.offset + self.exec_horizon, self.horizon)
        window = plan.chunk[begin:end].copy()
        blend = min(self.blend_steps, len(window), len(self._tail) - self._late if self._late < len(self._tail) else 0)
        for j in range(blend):
            w = (j + 1) / (self.blend_steps + 1)
            window[j] = w * window[j] + (1.0 - w) * self._tail[self._late + j]
        self._tail = plan.chunk[end:]
        self._late = 0
        self.chunks += 1
        self._queue = deque(window)
        if not self._queue:  # everything in it was already late: ask again
            self._requested = False


class DeltaTargetIntegrator:
    """``FrankaTask.step``'s rule from a task action to the absolute TCP target and gripper command."""

    def __init__(self, action_scale: float = 0.05, max_lead: float = 0.02,
                 low=(0.25, -0.35, 0.01), high=(0.75, 0.35, 0.40), orientation_xyzw=DOWN_QUAT_XYZW):
        self.action_scale, self.max_lead = float(action_scale), float(max_lead)
        self.low, self.high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
        if self.low.shape != (3,) or self.high.shape != (3,) or not (self.low < self.high).all():
            raise LpdsError(f"target box low {self.low.tolist()} must be below high {self.high.tolist()} (3 values each)")
        self.orientation = np.asarray(orientation_xyzw, dtype=np.float64)
        self.target: np.ndarray | None = None

    def reset(self) -> None:
        """New episode: the next step starts from the measured TCP (the env's reset does the same)."""
        self.target = None

    def step(self, action: np.ndarray, tcp_position: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """(target position, orientation x y z w, gripper 0 open / 1 closed) after ``action`` [4]."""
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        tcp = np.asarray(tcp_position, dtype=np.float64)
        if self.target is None:
            self.target = tcp.copy()
        target = np.clip(self.target + a[:3] * self.action_scale, tcp - self.max_lead, tcp + self.max_lead)
        self.target = np.clip(target, self.low, self.high)
        return self.target.copy(), self.orientation.copy(), 1.0 if a[3] > 0.0 else 0.0


class OnnxChunkPolicy:
    """``OnnxPolicy`` (an ``lpds export`` folder) as a ``ChunkPolicy``."""

    def __init__(self, directory, mode: str = "auto", providers: str = "cpu", threads: int = 1):
        from lpds_ros.runtime.session import OnnxPolicy

        self.policy = OnnxPolicy(directory, mode=mode, providers=providers, intra_op_threads=threads)
        self.horizon, self.exec_horizon = self.policy.horizon, self.policy.exec_horizon
        self.action_dim, self.obs_dim = self.policy.action_dim, self.policy.obs_dim
        self.obs_keys = self.policy.manifest.obs_keys
        self.mode = self.policy.mode

    def reset(self) -> None:
        pass

    def chunk(self, obs: np.ndarray, eps: np.ndarray) -> np.ndarray:
        return self.policy.policy_chunk(np.asarray(obs, dtype=np.float32), np.asarray(eps, dtype=np.float32))


class ScriptedChunkPolicy:
    """The task's scripted demonstrator (``lpds_ros.data.scripted``) as a one-step ``ChunkPolicy``:
    H = E = 1, the noise is ignored.  For tests and sim smoke runs without a trained policy."""

    horizon = 1
    exec_horizon = 1
    action_dim = 4
    mode = "scripted"

    def __init__(self, task: str, obs_layout: dict[str, int], noise: float = 0.0, seed: int | None = None):
        from lpds_ros.data.scripted import make_demonstrator

        self.demo = make_demonstrator(task, noise=noise, seed=seed, obs_layout=obs_layout)
        self.obs_dim = sum(obs_layout.values())
        self.obs_keys = list(obs_layout)

    def reset(self) -> None:
        self.demo.reset()

    def chunk(self, obs: np.ndarray, eps: np.ndarray) -> np.ndarray:
        return self.demo.act(np.asarray(obs, dtype=np.float32))[None].astype(np.float64)
