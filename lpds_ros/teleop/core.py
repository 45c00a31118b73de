"""Teleoperation without ROS: keys and a 6-DoF device -> the task action, and the episode recorder.

The teleop command is the task's own action (``[dx, dy, dz, gripper]`` in [-1, 1]; the target moves by
``action[:3] * 0.05 m`` per step and ``action[3] > 0`` closes the gripper), so a teleoperated demo has
exactly the layout of a scripted one and trains the same policies.  ``teleop_node`` turns the action
into the absolute target with the policy's rule (``DeltaTargetIntegrator``) and sends it through the
safety filter like the policy's.

Keys (``KEYMAP``; one press moves for ``hold_steps`` control steps, a held key's auto-repeat keeps it moving):

    w / s   +x / -x (away from / towards the robot base)      space   toggle the gripper
    a / d   +y / -y (left / right, seen from behind the base)  + / -   faster / slower
    r / f   +z / -z (up / down)                                e       e-stop (latches the safety filter)
    b       begin an episode     y  save it as a success     n  save it as a failure
    x       discard it           q  quit (an unfinished episode is discarded)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from lpds_ros.errors import LpdsError

#: key -> (command, argument).  Commands: move (axis, sign), gripper, faster, slower, start, success,
#: failure, discard, estop, quit.
KEYMAP: dict[str, tuple[str, Any]] = {
    "w": ("move", (0, +1)), "s": ("move", (0, -1)),
    "a": ("move", (1, +1)), "d": ("move", (1, -1)),
    "r": ("move", (2, +1)), "f": ("move", (2, -1)),
    " ": ("gripper", None),
    "+": ("faster", None), "=": ("faster", None), "-": ("slower", None),
    "b": ("start", None), "y": ("success", None), "n": ("failure", None), "x": ("discard", None),
    "e": ("estop", None), "q": ("quit", None),
}

#: Commands that concern the episode or the session rather than the motion.
CONTROL_COMMANDS = ("start", "success", "failure", "discard", "estop", "quit")

HELP = ("keys: w/s +x/-x, a/d +y/-y, r/f up/down, space gripper, +/- speed | "
        "b begin episode, y save (success), n save (failure), x discard, e e-stop, q quit")


def parse_axes(spec: str) -> tuple[tuple[int, float], ...]:
    """``"y,-x,z"`` -> for each base axis, (device axis index, sign): base x <- device y, base y <- -device x."""
    names = {"x": 0, "y": 1, "z": 2}
    parts = [p.strip() for p in spec.split(",")]
    out = []
    for part in parts:
        sign = -1.0 if part.startswith("-") else 1.0
        name = part.lstrip("+-")
        if name not in names:
            break
        out.append((names[name], sign))
    if len(out) != 3 or len({a for a, _ in out}) != 3:
        raise LpdsError(f"spacemouse axes {spec!r}: give three of x, y, z with optional signs, e.g. 'y,-x,z'")
    return tuple(out)


@dataclass
class TeleopCore:
    """Keys and device states in, one task action per control step out."""

    speed: float = 0.3  # |action| of a key press, in [0, 1] (0.3: 1.5 cm per step, 0.3 m/s at 20 Hz)
    hold_steps: int = 3  # control steps one key press keeps moving
    deadzone: float = 0.1  # device deflections below this read as 0
    axes: tuple[tuple[int, float], ...] = ((1, 1.0), (0, -1.0), (2, 1.0))  # base <- device (see parse_axes)
    speed_step: float = 0.1
    gripper_closed: bool = False
    _holds: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=int))
    _signs: np.ndarray = field(default_factory=lambda: np.zeros(3))
    _device: np.ndarray = field(default_factory=lambda: np.zeros(3))
    _buttons: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 < self.speed <= 1.0:
            raise LpdsError(f"teleop speed must be in (0, 1], got {self.speed}")
        if self.hold_steps < 1:
            raise LpdsError(f"teleop hold_steps must be >= 1, got {self.hold_steps}")
        if not 0.0 <= self.deadzone < 1.0:
            raise LpdsError(f"teleop deadzone must be in [0, 1), got {self.deadzone}")

    def reset(self) -> None:
        """New episode: no motion, gripper open."""
        self._holds[:] = 0
        self._signs[:] = 0.0
        self._device[:] = 0.0
        self.gripper_closed = False

    def key(self, key: str) -> str | None:
        """Apply one key press.  Returns the control command it stands for (``CONTROL_COMMANDS``), else None."""
        command, arg = KEYMAP.get(key, (None, None))
        if command == "move":
            axis, sign = arg
            self._signs[axis] = sign
            self._holds[axis] = self.hold_steps
        elif command == "gripper":
            self.gripper_closed = not self.gripper_closed
        elif command == "faster":
            self.speed = min(1.0, round(self.speed + self.speed_step, 6))
        elif command == "slower":
            self.speed = max(self.speed_step, round(self.speed - self.speed_step, 6))
        elif command in CONTROL_COMMANDS:
            return command
        return None

    def device(self, state: Any) -> None:
        """A 6-DoF device state (pyspacemouse's: ``x, y, z`` in [-1, 1], ``buttons``): translation with a
        deadzone; a press of button 0 toggles the gripper."""
        raw = np.array([float(state.x), float(state.y), float(state.z)])
        raw = np.where(np.abs(raw) < self.deadzone, 0.0, (np.abs(raw) - self.deadzone) / (1.0 - self.deadzone) * np.sign(raw))
        self._device = np.array([sign * raw[axis] for axis, sign in self.axes])
        buttons = tuple(int(b) for b in (getattr(state, "buttons", None) or getattr(state, "button", None) or ()))
        if buttons and buttons[0] and not (self._buttons and self._buttons[0]):
            self.gripper_closed = not self.gripper_closed
        self._buttons = buttons

    def action(self) -> np.ndarray:
        """The task action for this control step (4,), float32; consumes one step of each key hold."""
        keys = np.where(self._holds > 0, self._signs, 0.0)
        self._holds = np.maximum(self._holds - 1, 0)
        motion = np.clip(self.speed * keys + self._device, -1.0, 1.0)
        return np.array([*motion, 1.0 if self.gripper_closed else -1.0], dtype=np.float32)


class EpisodeRecorder:
    """The episode state machine: idle -> (waiting for the sim's episode) -> recording -> saved / discarded.

    ``append`` is called with ``(obs, actions, rewards, dones, success)`` of a finished episode, e.g.
    ``DemoAppender.append``; it is the only writer, so a discarded episode never reaches the file.
    ``wait_for_episode`` (the sim): ``start`` asks for a reset (the node publishes it) and recording
    begins with the first observation stamped at or after the sim's episode start event.
    Every method returns a one-line message for the operator (or None).
    """

    IDLE, WAITING, RECORDING = "idle", "waiting", "recording"

    def __init__(self, append: Callable[..., Any], wait_for_episode: bool = False):
        self._append = append
        self.wait_for_episode = wait_for_episode
        self.state = self.IDLE
        self._steps: list[tuple[np.ndarray, np.ndarray, float]] = []  # (observation, action, stamp)
        self._start_stamp = -np.inf
        self.saved = 0
        self.discarded = 0
        self.started = 0

    @property
    def steps(self) -> int:
        return len(self._steps)

    def start(self) -> str:
        if self.state != self.IDLE:
            return f"already {self.state} (episode {self.started}); save (y/n) or discard (x) it first"
        self._steps = []
        self.started += 1
        if self.wait_for_episode:
            self.state = self.WAITING
            return f"episode {self.started}: resetting the sim"
        self.state, self._start_stamp = self.RECORDING, -np.inf
        return f"episode {self.started}: recording"

    def episode_started(self, stamp: float) -> str | None:
        """The sim started an episode at ``stamp``."""
        if self.state == self.WAITING:
            self.state, self._start_stamp = self.RECORDING, float(stamp)
            return f"episode {self.started}: recording"
        if self.state == self.RECORDING and self.wait_for_episode:
            return self.discard("the sim started another episode")
        return None

    def record(self, obs: np.ndarray, action: np.ndarray, stamp: float) -> bool:
        """One control step (the observation and the action taken on it).  True when it was recorded."""
        if self.state != self.RECORDING or stamp < self._start_stamp - 1e-9:
            return False
        self._steps.append((np.asarray(obs, dtype=np.float32).copy(), np.asarray(action, dtype=np.float32).copy(), float(stamp)))
        return True

    def save(self, success: bool) -> str:
        if self.state == self.WAITING:
            self.state = self.IDLE
            return "no episode to save (the sim had not started it)"
        if self.state != self.RECORDING:
            return "no episode to save (press b to begin one)"
        self.state = self.IDLE
        if not self._steps:
            return f"episode {self.started}: no steps recorded, nothing saved"
        T = len(self._steps)
        rewards = np.zeros(T, np.float32)
        dones = np.zeros(T, bool)
        rewards[-1] = dones[-1] = bool(success)
        obs, actions, _ = zip(*self._steps)
        where = self._append(np.stack(obs), np.stack(actions), rewards, dones, bool(success))
        self.saved += 1
        self._steps = []
        return f"episode {self.started}: saved {T} steps as {'success' if success else 'failure'}" + (f" ({where})" if where else "")

    def episode_ended(self, success: bool, end_stamp: float = np.inf) -> str | None:
        """The sim ended the episode (success or horizon) at ``end_stamp``: save what was recorded with its
        outcome.  A step stamped at or after the end is the final state, recorded when its observation came
        before the end event (two topics, no order); its action was never executed, so it is dropped."""
        if self.state == self.RECORDING:
            while self._steps and self._steps[-1][2] >= end_stamp - 1e-9:
                self._steps.pop()
            return self.save(success)
        return None

    def discard(self, why: str = "discarded") -> str | None:
        if self.state == self.IDLE:
            return None
        T = len(self._steps)
        self.state = self.IDLE
        self._steps = []
        self.discarded += 1
        return f"episode {self.started}: {why}, {T} steps dropped (nothing written)"
