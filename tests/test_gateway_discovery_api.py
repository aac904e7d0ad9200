"""The seed's discover / connect / disconnect endpoints over the real bus: a tiny discovery responder in
the test answers the gateway's commands (real Redis, real correlation ids); and one test with none."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from castray.shared.bus import Bus
from castray.shared.errors import CommandError
from castray.shared.names import Names
from castray.shared.replies import ConnectReply, DisconnectReply, DiscoverReply
from tests.support.gateway import cluster, node
from tests.support.waiting import wait_for

pytest_plugins = ("tests.support.gateway_fixtures",)  # make_gateway, gateway, view

FAILURES = {
    "bad::addr": CommandError("not an address", status=400, code="address_malformed"),
    "10.0.0.1:8265": CommandError(
        "dashboard 10.0.0.1:8265 unreachable", status=422, code="dashboard_unreachable"
    ),
    "127.0.0.1:9": CommandError("127.0.0.1:9 is not a Ray dashboard", status=422, code="not_ray_dashboard"),
    "127.0.0.1:8270": CommandError("GCS unreachable", status=422, code="gcs_unreachable"),
    "127.0.0.1:8271": CommandError("Ray 2.9 is not supported", status=422, code="incompatible_version"),
    "127.0.0.1:8272": CommandError("no answer in 5 s", status=422, code="timeout"),
}


class Discovery:
    """Answers discovery commands the way the discovery service does, and records them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.hang = asyncio.Event()

    async def __call__(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((op, args))
        if op == "discover":
            c1 = cluster("c1")
            reply = DiscoverReply(found=[c1], clusters=[c1], external_nodes=[node("h")])
            return reply.model_dump(mode="json")
        if op == "connect":
            address = args["cluster_address"]
            if address in FAILURES:
                raise FAILURES[address]
            if address == "hang:1":
                await asyncio.sleep(3600)
            c = cluster("m1", port=8266, found_by="manual")
            return ConnectReply(cluster=c, message=f"connected to {c.name}").model_dump(mode="json")
        if op == "disconnect":
            which = args.get("cluster")
            if which == "nope":
                raise CommandError("no known cluster 'nope'", status=404, code="not_found")
            return DisconnectReply(disconnected=[which] if which else ["c1", "m1"]).model_dump(mode="json")
        raise CommandError(f"unknown discovery command {op!r}", status=400, code="unknown_command")


@pytest.fixture
async def discovery(redis_client: aioredis.Redis, names: Names) -> AsyncIterator[Discovery]:
    handler = Discovery()
    bus = Bus(redis_client, names, source="test-discovery")
    task = asyncio.create_task(bus.serve_commands("discovery", handler))

    async def listening() -> bool:
        counts = dict(await redis_client.pubsub_numsub(names.commands("discovery")))
        return any(counts.values())

    await wait_for(listening, what="the test discovery responder")
    yield handler
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_discover_external(gateway, discovery: Discovery) -> None:
    resp = await gateway.post("/api/cluster/discover-external")
    assert resp.status == 200
    body = await resp.json()
    assert body["success"] is True and body["error"] is None
    assert body["connected_cluster"] == "127.0.0.1:8265"
    assert [c["id"] for c in body["discovered_clusters"]] == ["c1"] and list(body["external_nodes"]) == [
        "c1-h"
    ]
    assert discovery.calls == [("discover", {})]


async def test_connect_external(gateway, discovery: Discovery) -> None:
    resp = await gateway.post("/api/cluster/connect-external", json={"cluster_address": " 127.0.0.1:8266 "})
    assert resp.status == 200
    body = await resp.json()
    assert (
        body["success"] is True and body["cluster"]["id"] == "m1" and body["message"] == "connected to ray-m1"
    )
    assert discovery.calls == [("connect", {"cluster_address": "127.0.0.1:8266"})]


@pytest.mark.parametrize(
    ("address", "status", "code"),
    [
        ("bad::addr", 400, "address_malformed"),
        ("10.0.0.1:8265", 422, "dashboard_unreachable"),
        ("127.0.0.1:9", 422, "not_ray_dashboard"),
        ("127.0.0.1:8270", 422, "gcs_unreachable"),
        ("127.0.0.1:8271", 422, "incompatible_version"),
        ("127.0.0.1:8272", 422, "timeout"),
    ],
)
async def test_connect_failures_keep_discoverys_status_and_code(
    gateway, discovery: Discovery, address: str, status: int, code: str
) -> None:
    resp = await gateway.post("/api/cluster/connect-external", json={"cluster_address": address})
    body = await resp.json()
    assert (resp.status, body["code"], body["success"]) == (status, code, False)
    assert body["error"] == str(FAILURES[address])


async def test_connect_that_never_answers_is_a_bounded_503(make_gateway, discovery: Discovery) -> None:
    client = await make_gateway(command_timeout=0.5)
    resp = await client.post("/api/cluster/connect-external", json={"cluster_address": "hang:1"})
    assert resp.status == 503
    assert (await resp.json())["code"] == "timeout"
    assert (await client.get("/api/health")).status == 200


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 400),
        ({"cluster_address": 8265}, 400),
        ({"cluster_address": None}, 400),
        ({"cluster_address": ["127.0.0.1:8265"]}, 400),
        ({"cluster_address": ""}, 400),
        ({"cluster_address": "x" * 513}, 400),
        ({"cluster_address": "   "}, 400),
        ([], 400),
        ("127.0.0.1:8265", 400),
        ({"cluster_address": "x" * (2 * 1024 * 1024)}, 413),
    ],
)
async def test_connect_rejects_bad_bodies_without_asking_discovery(
    gateway, discovery: Discovery, body: Any, status: int
) -> None:
    resp = await gateway.post(
        "/api/cluster/connect-external", data=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    assert resp.status == status
    answer = await resp.json()
    assert answer["success"] is False and answer["status"] == status and answer["error"]
    assert discovery.calls == []


async def test_disconnect_all_and_one(gateway, discovery: Discovery) -> None:
    body = await (await gateway.delete("/api/cluster/disconnect-external")).json()
    assert body == {"success": True, "message": "disconnected 2 cluster(s)", "disconnected": ["c1", "m1"]}
    body = await (await gateway.delete("/api/cluster/disconnect-external?cluster=127.0.0.1:8266")).json()
    assert body["disconnected"] == ["127.0.0.1:8266"]
    resp = await gateway.delete("/api/cluster/disconnect-external?cluster=nope")
    assert resp.status == 404 and (await resp.json())["code"] == "not_found"
    assert discovery.calls == [
        ("disconnect", {}),
        ("disconnect", {"cluster": "127.0.0.1:8266"}),
        ("disconnect", {"cluster": "nope"}),
    ]


async def test_concurrent_commands_each_get_their_own_answer(gateway, discovery: Discovery) -> None:
    good = [
        gateway.post("/api/cluster/connect-external", json={"cluster_address": "127.0.0.1:8266"})
        for _ in range(5)
    ]
    bad = [
        gateway.post("/api/cluster/connect-external", json={"cluster_address": "127.0.0.1:8271"})
        for _ in range(5)
    ]
    statuses = [r.status for r in await asyncio.gather(*good, *bad)]
    assert statuses == [200] * 5 + [422] * 5


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/cluster/discover-external"),
        ("POST", "/api/cluster/connect-external"),
        ("DELETE", "/api/cluster/disconnect-external"),
    ],
)
async def test_without_discovery_running_it_is_503(gateway, method: str, path: str) -> None:
    resp = await gateway.request(method, path, json={"cluster_address": "127.0.0.1:8265"})
    assert resp.status == 503
    body = await resp.json()
    assert body["code"] == "service_unavailable" and "discovery" in body["error"]


