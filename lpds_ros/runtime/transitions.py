"""Chunk transitions gathered by the policy node for a learner (``lpds finetune --via-ros``).  Pure numpy.

The policy node makes one decision per chunk (planned at the seam, ``lead_steps`` 0): it draws eps, runs the
latent w = eps + Delta(s) through the frozen decoder and executes the chunk's first H_exec actions.  The sim
reports every control step (``step_report``: reward, success, terminated, truncated, the episode's step
index, stamped with the state after the step).  ``TransitionRecorder`` joins the three streams by sim time:

    decision at stamp t0 (obs, eps, latent, executed actions)
    + the step reports stamped in (t0, t1]              (k of them, k = H_exec unless the episode ended)
    + the observation stamped t1                         (the next decision's, or the episode's final state)
    = one transition: (obs, eps, latent, action, rewards r_0..r_{k-1}, k, terminated, truncated, next_obs)

Rewards travel undiscounted, one per executed step: the learner applies its own gamma (r = sum gamma^i r_i,
discount gamma^k), exactly as the gymnasium loop's ``ChunkEnvs.step`` does, so gamma lives in one place.  A
transition is only emitted when it is whole: its step reports consecutive, the last one stamped at the next
observation, k = H_exec or the episode ended.  Anything else (a held step, a lost message, an episode
reset in the middle of a chunk) is dropped and counted by reason, never patched up.  The three streams
arrive on different topics, so they may arrive in any order; the recorder waits for the missing part.

**Wire layout** (``std_msgs/Float64MultiArray``, ``encode`` / ``decode``): ``data`` is the fields below,
concatenated in this order; ``layout.dim[i]`` describes field i, with ``label`` its name, ``size`` its
length and ``stride`` its offset in ``data`` (a table of fields rather than nested dimensions), so the
receiver checks names and sizes instead of trusting an implicit order.  O = obs_dim, H = horizon,
E = exec_horizon, d = action_dim:

    obs O | next_obs O | eps H*d | latent H*d | action E*d | rewards E (zero after k) | steps 1 (k) |
    terminated 1 | truncated 1 | success 1 | stamp 1 (sim s) | episode_seed 1 | steering_version 1 (-1: none)
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lpds_ros.errors import LpdsError

_TIME_EPS = 1e-6



def transition_layout(obs_dim: int, horizon: int, exec_horizon: int, action_dim: int) -> list[tuple[str, int]]:
    """[(field, length)] of the wire layout, in order."""
    return [("obs", obs_dim), ("next_obs", obs_dim), ("eps", horizon * action_dim), ("latent", horizon * action_dim),
            ("action", exec_horizon * action_dim), ("rewards", exec_horizon), ("steps", 1), ("terminated", 1),
            ("truncated", 1), ("success", 1), ("stamp", 1), ("episode_seed", 1), ("steering_version", 1)]


_SCALARS = ("steps", "terminated", "truncated", "success", "stamp", "episode_seed", "steering_version")


def encode(transition: dict[str, Any], layout: list[tuple[str, int]]) -> tuple[list[tuple[str, int, int]], np.ndarray]:
    """-> ([(label, size, offset)], data float64) of one transition (a dict with every field of ``layout``)."""
    parts, table, offset = [], [], 0
    for name, size in layout:
        value = np.asarray(transition[name], dtype=np.float64).reshape(-1)
        if value.size != size:
            raise ValueError(f"transition field {name!r} has {value.size} values, the layout says {size}")
        parts.append(value)
        table.append((name, size, offset))
        offset += size
    return table, np.concatenate(parts)


def decode(table: list[tuple[str, int, int]], data: np.ndarray, layout: list[tuple[str, int]]) -> dict[str, Any]:
    """The inverse of ``encode``; raises ``LpdsError`` (one line) when the message's fields are not ``layout``'s."""
    got = [(label, size) for label, size, _ in table]
    if got != list(layout):
        raise LpdsError(f"transition message has fields {got}, expected {list(layout)} "
                        "(policy and learner disagree on the policy's shapes)")
    data = np.asarray(data, dtype=np.float64)
    total = sum(size for _, size in layout)
    if data.size != total or any(offset != sum(s for _, s in layout[:i]) for i, (_, _, offset) in enumerate(table)):
        raise LpdsError(f"transition message has {data.size} values or bad offsets, expected {total}")
    out: dict[str, Any] = {}
    for label, size, offset in table:
        value = data[offset: offset + size]
        out[label] = float(value[0]) if label in _SCALARS else value.copy()
    for key in ("steps", "episode_seed", "steering_version"):
        out[key] = int(round(out[key]))
    for key in ("terminated", "truncated", "success"):
        out[key] = bool(out[key])
    return out


@dataclass
class _Report:
    stamp: float
    step: int
    reward: float
    success: bool
    terminated: bool
    truncated: bool


@dataclass
class _Pending:
    stamp: float
    obs: np.ndarray
    eps: np.ndarray
    latent: np.ndarray
    action: np.ndarray
    version: int
    episode_seed: int
    reports: list[_Report] = field(default_factory=list)
    end_stamp: float | None = None  # stamp of the report that ended the episode
    next_stamp: float | None = None
    next_obs: np.ndarray | None = None


class TransitionRecorder:
    """Joins decisions, step reports and observations into whole chunk transitions (see module doc).

    Thread-safe: the policy node calls it from its observation and step-report callbacks and its planning
    worker.  Each call returns the transitions it completed (dicts with the wire layout's fields).
    ``emitted`` counts them; ``dropped`` counts the others by reason.
    """

    def __init__(self, exec_horizon: int, max_closing: int = 4) -> None:
        self.exec_horizon = int(exec_horizon)
        self.max_closing = int(max_closing)
        self._lock = threading.Lock()
        self._open: _Pending | None = None  # the chunk now executing
        self._closing: list[_Pending] = []  # next observation known, step reports still missing
        self._last_obs: tuple[float, np.ndarray] | None = None
        self.episode_seed = 0
        self.emitted = 0
        self.dropped: dict[str, int] = {}

    # ------------------------------------------------------------------ events
    def start_episode(self, seed: int) -> None:
        """A new episode: whatever is still open belongs to the last one."""
        with self._lock:
            if self._open is not None and (self._open.reports or self._open.end_stamp is not None):
                self._drop("episode ended without its final observation" if self._open.end_stamp is not None
                           else "episode reset in the middle of a chunk")
            self._open = None
            for _ in self._closing:
                self._drop("step reports missing at the episode's end")
            self._closing = []
            self.episode_seed = int(seed)

    def decision(self, stamp: float, obs, eps, latent, action, version: int) -> list[dict[str, Any]]:
        """A chunk planned from the observation stamped ``stamp`` (the seam); its first H_exec actions run."""
        obs = np.asarray(obs, dtype=np.float64).copy()
        with self._lock:
            if self._open is not None:
                if self._open.end_stamp is not None and abs(self._open.end_stamp - stamp) > _TIME_EPS:
                    self._drop("a decision after the episode ended")  # the final observation never came
                else:
                    self._close(self._open, stamp, obs)
            self._open = _Pending(float(stamp), obs, np.asarray(eps, np.float64).copy(),
                                  np.asarray(latent, np.float64).copy(),
                                  np.asarray(action, np.float64)[: self.exec_horizon].copy(), int(version),
                                  self.episode_seed)
            return self._harvest()

    def report(self, stamp: float, step: int, reward: float, success: bool, terminated: bool,
               truncated: bool) -> list[dict[str, Any]]:
        """The sim's report of one control step, stamped with the state after it."""
        r = _Report(float(stamp), int(step), float(reward), bool(success), bool(terminated), bool(truncated))
        with self._lock:
            for pending in self._closing:
                if pending.stamp < r.stamp - _TIME_EPS and r.stamp <= pending.next_stamp + _TIME_EPS:
                    pending.reports.append(r)
                    break
            else:
                if self._open is not None and r.stamp > self._open.stamp + _TIME_EPS:
                    self._open.reports.append(r)
                    if r.terminated or r.truncated:
                        self._open.end_stamp = r.stamp
                        last = self._last_obs
                        if last is not None and abs(last[0] - r.stamp) <= _TIME_EPS:  # the final state came first
                            self._close(self._open, last[0], last[1])
                            self._open = None
            return self._harvest()

    def observation(self, stamp: float, obs) -> list[dict[str, Any]]:
        """Every observation the node receives: the one at an episode's end closes the last chunk."""
        with self._lock:
            self._last_obs = (float(stamp), np.asarray(obs, dtype=np.float64).copy())
            p = self._open
            if p is not None and p.end_stamp is not None and abs(p.end_stamp - stamp) <= _TIME_EPS:
                self._close(p, stamp, self._last_obs[1])
                self._open = None
            return self._harvest()

    # ------------------------------------------------------------------ internals
    def _drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def _close(self, pending: _Pending, stamp: float, obs: np.ndarray) -> None:
        pending.next_stamp, pending.next_obs = float(stamp), obs
        self._closing.append(pending)
        while len(self._closing) > self.max_closing:
            self._closing.pop(0)
            self._drop("step reports missing")

    def _harvest(self) -> list[dict[str, Any]]:
        done, keep = [], []
        for p in self._closing:
            reports = sorted((r for r in p.reports if r.stamp <= p.next_stamp + _TIME_EPS), key=lambda r: r.stamp)
            if not reports or abs(reports[-1].stamp - p.next_stamp) > _TIME_EPS:
                keep.append(p)  # the report stamped at the next observation has not come yet
                continue
            k = len(reports)
            steps = [r.step for r in reports]
            ended = reports[-1].terminated or reports[-1].truncated
            if steps != list(range(steps[0], steps[0] + k)) or k > self.exec_horizon:
                self._drop("irregular steps (a held or repeated step)")
            elif k < self.exec_horizon and not ended:
                self._drop("irregular steps (a held or repeated step)")
            elif any(r.terminated or r.truncated for r in reports[:-1]):
                self._drop("steps after the episode's end")
            else:
                rewards = np.zeros(self.exec_horizon)
                rewards[:k] = [r.reward for r in reports]
                done.append({"obs": p.obs, "next_obs": p.next_obs, "eps": p.eps, "latent": p.latent, "action": p.action,
                             "rewards": rewards, "steps": k, "terminated": reports[-1].terminated,
                             "truncated": reports[-1].truncated, "success": any(r.success for r in reports),
                             "stamp": p.stamp, "episode_seed": p.episode_seed, "steering_version": p.version})
                self.emitted += 1
        self._closing = keep
        return done
