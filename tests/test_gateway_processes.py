"""Several gateway processes behind one port (``CASTRAY_GATEWAY_PROCESSES``): real processes sharing the
port with SO_REUSEPORT, real Redis. The kernel spreads connections over them; each process relays every
event to its own WebSocket clients, REST answers the same from each, an upload stored through one is
served by another, a process that dies is started again, and stopping the first stops them all."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import psutil
import pytest
import redis.asyncio as aioredis

from castray.gateway.processes import ExtraProcess
from castray.local_ray import free_port
from castray.shared.bus import public_tag
from castray.shared.names import Names
from tests.support.gateway import ViewWriter, cluster, node, recv_until
from tests.support.gateway_processes import NotingSession, extra_pids, gateway_env, gateway_tree
from tests.support.waiting import wait_for

DEADLINE = 60.0
PER_PROCESS = 3  # WebSocket clients wanted on each process


@pytest.fixture
async def two(namespace: str, redis_url: str, tmp_path: Path) -> AsyncIterator[tuple[str, int]]:
    """A gateway of two processes; (base URL, the first process's pid) once both answer."""
    port = free_port()
    with gateway_tree(gateway_env(namespace, redis_url, port, tmp_path / "data", 2)) as proc:
        base = f"http://127.0.0.1:{port}"
        await both_answer(base)
        yield base, proc.pid


async def answering(base: str, wanted: int = 2) -> set[str]:
    """The instances that answered ``/api/ready`` (200) on new connections, until ``wanted`` of them."""
    seen: set[str] = set()
    noting = NotingSession()
    try:
        async def more() -> bool:
            instance, status, _ = await noting.get(f"{base}/api/ready")
            if status == 200:
                seen.add(instance)
            return len(seen) >= wanted
        await wait_for(more, f"{wanted} gateway processes answering at {base}", deadline=DEADLINE,
                       interval=0.01, ignoring=(aiohttp.ClientError, KeyError))
    finally:
        await noting.close()
    return seen


async def both_answer(base: str) -> set[str]:
    return await answering(base, 2)


async def test_each_process_relays_an_event_published_once_to_all_its_clients(
        two: tuple[str, int], redis_client: aioredis.Redis, names: Names) -> None:
    base, _ = two
    writer = ViewWriter(redis_client, names)
    await writer.reset(clusters=[cluster()], nodes=[node("a")])
    noting = NotingSession()
    clients: dict[str, list[aiohttp.ClientWebSocketResponse]] = {}
    try:
        async def one_more() -> bool:
            instance, ws = await noting.ws(f"{base.replace('http', 'ws')}/ws?topics=nodes")
            await recv_until(ws, lambda m: m.get("type") == "snapshot" and len(m["nodes"]) == 1)
            clients.setdefault(instance, []).append(ws)
            return len(clients) == 2 and all(len(v) >= PER_PROCESS for v in clients.values())
        await wait_for(one_more, f"{PER_PROCESS} WebSocket clients on each of two processes",
                       deadline=DEADLINE, interval=0)
        await writer.node(node("b"))  # one publish, to events:view
        texts = set()
        for sockets in clients.values():
            for ws in sockets:
                delta, _ = await recv_until(ws, lambda m: m.get("id") == "c1-b")
                assert delta["change"] == "added" and delta["version"] == writer.version
                texts.add(repr(sorted(delta.items())))
        assert len(texts) == 1, "every client got the same delta"
        # Each process counts its own clients in its heartbeat (GET /api/services, from Redis).
        async def counted() -> bool:
            _, _, body = await noting.get(f"{base}/api/services")
            held = {public_tag(s["instance"]): s["holds"]["ws_clients"] for s in body["services"]
                    if s["service"] == "gateway"}
            return held == {instance: len(sockets) for instance, sockets in clients.items()}
        await wait_for(counted, "each process's heartbeat counting its own WebSocket clients",
                       deadline=DEADLINE)
    finally:
        for sockets in clients.values():
            for ws in sockets:
                await ws.close()
        await noting.close()


async def test_rest_answers_the_same_from_both_processes(two: tuple[str, int], redis_client: aioredis.Redis,
                                                          names: Names) -> None:
    base, _ = two
    writer = ViewWriter(redis_client, names)
    await writer.reset(clusters=[cluster()], nodes=[node("a"), node("b", state="DEAD")])
    noting = NotingSession()
    bodies: dict[str, object] = {}
    try:
        async def from_both() -> bool:
            instance, status, body = await noting.get(f"{base}/api/nodes?state=ALIVE")
            assert status == 200, body
            bodies[instance] = body
            return len(bodies) == 2
        await wait_for(from_both, "GET /api/nodes answered by both processes", deadline=DEADLINE, interval=0)
    finally:
        await noting.close()
    first, second = bodies.values()
    assert first == second
    assert [n["id"] for n in first["nodes"]] == ["c1-a"]  # type: ignore[index]


async def test_an_upload_through_one_process_is_served_by_the_other(two: tuple[str, int]) -> None:
    base, _ = two
    payload = os.urandom(64 * 1024)
    noting = NotingSession()
    try:
        form = aiohttp.FormData()
        form.add_field("file", payload, filename="shared.bin", content_type="application/octet-stream")
        async with noting.http.post(f"{base}/api/upload", data=form) as resp:
            answer = await resp.json()
            assert resp.status == 200, answer
            stored_by = resp.headers["X-CastRay-Instance"]

        async def from_the_other() -> bytes | None:
            async with noting.http.get(f"{base}/api/uploads/{answer['upload_id']}/content") as r:
                assert r.status == 200, await r.text()
                return await r.read() if r.headers["X-CastRay-Instance"] != stored_by else None
        assert await wait_for(from_the_other, "the upload served by the other process",
                              deadline=DEADLINE, interval=0) == payload
    finally:
        await noting.close()


async def test_a_process_that_dies_is_started_again_and_stopping_the_first_stops_all(
        two: tuple[str, int]) -> None:
    base, first = two
    instances = await both_answer(base)
    assert all(":" + str(first) not in tag and "@" not in tag for tag in instances), instances
    (extra,) = extra_pids(first)
    os.kill(extra, signal.SIGKILL)
    await wait_for(lambda: gone(extra), "the extra process gone", deadline=DEADLINE)
    again = await both_answer(base)
    assert len(again - instances) == 1, (instances, again)  # a new process: a new tag
    (restarted,) = [pid for pid in extra_pids(first) if not gone(pid)]
    assert restarted != extra
    os.kill(first, signal.SIGTERM)
    await wait_for(lambda: gone(restarted), "the extra stopped with the first", deadline=DEADLINE)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_a_process_that_cannot_be_started_is_tried_again() -> None:
    """A spawn that fails (here E2BIG: an environment string over the kernel's limit, as EMFILE or
    EAGAIN would on a busy host) must not end the keeper, and with it every later restart."""
    extra = ExtraProcess(1, {"CASTRAY_TOO_BIG": "x" * 256 * 1024})
    extra.start()
    try:
        await wait_for(lambda: extra.restarts >= 2, "two failed starts tried again", deadline=DEADLINE)
        assert extra.process is None
    finally:
        await extra.close()
