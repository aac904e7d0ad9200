"""Fan-out that costs the same for 1 client or 1,000 (issue 16, item 2): each relayed message is encoded
once per event and the very bytes are offered to every client; the /ws snapshot comes from the cached bytes
of the version (counted in tests/test_gateway_view_cache.py); a client that is behind holds one
status_update, the newest; the whole-view status_update goes only to clients of its topic, spaced by its
size. Nothing here is timed."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import redis.asyncio as aioredis

from castray.gateway.event_hub import (
    STATUS_BYTES_PER_SECOND,
    EventHub,
    Frame,
    Resync,
    Subscriber,
    frames_for,
    status_gap,
)
from castray.gateway.view_cache import ViewCache
from castray.shared.bus import Bus
from castray.shared.events import NodeDelta, ViewChangedEvent
from castray.shared.names import Names
from castray.shared.view import ViewReader
from tests.support.gateway import ViewWriter, cluster, node, of_type, recv, recv_until

pytest_plugins = ("tests.support.gateway_fixtures",)  # make_gateway, gateway, view


def delta_event(version: int) -> ViewChangedEvent:
    delta = NodeDelta(epoch="e1", version=version, change="added", id="c1-w", node=node("w"))
    return ViewChangedEvent(source="node-registry", seq=version, time=time.time(), payload=delta)


async def test_a_relayed_event_is_encoded_once_and_the_same_bytes_reach_every_client(
    redis_client: aioredis.Redis, names: Names
) -> None:
    hub = EventHub(Bus(redis_client, names, source="test"), ViewReader(redis_client, names))
    subs = [hub.subscribe(["nodes"], 10) for _ in range(50)]
    (frame,) = frames_for(delta_event(2))
    assert isinstance(frame.text, bytes)
    hub.publish(frame)
    got = [s.queue.get_nowait() for s in subs]
    assert all(item is frame for item in got)  # one object, one encoding, for fifty clients


def status(n: int) -> Frame:
    return Frame("status", b'{"type":"status_update","data":{"n":%d}}' % n)


def test_a_client_behind_holds_one_status_update_the_newest() -> None:
    sub = Subscriber(frozenset({"status", "nodes"}), maxsize=100)
    for n in range(5):
        sub.offer(status(n))
    assert sub.queue.qsize() == 1
    assert isinstance(sub.queue.get_nowait(), Frame) and sub.take_status() == status(4)
    assert sub.take_status() is None  # sent: a second marker would send nothing
    sub.offer(status(5))
    assert sub.queue.qsize() == 1 and sub.take_status() == status(5)


def test_an_overflow_drops_the_pending_status_too() -> None:
    sub = Subscriber(frozenset({"status", "transfers"}), maxsize=2)
    sub.offer(status(1))
    for _ in range(3):
        sub.offer(Frame("transfers", b"{}"))
    assert isinstance(sub.queue.get_nowait(), Resync) and sub.take_status() is None


def test_status_update_is_not_offered_to_clients_that_did_not_name_it() -> None:
    sub = Subscriber(frozenset({"clusters", "nodes"}), maxsize=10)
    sub.offer(status(1))
    assert sub.queue.empty() and sub.take_status() is None


def test_a_big_status_is_pushed_no_faster_than_its_byte_budget() -> None:
    assert status_gap(1.0, 450_000) == 1.0
    assert status_gap(1.0, 5 * STATUS_BYTES_PER_SECOND) == 5.0
    assert status_gap(0.05, 0) == 0.05


async def test_ws_offers_no_per_client_compression(gateway, view: ViewWriter) -> None:
    await view.reset(epoch="e1", clusters=[cluster("c1")], nodes=[node("h", head=True)])
    async with gateway.ws_connect("/ws?topics=nodes", compress=15) as ws:
        assert ws.compress == 0  # permessage-deflate refused: the shared bytes go as they are
        assert (await recv(ws))["type"] == "snapshot"
        await view.node(node("w"))
        msg, _ = await recv_until(ws, of_type("node-changed"))
        assert msg["id"] == "c1-w"


async def test_the_originals_bare_ws_still_gets_status_update(gateway, view: ViewWriter) -> None:
    await view.reset(epoch="e1", clusters=[cluster("c1")], nodes=[node("h", head=True)])
    async with gateway.ws_connect("/ws") as ws:
        await view.node(node("w"))
        msg, _ = await recv_until(
            ws, lambda m: m["type"] == "status_update" and m["data"]["total_nodes"] == 2)
        assert {s["node_id"] for s in msg["data"]["node_statuses"]} == {"c1-h", "c1-w"}


async def test_callers_that_arrive_together_share_one_read_of_the_views_meta(
    redis_client: aioredis.Redis, names: Names, view: ViewWriter
) -> None:
    await view.reset(epoch="e1", clusters=[cluster("c1")], nodes=[node("h", head=True)])
    cache = ViewCache(ViewReader(redis_client, names))
    metas = await asyncio.gather(*(cache.meta() for _ in range(500)))
    assert cache.meta_reads == 1 and {(m.epoch, m.version) for m in metas} == {("e1", 1)}
    await view.node(node("w"))
    assert (await cache.meta()).version == 2 and cache.meta_reads == 2  # a later caller: a fresh read


async def test_a_connect_storm_beyond_the_redis_pool_gets_every_snapshot(gateway, view: ViewWriter) -> None:
    """More sockets at once than the gateway's Redis pool has connections (100): none is refused."""
    await view.reset(epoch="e1", clusters=[cluster("c1")], nodes=[node("h", head=True)])
    url = gateway.make_url("/ws?topics=nodes")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        sockets = await asyncio.gather(*(http.ws_connect(url) for _ in range(300)))
        try:
            firsts = await asyncio.gather(*(recv(ws) for ws in sockets))
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets))
    assert {m["type"] for m in firsts} == {"snapshot"} and {m["version"] for m in firsts} == {1}


async def test_concurrent_status_requests_beyond_the_redis_pool_are_all_answered(gateway,
                                                                                 view: ViewWriter) -> None:
    """More /api/status at once than the gateway's Redis pool has connections: the view's meta and the
    discovery leader are each read once per round, so none is a 503."""
    await view.reset(epoch="e1", clusters=[cluster("c1")], nodes=[node("h", head=True)])
    url = gateway.make_url("/api/status")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def one() -> int:
            async with http.get(url) as resp:
                await resp.read()
                return resp.status

        assert set(await asyncio.gather(*(one() for _ in range(300)))) == {200}
