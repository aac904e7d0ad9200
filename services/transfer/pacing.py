"""How long a transfer's driver waits for its destinations, shared by the star (`castray.transfer.pipeline`)
and the chain (`castray.transfer.chain`).

A destination that hangs without dying (its worker stopped, its disk stuck) would stall the whole
transfer until Ray's health checks give up, and those never fire while the node's raylet answers. So the
oldest chunk's writes get a deadline (`chunk_deadline`), counted from the moment the driver waits for them:
a destination that has not answered by then fails with `NOT_ANSWERED`, and the others go on. The deadline
is the plan's ``chunk_timeout``, or longer when ``rate_limit`` makes one chunk slower than that.

`Pacer` keeps the sending at the plan's ``rate_limit`` and reports `Progress` every ``progress_interval``.

A sink that hears nothing for `idle_timeout` (several deadlines) aborts itself (`castray.transfer.sink`):
its driver is gone, or cut off from it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from castray.transfer.protocol import DriverEvent, Plan, Progress

NOT_ANSWERED = "node did not answer in time"
SLOW_CHUNKS = 3.0  # a deadline is at least this many chunks' time at the plan's rate limit
IDLE_DEADLINES = 3.0  # a sink idle for this many chunk deadlines aborts itself


def chunk_deadline(plan: Plan) -> float:
    """Seconds the driver waits for the oldest chunk's writes before failing who has not answered."""
    slow = SLOW_CHUNKS * plan.chunk_bytes / plan.rate_limit if plan.rate_limit else 0.0
    return max(float(plan.chunk_timeout), slow)


def idle_timeout(plan: Plan) -> float:
    """Seconds a destination's sink waits for a write or its finish before it aborts itself."""
    return IDLE_DEADLINES * chunk_deadline(plan)


class Pacer:
    """Paces one transfer's chunks (never ahead of ``plan.rate_limit`` bytes per second) and reports its
    progress (``written``: bytes by destination, kept up to date by the caller) every
    ``plan.progress_interval``; the star's and the chain's one loop for both."""

    def __init__(self, plan: Plan, cancelled: threading.Event, emit: Callable[[DriverEvent], None],
                 written: dict[str, int]) -> None:
        self.plan, self.cancelled, self.emit, self.written = plan, cancelled, emit, written
        self.started, self.last = time.monotonic(), 0.0

    def sent(self, offset: int) -> None:
        """``offset`` bytes are on their way: wait if that is ahead of the rate limit; report if due."""
        if self.plan.rate_limit:
            ahead = offset / self.plan.rate_limit - (time.monotonic() - self.started)
            if ahead > 0:
                self.cancelled.wait(ahead)
        if time.monotonic() - self.last >= self.plan.progress_interval:
            self.report()

    def report(self) -> None:
        self.last = time.monotonic()
        self.emit(Progress(id=self.plan.id, dests=dict(self.written)))
