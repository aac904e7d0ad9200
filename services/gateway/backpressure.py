"""A bound on the requests that build and send large view bodies (``/api/nodes``, ``/api/status``, the
clusters' endpoints): beyond ``heavy_requests`` at once and ``heavy_queue`` waiting, a request is shed
with 503 ``overloaded`` and ``Retry-After``.

Why: under 32 concurrent ``/api/status`` at 10k nodes the gateway's memory grew past 800 MB and Redis reads
timed out (issue 16); answering "come back later" at once costs nothing, while every body built for a
request that waits behind thirty others costs megabytes, and so does every body sent at once to a slow
client (its socket buffer holds it). Only building (and gzip) and sending a body take a slot: a 304, health
and readiness never do, so they are never shed.

A request whose client has gone gives its slot (or its place in the queue) back when its handler is
cancelled (aiohttp does so on a disconnect only with ``handler_cancellation``: its test server turns it on,
while ``web.AppRunner`` and ``run_app`` leave it off in aiohttp 3.14, as the gateway's runner does, so that
no write to Redis is cut in half). Either way a queued request whose connection closed while it waited is
dropped before it builds anything, and one whose client leaves while its body is written stops there
(`ClientGone`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from castray.gateway import keys
from castray.gateway.errors import ApiError

QUEUE_WAIT = 5.0  # seconds a queued request waits for a slot before it is shed
RETRY_AFTER = 1  # seconds, in the shed answer's Retry-After
# A heavy route's 503, as its API description says it.
UNAVAILABLE = "Redis unavailable, or overloaded: too many large answers at once (Retry-After)"


class Overloaded(ApiError):
    """Too many heavy requests at once (503, ``Retry-After``)."""

    def __init__(self, *, limit: int) -> None:
        super().__init__(503, f"the gateway is busy: {limit} large responses are being built and the queue "
                         f"is full; retry after {RETRY_AFTER} s", code="overloaded", limit=limit)
        self.headers["Retry-After"] = str(RETRY_AFTER)


class ClientGone(ApiError):
    """The client closed its connection before its answer was sent: nothing more is built or written (499,
    which nobody reads; it is what ``/metrics`` counts)."""

    def __init__(self) -> None:
        super().__init__(499, "the client closed the connection before its answer was sent",
                         code="client_gone")


class HeavyGate:
    """Slots for heavy requests, one per app. ``shed`` counts the requests refused; ``in_use`` and
    ``waiting`` are for tests and ``/metrics``."""

    def __init__(self, limit: int, queue: int) -> None:
        self.limit = limit
        self.queue = queue
        self.in_use = 0
        self.waiting = 0
        self.shed = 0
        self._slots = asyncio.Semaphore(limit)

    @asynccontextmanager
    async def slot(self, request: web.Request | None = None) -> AsyncIterator[None]:
        """Hold a slot for the block; `Overloaded` when none is free and the queue is full or the wait
        too long. ``request``: a queued request whose client has gone meanwhile is dropped."""
        if self._slots.locked():
            await self._wait()
            if request is not None and request.transport is None:
                self._slots.release()
                raise ClientGone()
        else:
            await self._slots.acquire()  # free: returns at once
        self.in_use += 1
        try:
            yield
        finally:
            self.in_use -= 1
            self._slots.release()

    async def _wait(self) -> None:
        if self.waiting >= self.queue:
            self.shed += 1
            raise Overloaded(limit=self.limit)
        self.waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), QUEUE_WAIT)
        except TimeoutError:
            self.shed += 1
            raise Overloaded(limit=self.limit) from None
        finally:
            self.waiting -= 1


def setup(app: web.Application) -> None:
    settings = app[keys.SETTINGS]
    app[keys.HEAVY_GATE] = HeavyGate(settings.heavy_requests, settings.heavy_queue)
