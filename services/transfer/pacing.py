"""How long a transfer's driver waits for its destinations, shared by the star (`castray.transfer.pipeline`)
and the chain (`castray.transfer.chain`).

A destination that hangs without dying (its worker stopped, its disk stuck) would stall the whole
transfer until Ray's health checks give up, and those never fire while the node's raylet answers. So the
oldest chunk's writes get a deadline (`chunk_deadline`), counted from the moment the driver waits for them:
a destination that has not answered by then fails with `NOT_ANSWERED`, and the others go on. The deadline
is the plan's ``chunk_timeout``, or longer when ``rate_limit`` makes one chunk slower than that.

`Pacer` keeps the sending at the plan's ``rate_limit`` and reports `Progress` every ``progress_interval``.

`Window` bounds the chunks in flight by what the slowest destination receives within Ray's pull timeout
(``object_manager_pull_timeout_ms``, 10 s by default): a chunk queued behind more than that is pulled
again (Ray logs "Received duplicate or cancelled chunk"), and on slow links 22-43 % of the chunks were
sent twice (RAY_NOTES.md). So ``window x chunk_bytes <= PULL_SHARE x rate x pull timeout``, the rate being
the plan's ``rate_limit``, or, measured, how fast chunks leave the window (every destination has them:
the slowest one's rate), the lower of the two once measured. Until a rate is known, `START_CHUNKS`.

A sink that hears nothing for `idle_timeout` (several deadlines) aborts itself (`castray.transfer.sink`):
its driver is gone, or cut off from it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import ray
from ray.exceptions import GetTimeoutError, RayError

from castray.transfer.protocol import DriverEvent, Plan, Progress

K = TypeVar("K")

NOT_ANSWERED = "node did not answer in time"
SLOW_CHUNKS = 3.0  # a deadline is at least this many chunks' time at the plan's rate limit
IDLE_DEADLINES = 3.0  # a sink idle for this many chunk deadlines aborts itself
PULL_TIMEOUT_S = 10.0  # Ray's object_manager_pull_timeout_ms default (RAY_object_manager_pull_timeout_ms)
PULL_SHARE = 0.5  # of what a link delivers within the pull timeout the window may hold: a margin
START_CHUNKS = 2  # chunks in flight before any rate is known (no rate_limit, nothing settled yet)


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


def pull_timeout_s() -> float:
    """Ray's pull timeout as this driver's environment sets it (the nodes' should match), else the default."""
    try:
        return float(os.environ["RAY_object_manager_pull_timeout_ms"]) / 1000
    except (KeyError, ValueError):
        return PULL_TIMEOUT_S


def pull_window(chunk_bytes: int, rate: float, pull_timeout: float = PULL_TIMEOUT_S) -> int:
    """The most chunks in flight that ``rate`` bytes per second delivers within the pull timeout (with
    `PULL_SHARE` of margin); at least one."""
    return max(1, int(PULL_SHARE * rate * pull_timeout // chunk_bytes))


class Window:
    """How many chunks may be in flight (at most ``most``): see the module's docstring for the rule.

    ``links``: how many links the chunks in flight are spread over. A star's all wait on the source's one
    link; a chain's are spread over its hops (each link queues about its share), so a chain of H hops may
    hold H times what one link delivers within the pull timeout. Counted as one link, a chain starved
    itself: with 2 chunks over 6 hops each link idled most of the time, the rate measured from that was a
    sixth of the link's, and the window it allowed stayed small (N = 6 at 100mbit: 2.0x unicast, 1.5x
    before the rule)."""

    def __init__(self, plan: Plan, most: int, clock: Callable[[], float] = time.monotonic, *,
                 links: int = 1) -> None:
        self.links = max(1, links)
        self.most, self.chunk_bytes, self.limit = most, plan.chunk_bytes, float(plan.rate_limit)
        self.rate = self.limit or None
        self.clock, self.pull_timeout = clock, pull_timeout_s()
        self.first: float | None = None  # when the first chunk left the window
        self.bytes = 0  # what left it since

    def size(self) -> int:
        if self.rate is None:
            return min(self.most, START_CHUNKS * self.links)
        return min(self.most, self.links * pull_window(self.chunk_bytes, self.rate, self.pull_timeout))

    def settled(self, nbytes: int) -> None:
        """A chunk of ``nbytes`` left the window: every destination has it."""
        now = self.clock()
        if self.first is None:
            self.first = now
            return
        self.bytes += nbytes
        if now > self.first:
            measured = self.bytes / (now - self.first)
            self.rate = min(measured, self.limit) if self.limit else measured


def gather(refs: dict[K, Any], timeout: float) -> dict[K, Any]:
    """Each ref's value, or the exception it raised (`GetTimeoutError` if not ready within ``timeout``,
    one bound for them all): the driver asks several nodes at once, so N that do not answer cost one
    timeout, not N."""
    if not refs:
        return {}
    ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout)
    out: dict[K, Any] = {}
    for key, ref in refs.items():
        try:
            if ref not in ready:
                raise GetTimeoutError(NOT_ANSWERED)
            out[key] = ray.get(ref)
        except (RayError, GetTimeoutError) as e:
            out[key] = e
    return out
