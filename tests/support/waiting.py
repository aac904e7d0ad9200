"""The one way tests wait: poll a condition until it holds, and fail with what was awaited when it does
not within a deadline. Tests wait for conditions, never for a fixed time, so a busy machine makes them
slower, not red.

``wait_for`` is for async tests; ``wait_for_blocking`` runs the same wait for sync tests and fixtures.
Its defaults suit what those mostly wait for, processes started beside the test (``castray up``, Ray
nodes): a longer deadline, a slower poll, and the errors of a service still starting (refused
connections, half-written files, processes come and gone) counted as "not yet".
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil

DEADLINE = 30.0
STARTING: tuple[type[BaseException], ...] = (OSError, ValueError, KeyError, psutil.Error)


async def wait_for(
    cond: Callable[[], Any],
    what: str = "condition",
    *,
    deadline: float = DEADLINE,
    interval: float = 0.02,
    ignoring: tuple[type[BaseException], ...] = (),
) -> Any:
    """Call ``cond`` (awaiting what it returns if that is awaitable) until it returns something truthy,
    and return that; exceptions of ``ignoring`` count as not yet."""
    end = time.monotonic() + deadline
    while True:
        try:
            value = cond()
            if inspect.isawaitable(value):
                value = await value
        except ignoring:
            value = None
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline:g} s waiting for {what}")
        await asyncio.sleep(interval)


def wait_for_blocking(
    cond: Callable[[], Any],
    what: str = "condition",
    *,
    deadline: float = 90.0,
    interval: float = 0.3,
    ignoring: tuple[type[BaseException], ...] = STARTING,
) -> Any:
    """``wait_for`` from sync tests and fixtures. It runs on a loop in a thread of its own, as the thread
    calling may have a loop already (Playwright's sync API runs one), so ``cond`` must be thread-safe."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, wait_for(cond, what, deadline=deadline, interval=interval,
                                                 ignoring=ignoring)).result()
