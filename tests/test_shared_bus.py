"""The bus against the real Redis: ordered events with sequence numbers, resubscription after a dropped
connection, request/reply, and work streams with takeover of a dead consumer's entries."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
import redis.asyncio as aioredis

from castray.shared import bus as busmod
from castray.shared import codec, events
from castray.shared.errors import CommandError, ServiceUnavailable
from castray.shared.names import Names
from tests.support.waiting import wait_for


async def test_published_events_arrive_in_order_with_gap_free_sequence(
        redis_client: aioredis.Redis, names: Names) -> None:
    pub = busmod.Bus(redis_client, names, source="pub")
    sub = busmod.Bus(redis_client, names, source="sub")
    got: list[events.Event] = []
    connected = asyncio.Event()

    async def on_connect() -> None:
        connected.set()

    async def consume() -> None:
        async for ev in sub.subscribe(names.discovery_events, on_connect=on_connect):
            got.append(ev)

    task = asyncio.create_task(consume())
    await asyncio.wait_for(connected.wait(), 5)
    for _ in range(50):
        await pub.publish(names.discovery_events, events.SourceReset())
    await redis_client.publish(names.discovery_events, b"garbage")  # skipped, never kills the loop
    await redis_client.publish(names.discovery_events, bytes([0x81, 0x91, 0x01, 0x02]))  # {[1]: 2}
    await redis_client.publish(names.discovery_events, bytes([0xDD, 0xFF, 0xFF, 0xFF, 0xFF]))  # 4 G items
    await pub.publish(names.discovery_events, events.SourceReset())
    await wait_for(lambda: len(got) == 51)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert [e.seq for e in got] == list(range(1, 52))
    assert {e.source for e in got} == {"pub"}


async def test_subscription_comes_back_after_its_connection_is_killed(
        redis_client: aioredis.Redis, names: Names) -> None:
    pub = busmod.Bus(redis_client, names, source="pub")
    sub_client = busmod.connect("redis://127.0.0.1:6379/0", client_name=f"{names.ns}-sub")
    sub = busmod.Bus(sub_client, names, source="sub")
    connects: list[int] = []
    got: list[int] = []

    async def on_connect() -> None:
        connects.append(1)

    async def consume() -> None:
        async for ev in sub.subscribe(names.view_events, on_connect=on_connect):
            got.append(ev.seq)

    task = asyncio.create_task(consume())
    try:
        await wait_for(lambda: len(connects) == 1)
        await redis_client.execute_command("CLIENT", "KILL", "TYPE", "pubsub", "SKIPME", "yes")
        await wait_for(lambda: len(connects) >= 2)  # on_connect runs again: the consumer's cue to resync
        ev = await pub.publish(names.view_events, events.ViewReset(epoch="e", version=1))
        await wait_for(lambda: ev.seq in got)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sub_client.aclose()


async def test_request_reply_and_errors(redis_client: aioredis.Redis, names: Names) -> None:
    server = busmod.Bus(redis_client, names, source="server")
    client = busmod.Bus(redis_client, names, source="client")

    with pytest.raises(ServiceUnavailable):
        await client.request("discovery", "discover", timeout=1)

    async def handler(op: str, args: dict[str, Any]) -> dict[str, Any]:
        if op == "echo":
            return {"echo": args}
        if op == "slow":
            await asyncio.sleep(5)
        raise CommandError("no such op", status=404, code="not_found")

    serving = asyncio.create_task(server.serve_commands("discovery", handler))
    try:
        channel = names.commands("discovery")
        async def subscribed() -> bool:
            return bool((await redis_client.pubsub_numsub(channel))[0][1])

        await wait_for(subscribed, "the server's subscription", deadline=5)
        replies = await asyncio.gather(*(client.request("discovery", "echo", {"i": i}) for i in range(20)))
        assert [r["echo"]["i"] for r in replies] == list(range(20))  # each reply reaches its own caller
        with pytest.raises(CommandError) as info:
            await client.request("discovery", "nope")
        assert (info.value.status, info.value.code) == (404, "not_found")
        with pytest.raises(ServiceUnavailable) as slow:
            await client.request("discovery", "slow", timeout=1)
        assert slow.value.code == "timeout"
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving


async def test_work_held_by_a_dead_consumer_is_taken_over_once(
        redis_client: aioredis.Redis, names: Names) -> None:
    bus = busmod.Bus(redis_client, names, source="w")
    stream, group = names.transfer_requests, "g"
    await bus.ensure_group(stream, group)
    await bus.ensure_group(stream, group)  # idempotent
    ids = [await bus.add_work(stream, {"n": i}) for i in range(3)]
    first = await bus.read_work(stream, group, "dead", count=3, block_ms=100)
    assert [e[1]["n"] for e in first] == [0, 1, 2]
    await bus.ack(stream, group, ids[0])  # 'dead' finished one, then died holding two
    assert await bus.read_work(stream, group, "alive", block_ms=50) == []  # nothing new
    await asyncio.sleep(0.05)
    taken = await bus.claim_stale_work(stream, group, "alive", idle_ms=10)
    assert sorted(e[1]["n"] for e in taken) == [1, 2]
    for eid, _ in taken:
        await bus.ack(stream, group, eid)
    assert await bus.claim_stale_work(stream, group, "other", idle_ms=0) == []
    raw = await redis_client.xrange(stream)
    assert codec.unpack(raw[0][1][b"data"]) == {"n": 0}
