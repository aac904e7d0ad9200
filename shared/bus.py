"""The event bus over ``redis.asyncio``: pub/sub for events, lists for command replies, streams for work.

Pub/sub loses what is published while a subscriber is away. `Bus.subscribe` therefore reconnects with
backoff and calls ``on_connect`` after every (re)subscription, which is where a consumer catches up
(reads a snapshot, resyncs). Work that must not be lost goes through `Bus` stream helpers instead.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from castray.shared import codec
from castray.shared.errors import (
    CodedError,
    CommandError,
    EventDecodeError,
    ServiceTimeout,
    ServiceUnavailable,
)
from castray.shared.events import Event, Payload, wrap
from castray.shared.names import Names

log = logging.getLogger(__name__)

REDIS_DOWN: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, ReadOnlyError,
                                               OutOfMemoryError)
"""Redis is out of reach or refuses for now: gone, timed out, hung up, still loading its data, a read-only
replica, out of memory. Not the caller's fault and worth a retry. Any other Redis error (WRONGTYPE, a bad
argument) is a bug in our command, which no retry mends: it stays a bug (logged with its traceback, a 500,
a transfer attempt that counts)."""
REDIS_ERRORS: tuple[type[BaseException], ...] = (*REDIS_DOWN, OSError)
"""`REDIS_DOWN`, or the socket under it failed. Every caller treats these alike (log, back off, retry or
leave the work pending), so this is the one tuple of them; the gateway's error middleware alone uses
`REDIS_DOWN`, as an OSError there is as likely a disk's as Redis's."""

OnConnect = Callable[[], Awaitable[None]]
OnDisconnect = Callable[[], None]
CommandHandler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


def connect(url: str, **kwargs: Any) -> aioredis.Redis:
    """A Redis client (a connection pool; nothing is opened until first use)."""
    kwargs.setdefault("socket_connect_timeout", 2)
    kwargs.setdefault("health_check_interval", 10)
    return aioredis.Redis.from_url(url, **kwargs)


def instance_name(kind: str) -> str:
    """A source name unique to this process: ``<kind>@<host>:<pid>:<random>``."""
    return f"{kind}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def public_tag(instance: str) -> str:
    """What may be told to anyone of an instance name: ``<kind>:<random>``, without its host or process id
    (the full name, in ``GET /api/services``, needs the token, and ends with the same random part)."""
    return f"{instance.split('@', 1)[0]}:{instance.rsplit(':', 1)[-1]}"


class Backoff:
    """Exponential backoff with jitter, from ``first`` to ``cap`` seconds."""

    def __init__(self, first: float = 0.05, cap: float = 2.0) -> None:
        self.first, self.cap, self.attempt = first, cap, 0

    def reset(self) -> None:
        self.attempt = 0

    async def wait(self) -> None:
        delay = min(self.cap, self.first * 2**self.attempt)
        self.attempt += 1
        await asyncio.sleep(delay * (0.5 + random.random() / 2))


class Bus:
    """Publishes this source's events with a gap-free sequence, and subscribes with reconnect."""

    def __init__(self, redis: aioredis.Redis, names: Names, *, source: str) -> None:
        self.redis = redis
        self.names = names
        self.source = source
        self._seq = itertools.count(1)

    # --- events -----------------------------------------------------------------------------------
    def make(self, payload: Payload) -> Event:
        """Wrap a payload in an envelope with this source's next sequence number."""
        return wrap(payload, source=self.source, seq=next(self._seq), time=time.time())

    async def publish(self, channel: str, payload: Payload) -> Event:
        event = self.make(payload)
        await self.redis.publish(channel, codec.encode(event))
        return event

    async def subscribe(
        self, *channels: str, on_connect: OnConnect | None = None, backoff: Backoff | None = None,
        on_disconnect: OnDisconnect | None = None,
    ) -> AsyncIterator[Event]:
        """Events from ``channels`` for ever, across Redis restarts; undecodable ones are skipped."""
        backoff = backoff or Backoff()
        async for channel, data in self.subscribe_raw(*channels, on_connect=on_connect, backoff=backoff,
                                                      on_disconnect=on_disconnect):
            try:
                yield codec.decode(data, channel=channel)
            except EventDecodeError as e:
                log.warning("skipping bad event: %s", e)

    async def subscribe_raw(
        self, *channels: str, on_connect: OnConnect | None = None, backoff: Backoff | None = None,
        on_disconnect: OnDisconnect | None = None,
    ) -> AsyncIterator[tuple[str, bytes]]:
        """(channel, raw bytes) from ``channels``, reconnecting with backoff; ``on_disconnect`` runs as
        soon as the subscription is lost (before the wait), so a consumer can tell it is not listening."""
        backoff = backoff or Backoff()
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*channels)
                if on_connect is not None:
                    await on_connect()
                backoff.reset()
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    channel = message["channel"]
                    yield (channel.decode() if isinstance(channel, bytes) else channel), message["data"]
            except REDIS_ERRORS as e:
                log.warning("subscription to %s lost (%s); reconnecting", ",".join(channels), e)
                if on_disconnect is not None:
                    on_disconnect()
            finally:
                try:
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py
                except REDIS_ERRORS:
                    pass
            await backoff.wait()

    # --- commands (request / reply) ---------------------------------------------------------------
    async def request(
        self, service: str, op: str, args: Mapping[str, Any] | None = None, *, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Send a command to ``service`` and wait for its reply (a `CommandError` if it failed)."""
        request_id = uuid.uuid4().hex
        reply_key = self.names.reply(request_id)
        body = codec.pack({"id": request_id, "op": op, "args": dict(args or {}), "reply_to": reply_key,
                           "deadline": time.time() + timeout})
        listeners = await self.redis.publish(self.names.commands(service), body)
        if not listeners:
            raise ServiceUnavailable(f"the {service} service is not running")
        popped = await self.redis.blpop([reply_key], timeout=timeout)
        if popped is None:
            raise ServiceTimeout(f"the {service} service did not answer within {timeout:g} s")
        reply = codec.unpack(popped[1])
        if not reply.get("ok"):
            err = reply.get("error") or {}
            raise CommandError(str(err.get("message", "command failed")), status=int(err.get("status", 400)),
                               code=str(err.get("code", "bad_request")))
        return dict(reply.get("result") or {})

    async def serve_commands(
        self, service: str, handler: CommandHandler, *, on_connect: OnConnect | None = None
    ) -> None:
        """Answer commands sent to ``service`` for ever; each runs in its own task.

        ``on_connect`` runs once the command channel is subscribed (after every reconnect too).
        """
        tasks: set[asyncio.Task[None]] = set()
        async for _, raw in self.subscribe_raw(self.names.commands(service), on_connect=on_connect):
            try:
                req = codec.unpack(raw)
                if not isinstance(req, dict) or "reply_to" not in req:
                    raise ValueError("not a command")
            except ValueError as e:
                log.warning("skipping bad command: %s", e)
                continue
            task = asyncio.create_task(self._answer(req, handler))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async def _answer(self, req: dict[str, Any], handler: CommandHandler) -> None:
        try:
            result = await handler(str(req.get("op")), dict(req.get("args") or {}))
            reply: dict[str, Any] = {"id": req.get("id"), "ok": True, "result": result}
        except (CodedError, CommandError) as e:  # the service's own class becomes its status and code
            reply = {"id": req.get("id"), "ok": False,
                     "error": {"message": e.message, "status": e.status, "code": e.code}}
        except Exception as e:  # a command must always get an answer
            log.exception("command %s failed", req.get("op"))
            reply = {"id": req.get("id"), "ok": False,
                     "error": {"message": f"internal error: {type(e).__name__}", "status": 500,
                               "code": "internal"}}
        key = str(req["reply_to"])
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, codec.pack(reply))
            pipe.expire(key, 60)
            await pipe.execute()

    # --- streams (work queues) --------------------------------------------------------------------
    async def ensure_group(self, stream: str, group: str) -> None:
        """Create ``group`` on ``stream`` (and the stream) if missing."""
        try:
            await self.redis.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    async def add_work(self, stream: str, fields: Mapping[str, Any], *, maxlen: int = 100_000) -> str:
        entry_id = await self.redis.xadd(stream, {"data": codec.pack(dict(fields))}, maxlen=maxlen,
                                         approximate=True)
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def read_work(
        self, stream: str, group: str, consumer: str, *, count: int = 1, block_ms: int = 1000
    ) -> list[tuple[str, dict[str, Any]]]:
        """New entries for ``consumer`` in ``group`` (pending until `ack`)."""
        resp: Any = await self.redis.xreadgroup(group, consumer, {stream: ">"}, count=count, block=block_ms)
        return _entries(resp[0][1]) if resp else []

    async def claim_stale_work(
        self, stream: str, group: str, consumer: str, *, idle_ms: int, count: int = 10
    ) -> list[tuple[str, dict[str, Any]]]:
        """Take over entries another consumer has held for ``idle_ms`` without acking (it died)."""
        resp = await self.redis.xautoclaim(stream, group, consumer, min_idle_time=idle_ms, start_id="0-0",
                                           count=count)
        return _entries(resp[1])

    async def ack(self, stream: str, group: str, entry_id: str) -> None:
        await self.redis.xack(stream, group, entry_id)


def _entries(raw: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for entry_id, fields in raw:
        if not fields:  # deleted while pending
            continue
        eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        data = fields.get(b"data") or fields.get("data")
        try:
            out.append((eid, dict(codec.unpack(data))))
        except (TypeError, ValueError):
            log.warning("skipping bad stream entry %s", eid)
    return out
