"""Backpressure (issue 16, item 3): beyond ``heavy_requests`` building a large body and ``heavy_queue``
waiting, a heavy request is a 503 ``overloaded`` with Retry-After; a 304 and health are never shed; a
request whose client has gone gives its slot back and builds nothing. Slots are held by the test (or by a
gzip the test holds in its thread), so nothing here is timed."""

from __future__ import annotations

import asyncio
import gzip
import logging
import socket
import threading
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from castray.gateway import keys
from castray.gateway.app import create_app
from castray.gateway.backpressure import HeavyGate
from castray.gateway.settings import GatewaySettings
from tests.support.feed import make_cluster, make_node
from tests.support.gateway import ViewWriter
from tests.support.waiting import wait_for

pytest_plugins = ("tests.support.gateway_fixtures",)  # make_gateway, view

HEAVY = ["/api/nodes", "/api/nodes?state=ALIVE", "/api/nodes/external", "/api/status", "/api/clusters",
         "/api/clusters/c0", "/api/cluster/external-info"]


async def fill(view: ViewWriter) -> None:
    await view.reset(epoch="bp", clusters=[make_cluster(0)], nodes=[make_node("c0", i) for i in range(20)])


def gate_of(client: TestClient) -> HeavyGate:
    return client.server.app[keys.HEAVY_GATE]


async def assert_shed(resp: aiohttp.ClientResponse) -> None:
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "1"
    body = await resp.json()
    assert body["success"] is False and body["code"] == "overloaded" and body["status"] == 503
    assert body["error"]


@pytest.fixture
def held_gzip(monkeypatch: pytest.MonkeyPatch) -> Any:
    """gzip.compress blocks (in its thread) until the test sets the event it returns: a request stays inside
    its slot for as long as the test wants."""
    started, release = threading.Event(), threading.Event()
    compress = gzip.compress

    def held(data: bytes, level: int = 9) -> bytes:
        started.set()
        release.wait(60)
        return compress(data, level)

    monkeypatch.setattr(gzip, "compress", held)
    yield started, release
    release.set()


async def test_beyond_the_limit_a_heavy_request_is_503_with_retry_after(make_gateway, view) -> None:
    client = await make_gateway(heavy_requests=1, heavy_queue=0)
    await fill(view)
    etags = {}
    for path in HEAVY:
        resp = await client.get(path)
        assert resp.status == 200, path
        etags[path] = resp.headers["ETag"]
    gate = gate_of(client)
    async with gate.slot():
        for path in HEAVY:
            await assert_shed(await client.get(path))
        assert gate.shed == len(HEAVY)
        for path in HEAVY:  # an unchanged version costs nothing: 304, never shed
            assert (await client.get(path, headers={"If-None-Match": etags[path]})).status == 304
        for path in ("/health", "/api/health", "/api/ready", "/api/nodes/c0-n0000"):
            assert (await client.get(path)).status == 200, path
    assert gate.in_use == 0
    for path in HEAVY:
        assert (await client.get(path)).status == 200
    assert gate.shed == len(HEAVY)


async def test_a_queued_request_waits_for_the_slot_and_the_next_is_shed(make_gateway, view) -> None:
    client = await make_gateway(heavy_requests=1, heavy_queue=1)
    await fill(view)
    gate = gate_of(client)
    async with gate.slot():
        queued = asyncio.create_task(client.get("/api/nodes"))
        await wait_for(lambda: gate.waiting == 1, what="the request in the queue")
        await assert_shed(await client.get("/api/status"))
    resp = await queued
    assert resp.status == 200 and len((await resp.json())["nodes"]) == 20
    assert gate.shed == 1 and gate.in_use == 0 and gate.waiting == 0


