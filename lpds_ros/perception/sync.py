"""When the perception node publishes an observation: the trigger rule, without ROS.

Modes (``ObservationTrigger(mode, sources, min_period_s)``):

* ``"all"``: when every source has a newer stamp than it had at the last observation.  In the lockstep sim
  every source is published once per control step with the same stamp, so this yields exactly one
  observation per step, assembled from one consistent state.
* a source name (``"eef"``, ``"joints"``, ...): when that source updates, at most once per
  ``min_period_s`` of its stamps (the others contribute their latest values).
* ``"timer"``: the node publishes on its own timer at the control rate; ``ready`` is always True once every
  source has been seen.

In every mode nothing is published before every source has been seen at least once.
"""
from __future__ import annotations

import math


class ObservationTrigger:
    """Tracks source stamps and says when an observation is due."""

    def __init__(self, mode: str, sources: list[str], min_period_s: float = 0.0):
        if mode not in ("all", "timer", *sources):
            raise ValueError(f"trigger mode {mode!r}: choose 'all', 'timer' or one of the sources {sources}")
        if not sources:
            raise ValueError("ObservationTrigger needs at least one source")
        self.mode, self.sources, self.min_period_s = mode, list(sources), float(min_period_s)
        self._stamps: dict[str, float] = {}
        self._published: dict[str, float] = {}
        self._last_trigger = -math.inf

    def reset(self) -> None:
        """Forget what was published (a new episode may restart sim time stamps from a new value)."""
        self._published.clear()
        self._last_trigger = -math.inf

    def update(self, source: str, stamp: float) -> bool:
        """Record a source update; True when an observation should be published now."""
        if source not in self.sources:
            raise ValueError(f"unknown source {source!r}; sources: {self.sources}")
        self._stamps[source] = stamp
        if len(self._stamps) < len(self.sources):
            return False
        if self.mode == "all":
            return all(self._stamps[s] > self._published.get(s, -math.inf) for s in self.sources)
        if self.mode == source:
            return stamp - self._last_trigger >= self.min_period_s - 1e-9
        return False

    def ready(self) -> bool:
        """Every source has been seen (what the timer mode checks)."""
        return len(self._stamps) == len(self.sources)

    def published(self) -> None:
        """An observation was published from the current stamps."""
        self._published = dict(self._stamps)
        if self.mode in self._stamps:
            self._last_trigger = self._stamps[self.mode]
