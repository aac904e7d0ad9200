"""What one cluster may cost discovery: a budget of new node ids, so that a node list that changes on
every poll makes a failing cluster (with the reason), not an endless stream of added and removed nodes.

A dashboard's response size and row count are capped by `DashboardClient`; this bounds the rest: how many
node ids it may show that discovery did not know, a burst of ``burst`` refilled at ``per_minute``.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class NodeIdBudget:
    """A token bucket of new node ids, one per cluster watcher."""

    def __init__(self, *, burst: int, per_minute: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = burst
        self.rate = per_minute / 60.0
        self.clock = clock
        self.tokens = float(burst)
        self._at = clock()

    def take(self, new: int) -> bool:
        """Spend ``new`` tokens if there are that many; False (and nothing spent) otherwise."""
        now = self.clock()
        self.tokens = min(float(self.burst), self.tokens + (now - self._at) * self.rate)
        self._at = now
        if new > self.tokens:
            return False
        self.tokens -= new
        return True