async def test_a_client_that_disconnects_mid_request_frees_its_slot(make_gateway, view, held_gzip) -> None:
    started, release = held_gzip
    client = await make_gateway(heavy_requests=1, heavy_queue=0)
    await fill(view)
    plain = await client.get("/api/nodes", headers={"Accept-Encoding": "identity"})
    assert plain.status == 200
    gate = gate_of(client)
    inside = asyncio.create_task(client.get("/api/nodes", headers={"Accept-Encoding": "gzip"}))
    await wait_for(lambda: gate.in_use == 1 and started.is_set(), what="a request holding the slot")
    await assert_shed(await client.get("/api/status"))
    assert (await client.get("/api/nodes", headers={"If-None-Match": plain.headers["ETag"]})).status == 304
    assert (await client.get("/api/health")).status == 200
    inside.cancel()  # the client goes away mid-request
    await wait_for(lambda: gate.in_use == 0, what="the slot given back")
    assert (await client.get("/api/status", headers={"Accept-Encoding": "identity"})).status == 200
    release.set()
    assert (await client.get("/api/nodes", headers={"Accept-Encoding": "gzip"})).status == 200


@pytest.fixture
async def runner_gateway(namespace: str, redis_url: str) -> AsyncIterator[tuple[web.AppRunner, str]]:
    """The gateway under `web.AppRunner` as ``main`` runs it: handlers are not cancelled on a disconnect."""
    app = create_app(GatewaySettings(namespace=namespace, redis_url=redis_url, heavy_requests=1,
                                     heavy_queue=1))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield runner, f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def test_without_handler_cancellation_a_queued_request_whose_client_left_builds_nothing(
        runner_gateway, view) -> None:
    runner, base = runner_gateway
    assert runner.server is not None
    server, app = runner.server, runner.app
    await fill(view)
    gate, cache = app[keys.HEAVY_GATE], app[keys.VIEW_CACHE]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        assert (await session.get(f"{base}/api/nodes")).status == 200
        await wait_for(lambda: not server.connections, what="the first request's handler done")
        builds = cache.body_builds
        async with gate.slot():
            queued = asyncio.create_task(session.get(f"{base}/api/nodes?limit=3"))
            await wait_for(lambda: gate.waiting == 1, what="the request in the queue")
            queued.cancel()  # its client goes away; its handler is not cancelled, and still waits
            await wait_for(lambda: all(h.transport is None for h in server.connections),
                           what="the server to see the connection closed")
            assert gate.waiting == 1
        await wait_for(lambda: gate.waiting == 0 and gate.in_use == 0, what="the queued request dropped")
        assert cache.body_builds == builds
        resp = await session.get(f"{base}/api/nodes?limit=3")
        assert resp.status == 200 and cache.body_builds == builds + 1


async def test_a_client_that_stops_reading_holds_its_slot_until_it_leaves(runner_gateway, view,
                                                                          caplog) -> None:
    """A body larger than the kernel's socket buffers to a client that reads nothing: its request holds
    the slot while it is written, and gives it back (without handler cancellation) once the client closes."""
    runner, base = runner_gateway
    app = runner.app
    gate = app[keys.HEAVY_GATE]
    nodes = [make_node(f"c{c}", i) for c in range(4) for i in range(5000)]
    await view.reset(epoch="big", clusters=[make_cluster(c) for c in range(4)], nodes=nodes)
    host, port = base.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    try:
        await asyncio.get_running_loop().sock_sendall(
            sock, f"GET /api/nodes HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        head = await asyncio.get_running_loop().sock_recv(sock, 64)
        assert head.startswith(b"HTTP/1.1 200")  # its body is being written ...
        assert gate.in_use == 1  # ... inside the slot, and cannot all be: the client reads no more
    finally:
        sock.close()
    await wait_for(lambda: gate.in_use == 0, what="the slot given back")
    async with aiohttp.ClientSession() as session:
        resp = await session.get(f"{base}/api/nodes?limit=1")
        assert resp.status == 200 and (await resp.json())["total"] == len(nodes)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # a client gone is no error
