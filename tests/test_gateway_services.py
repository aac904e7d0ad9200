"""``GET /api/services`` and ``/api/ready`` on the real app, and `castray.shared.heartbeat` itself: the
typed entry, removal on a clean stop, pruning of long-silent replicas, the queue depth, the token."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from castray.client import AsyncClient
from castray.gateway import keys
from castray.shared import codec
from castray.shared.api import ServiceList
from castray.shared.heartbeat import Heartbeat, Holds, ServiceBeat, read_replicas
from castray.shared.names import TRANSFER_GROUP, Names
from tests.support.waiting import wait_for

pytest_plugins = ("tests.support.gateway_fixtures",)

TOKEN = "a-token-of-this-test-0123456789"


def _beat(service: str, instance: str, *, age: float, interval: float = 1.0) -> ServiceBeat:
    now = time.time()
    return ServiceBeat(service=service, instance=instance, host="elsewhere", pid=1, started=now - age - 5,
                       beat=now - age, interval=interval, version="0")


async def test_the_gateway_lists_its_own_heartbeat_and_the_reply_is_typed(make_gateway) -> None:
    client = await make_gateway()

    async def listed() -> ServiceList | None:
        body = ServiceList.model_validate(await (await client.get("/api/services")).json())
        return body if [r.service for r in body.services] == ["gateway"] else None

    body = await wait_for(listed, "the gateway's own heartbeat")
    (mine,) = body.services
    assert mine.instance == client.server.app[keys.BUS].source
    assert not mine.stale and mine.holds.ws_clients == 0 and body.stale == 0
    assert body.transfer_queue.length == 0 and body.transfer_queue.pending == 0


async def test_stale_entries_are_marked_and_long_silent_ones_removed(
        make_gateway, redis_client: aioredis.Redis, names: Names) -> None:
    client = await make_gateway(service_forget_s=600)
    await redis_client.hset(names.services, mapping={
        "transfer:fresh": codec.encode(_beat("transfer", "fresh", age=0.0, interval=60)),
        "transfer:late": codec.encode(_beat("transfer", "late", age=4.0, interval=1.0)),
        "discovery:gone": codec.encode(_beat("discovery", "gone", age=3600.0)),
        "transfer:garbled": b"\x00not msgpack of a beat",
    })
    body = await (await client.get("/api/services")).json()
    by_instance = {r["instance"]: r for r in body["services"] if r["service"] != "gateway"}
    assert set(by_instance) == {"fresh", "late"}
    assert by_instance["late"]["stale"] is True and by_instance["fresh"]["stale"] is False
    assert body["stale"] == 1
    assert not await redis_client.hexists(names.services, "discovery:gone")  # pruned by the reader
    assert await redis_client.hexists(names.services, "transfer:garbled")  # not ours to judge: kept


async def test_queue_depth_is_the_stream_length_and_the_group_s_pending(
        make_gateway, redis_client: aioredis.Redis, names: Names) -> None:
    client = await make_gateway()
    for i in range(3):
        await redis_client.xadd(names.transfer_requests, {"id": f"t{i}"})
    assert (await (await client.get("/api/services")).json())["transfer_queue"] == {"length": 3, "pending": 0}
    await redis_client.xgroup_create(names.transfer_requests, TRANSFER_GROUP, id="0")
    await redis_client.xreadgroup(TRANSFER_GROUP, "w1", {names.transfer_requests: ">"}, count=2)
    assert (await (await client.get("/api/services")).json())["transfer_queue"] == {"length": 3, "pending": 2}


async def test_services_needs_the_token_and_ready_does_not(make_gateway) -> None:
    client = await make_gateway(api_token=TOKEN)
    assert (await client.get("/api/services")).status == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert (await client.get("/api/services", headers=auth)).status == 200
    resp = await client.get("/api/ready")
    assert resp.status == 200
    assert await resp.json() == {"ready": True, "redis": True, "events_subscribed": True, "error": None}


async def test_the_spec_describes_services_and_ready(gateway) -> None:
    spec = await (await gateway.get("/api/openapi.json")).json()
    ok = spec["paths"]["/api/services"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"]["$ref"].endswith("/ServiceList")
    assert "ServiceList" in spec["components"]["schemas"]
    assert "/api/ready" in spec["paths"]


async def test_a_heartbeat_writes_its_typed_entry_and_removes_it_when_closed(
        redis_client: aioredis.Redis, names: Names) -> None:
    running = [7]
    beat = Heartbeat(redis_client, names, service="transfer", instance="t-1", interval=0.05,
                     holds=lambda: Holds(transfers_running=running[0]))
    beat.start()
    try:
        await wait_for(lambda: beat.beats >= 2, "two beats")
        replicas = await read_replicas(redis_client, names, stale_beats=3, forget_after=60)
        (entry,) = replicas
        assert entry.key == "transfer:t-1" and entry.holds.transfers_running == 7 and not entry.stale
        assert entry.holds.leading is None and entry.pid > 0 and entry.version
    finally:
        await beat.close()
    assert not await redis_client.hexists(names.services, "transfer:t-1")
    assert await read_replicas(redis_client, names, stale_beats=3, forget_after=60) == []


async def test_the_sdk_reads_services_and_ready_typed(gateway) -> None:
    async with AsyncClient(str(gateway.make_url("")).rstrip("/"), token="") as api:
        assert (await api.ready()).ready is True
        listed = await wait_for(lambda: _gateway_listed(api), "the gateway's heartbeat through the SDK")
        assert listed.count == 1 and listed.services[0].service == "gateway"


async def _gateway_listed(api) -> ServiceList | None:
    body = await api.services()
    return body if body.count == 1 else None
