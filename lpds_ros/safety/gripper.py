"""When to send a gripper goal: a continuous command in, an "open"/"close" event out only on a change.

franka_gripper takes goals (Grasp to close, Move to open), not a value per control tick.  The gate turns
the filtered command (0 open .. 1 closed) into events with hysteresis, so a command hovering around 0.5
does not toggle the gripper every cycle.  The node sends the goal the gate returns; if that goal is
rejected or aborted it calls ``goal_failed()`` so the next cycle that still wants that state retries
(at most once per ``retry_cycles`` cycles, never at every tick).
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class GripperGate:
    """Hysteresis gate from a gripper command in [0, 1] to "open" / "close" goal events."""

    #: A command at or above this closes the gripper (sends Grasp).
    close_threshold: float = 0.6
    #: A command at or below this opens it (sends Move to the open width).
    open_threshold: float = 0.4
    #: After a failed goal, wait this many cycles before sending the same goal again.
    retry_cycles: int = 10

    def __post_init__(self) -> None:
        if not 0.0 <= self.open_threshold < self.close_threshold <= 1.0:
            raise ValueError(
                f"GripperGate: need 0 <= open_threshold < close_threshold <= 1, got {self.open_threshold}, {self.close_threshold}"
            )
        if self.retry_cycles < 1:
            raise ValueError(f"GripperGate.retry_cycles must be >= 1, got {self.retry_cycles}")
        self._sent: str | None = None  # the last goal sent and not known to have failed
        self._cooldown = 0

    @property
    def state(self) -> str | None:
        """The last goal sent ("open" / "close"), or None before the first one / after a failure."""
        return self._sent

    def update(self, command: float) -> str | None:
        """The goal to send this cycle ("open" / "close"), or None when nothing changes."""
        if self._cooldown > 0:
            self._cooldown -= 1
        if not math.isfinite(command):
            return None
        wanted = "close" if command >= self.close_threshold else "open" if command <= self.open_threshold else None
        if wanted is None or wanted == self._sent or self._cooldown > 0:
            return None
        self._sent = wanted
        return wanted

    def goal_failed(self) -> None:
        """The last goal was rejected or aborted: forget it, and retry after ``retry_cycles`` cycles."""
        self._sent = None
        self._cooldown = self.retry_cycles

    def reset(self) -> None:
        """Forget everything (new episode): the next decisive command sends its goal."""
        self._sent = None
        self._cooldown = 0
