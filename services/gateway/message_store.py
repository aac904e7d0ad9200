"""Where ``/api/send`` keeps its messages: each message once, referenced from its nodes' lists.

A message's body (content, sender, cast type, ..., and the delivered recipients) is stored once at
``Names.message(key)``; each recipient's list (``Names.node_messages(id)``, newest first, capped at
``messages_per_node``) holds a small reference ``{"ref": key, "direction": "received"}``, and a sender
that is a node of the view holds one with ``"direction": "sent"``. A broadcast to ten thousand nodes thus
stores its content once, not ten thousand times. Bodies are indexed by time in ``Names.message_index``
and the oldest beyond ``messages_kept`` are removed; a reference to a removed body is skipped on reading.
Entries written whole by an earlier version (they carry ``content``) are read as they are.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import redis.asyncio as aioredis

from castray.shared import codec
from castray.shared.names import Names


async def save(redis: aioredis.Redis, names: Names, body: dict[str, Any], *, recipients: list[str],
               sender: str | None, per_node: int, kept: int) -> None:
    """Store ``body`` once and reference it from each recipient's list (and the sender's, if a node)."""
    key = uuid.uuid4().hex
    received = codec.pack({"ref": key, "direction": "received"})
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(names.message(key), codec.pack({**body, "recipients": recipients}))
        pipe.zadd(names.message_index, {key: time.time()})
        for rid in recipients:
            _push(pipe, names.node_messages(rid), received, per_node)
        if sender is not None:
            _push(pipe, names.node_messages(sender), codec.pack({"ref": key, "direction": "sent"}), per_node)
        await pipe.execute()
    await _trim(redis, names, kept)


def _push(pipe: Any, key: str, item: bytes, cap: int) -> None:
    pipe.lpush(key, item)
    pipe.ltrim(key, 0, cap - 1)


async def _trim(redis: aioredis.Redis, names: Names, kept: int) -> None:
    """Remove the oldest bodies beyond ``kept`` (at most a few per call: each call adds one)."""
    excess = await redis.zcard(names.message_index) - kept
    if excess <= 0:
        return
    old = [k.decode() if isinstance(k, bytes) else str(k)
           for k in await redis.zrange(names.message_index, 0, min(excess, 100) - 1)]
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(*[names.message(k) for k in old])
        pipe.zrem(names.message_index, *old)
        await pipe.execute()


async def read(redis: aioredis.Redis, names: Names, node_id: str, count: int) -> list[dict[str, Any]]:
    """The node's newest ``count`` messages, whole (``direction`` set; ``recipients`` only on sent ones)."""
    items = [codec.unpack(raw) for raw in await redis.lrange(names.node_messages(node_id), 0, count - 1)]
    refs = [str(item["ref"]) for item in items if isinstance(item, dict) and "ref" in item]
    bodies = dict(zip(refs, await redis.mget([names.message(r) for r in refs]), strict=True)) if refs else {}
    out: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        if "ref" not in item:  # written whole by an earlier version
            out.append(item)
            continue
        raw = bodies.get(str(item["ref"]))
        if raw is None:  # its body was removed (messages_kept)
            continue
        body = dict(codec.unpack(raw))
        recipients = body.pop("recipients", [])
        entry = {**body, "direction": item.get("direction", "received")}
        if entry["direction"] == "sent":
            entry["recipients"] = recipients
        out.append(entry)
    return out


async def is_empty(redis: aioredis.Redis, names: Names, node_id: str) -> bool:
    return int(await redis.llen(names.node_messages(node_id))) == 0
