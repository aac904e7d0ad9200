"""A lease in Redis: one holder at a time for a key, kept by renewing it before it expires.

Where exactly one replica may act, it acts only while it holds the lease: the transfer replica running a
transfer (`Names.transfer_lease`), the discovery replica watching the clusters (`Names.discovery_leader`).
A holder that dies stops renewing, and after ``ttl_ms`` another replica can take the lease. Renewing and
releasing check the holder in the same script, so a replica never extends or drops a lease it has lost.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as aioredis

from castray.shared.bus import REDIS_ERRORS
from castray.shared.codec import as_text

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    """The lease at ``key``, as seen by ``owner`` (a name unique to one replica)."""

    def __init__(self, redis: aioredis.Redis, key: str, owner: str, ttl_ms: int) -> None:
        self.redis, self.key, self.owner, self.ttl_ms = redis, key, owner, ttl_ms

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it (or renew it if we do); False if another replica holds it."""
        if await self.redis.set(self.key, self.owner, nx=True, px=self.ttl_ms):
            return True
        return await self.renew()

    async def renew(self) -> bool:
        """Extend the lease by ``ttl_ms`` if we still hold it."""
        return bool(await self.redis.eval(_RENEW, 1, self.key, self.owner, self.ttl_ms))

    async def release(self) -> None:
        """Drop the lease if we hold it, so another replica can take it at once."""
        await self.redis.eval(_RELEASE, 1, self.key, self.owner)

    async def holder(self) -> str | None:
        return await holder_of(self.redis, self.key)

    async def fence(self, pipe: Any) -> bool:
        """WATCH the lease on ``pipe`` (a transaction pipeline, before MULTI) and say whether we hold it;
        if it changes hands before EXEC, EXEC fails with WatchError, so nothing is written."""
        await pipe.watch(self.key)
        return as_text(await pipe.get(self.key)) == self.owner

    async def keep(self, period: float) -> None:
        """Renew every ``period`` seconds while the lease is ours; return once it may not be.

        That is when another replica holds it, or when no renewal has succeeded for ``ttl_ms`` (Redis out
        of reach: by then the lease may have expired and been taken). A lease that vanished while ours
        (Redis restarted empty) is taken back if nobody else has taken it. Measured from before each call,
        so our deadline never outlasts the lease in Redis."""
        confirmed = time.monotonic()
        while True:
            await asyncio.sleep(period)
            sent = time.monotonic()
            try:
                async with asyncio.timeout(self.ttl_ms / 1000):  # a hung call is a failed one
                    if not await self.acquire():
                        return
                confirmed = sent
            except REDIS_ERRORS:  # TimeoutError (our own deadline) is an OSError
                if time.monotonic() - confirmed >= self.ttl_ms / 1000:
                    return


async def holder_of(redis: aioredis.Redis, key: str) -> str | None:
    """Who holds the lease at ``key`` now (None: nobody)."""
    return as_text(await redis.get(key))