async def test_connect_answers_once_the_view_holds_what_discovery_did(
        gateway, discovery: Discovery, redis_client: aioredis.Redis, names: Names) -> None:
    """Read your writes: external-info right after connect-external already shows the new cluster."""
    await redis_client.hset(names.discovery_meta, mapping={"source": "d1", "seq": 7})
    await redis_client.hset(names.view_meta, mapping={"source": "d1", "seq": 6})
    call = asyncio.create_task(gateway.post("/api/cluster/connect-external",
                                            json={"cluster_address": "127.0.0.1:8266"}))
    await wait_for(lambda: bool(discovery.calls), what="the connect command")
    await asyncio.sleep(0.3)
    assert not call.done()  # the view is one event behind discovery: the gateway waits for it
    await redis_client.hset(names.view_meta, mapping={"seq": 7})
    resp = await asyncio.wait_for(call, 10)
    assert resp.status == 200 and (await resp.json())["cluster"]["id"] == "m1"


async def test_a_view_that_never_catches_up_still_gets_an_answer(
        gateway, discovery: Discovery, redis_client: aioredis.Redis, names: Names) -> None:
    await redis_client.hset(names.discovery_meta, mapping={"source": "d1", "seq": 7})
    await redis_client.hset(names.view_meta, mapping={"source": "d0", "seq": 99})  # registry down, stale
    resp = await gateway.delete("/api/cluster/disconnect-external")
    assert resp.status == 200 and (await resp.json())["success"] is True


async def test_a_command_sent_while_discovery_changes_hands_reaches_the_new_leader(
        make_gateway, redis_client: aioredis.Redis, names: Names) -> None:
    """The leader died, its lease has not expired yet, and no replica listens: the gateway sends the
    command again until a new leader listens, instead of a 503 at once."""
    gateway = await make_gateway(command_timeout=20)
    await redis_client.set(names.discovery_leader, "discovery-that-died", px=1500)
    sent = asyncio.create_task(gateway.post("/api/cluster/discover-external"))
    await asyncio.sleep(1.0)  # nobody listens meanwhile: without the resend this is a 503 already
    handler = Discovery()
    bus = Bus(redis_client, names, source="test-new-leader")
    serving = asyncio.create_task(bus.serve_commands("discovery", handler))
    try:
        resp = await sent
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["success"] is True
        assert [op for op, _ in handler.calls] == ["discover"]  # answered once
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
