"""Waiting, within a bound, for what a transfer's plan needs and the node view does not have yet.

A transfer queued the moment its cluster's nodes show ALIVE may find the view without the cluster's GCS
address (discovery reads it from the dashboard, which reports it a few seconds later), or a node
UNREACHABLE for a while. `plan_when_ready` plans again each time the view changes (the registry's
``view-changed`` / ``view-reset`` events), and every ``recheck`` seconds as well, since pub/sub may drop
a message; once ``timeout`` has passed it plans one last time with `Waiting.gave_up_after` set, so what
is still missing becomes a failure that names it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

import redis.asyncio as aioredis

from castray.shared.bus import REDIS_ERRORS
from castray.shared.names import Names
from castray.transfer.errors import NotReady, WaitCancelled
from castray.transfer.planning import Waiting

log = logging.getLogger(__name__)
T = TypeVar("T")
RECHECK_S = 2.0  # a dropped view event delays a waiting transfer by at most this long


class ViewChanges:
    """Wakes a waiter when the registry announces a change of the node view (or after ``recheck``)."""

    def __init__(self, redis: aioredis.Redis, names: Names, *, recheck: float = RECHECK_S) -> None:
        self.redis, self.names, self.recheck = redis, names, recheck
        self._pubsub: Any = None

    async def __aenter__(self) -> ViewChanges:
        self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            await self._pubsub.subscribe(self.names.view_events)
        except REDIS_ERRORS as e:  # the re-checks still run
            log.warning("cannot follow the node view's changes (%s); re-checking every %g s", e, self.recheck)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._pubsub is not None:
            try:
                await self._pubsub.aclose()
            except REDIS_ERRORS:
                pass

    async def wait(self, timeout: float) -> None:
        """Return after the next view event (a burst of them counts once), or after ``timeout`` or
        ``recheck`` seconds, whichever comes first."""
        limit = max(0.0, min(timeout, self.recheck))
        try:
            if self._pubsub is None or not self._pubsub.subscribed:
                await asyncio.sleep(limit)
                return
            if await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=limit) is None:
                return
            while await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.0) is not None:
                pass
        except REDIS_ERRORS as e:
            log.debug("view events unavailable (%s)", e)
            await asyncio.sleep(limit)


async def plan_when_ready(attempt: Callable[[Waiting], Awaitable[T]], *, redis: aioredis.Redis, names: Names,
                          timeout: float, keep_waiting: Callable[[str], Awaitable[bool]],
                          recheck: float = RECHECK_S) -> T:
    """``attempt(Waiting())`` until it no longer raises `NotReady`; then its result, or after ``timeout``
    seconds ``attempt(Waiting(gave_up_after=timeout))``. ``keep_waiting(what)`` is called before each wait
    with what is still missing; when it answers False, `WaitCancelled` is raised."""
    try:
        return await attempt(Waiting())
    except NotReady:
        pass  # the common case is ready: subscribe only when it is not
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with ViewChanges(redis, names, recheck=recheck) as changes:
        while True:
            try:  # first right after subscribing: no change after the first try goes unnoticed
                return await attempt(Waiting())
            except NotReady as e:
                what = e.what
            if not await keep_waiting(what):
                raise WaitCancelled(what)
            left = deadline - loop.time()
            if left <= 0:
                break
            await changes.wait(left)
    return await attempt(Waiting(gave_up_after=timeout))
