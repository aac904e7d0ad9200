"""``GET /metrics``: the Prometheus text format read back with prometheus_client's own parser; request
counters move by exactly the requests made, labelled by route (never the raw path); the WebSocket gauge
follows a client; the view's gauges; the token; a transfer's events move the transfer counters by exactly
its figures, and the destination throughput histogram by exactly its destinations' bytes over their times;
the heavy requests' slots, queue and shed count; the request stream's depth (after transfers queued through
the API too), its pending entries and the replicas' heartbeats (a stale one down), read at scrape time and
left out when their read fails. (Discovery's poll figures: test_gateway_metrics_discovery.py.)"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from castray.gateway import keys
from castray.shared import codec
from castray.shared.bus import Bus
from castray.shared.events import (
    TransferCancelled,
    TransferCompleted,
    TransferFailed,
    TransferProgress,
    TransferStarted,
)
from castray.shared.heartbeat import ServiceBeat
from castray.shared.names import TRANSFER_GROUP, Names
from tests.support.gateway import ViewWriter, cluster, node
from tests.support.gateway_files import STANDARD_VIEW, seed_view
from tests.support.gateway_files import gateway as files_gateway
from tests.support.metrics import TimedPublisher
from tests.support.waiting import wait_for

pytest_plugins = ("tests.support.gateway_fixtures",)  # make_gateway, gateway, view

TOKEN = "metrics-token-0123456789"


async def scrape(client, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of one scrape."""
    resp = await client.get("/metrics", headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    out = {}
    for family in text_string_to_metric_families(await resp.text()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def requests(samples, method: str, route: str, status: str) -> float:
    key = ("castray_gateway_http_requests_total",
           tuple(sorted({"method": method, "route": route, "status": status}.items())))
    return samples.get(key, 0.0)


def durations(samples, route: str) -> float:
    return samples.get(("castray_gateway_http_request_duration_seconds_count", (("route", route),)), 0.0)


async def test_request_counters_move_by_exactly_the_requests_made(gateway, view: ViewWriter) -> None:
    await view.reset(clusters=[cluster("c1")], nodes=[node("a", "c1"), node("b", "c1", state="DEAD")])
    before = await scrape(gateway)
    for _ in range(3):
        assert (await gateway.get("/api/nodes")).status == 200
    for nid in ("c1-a", "c1-b", "nope"):
        await gateway.get(f"/api/nodes/{nid}")
    assert (await gateway.get("/no/such/path")).status == 404
    after = await scrape(gateway)

    assert requests(after, "GET", "/api/nodes", "200") - requests(before, "GET", "/api/nodes", "200") == 3
    assert durations(after, "/api/nodes") - durations(before, "/api/nodes") == 3
    node_route = next(r.resource.canonical for r in gateway.app.router.routes()
                      if r.resource is not None and r.resource.canonical.startswith("/api/nodes/{"))
    assert requests(after, "GET", node_route, "200") - requests(before, "GET", node_route, "200") == 2
    assert requests(after, "GET", node_route, "404") - requests(before, "GET", node_route, "404") == 1
    assert requests(after, "GET", "unmatched", "404") - requests(before, "GET", "unmatched", "404") == 1
    routes = {dict(labels).get("route") for (_, labels) in after}
    assert not any(r and ("c1-a" in r or "nope" in r or "/no/such" in r) for r in routes)  # bounded
    # the first scrape is counted by the second, not by itself
    assert requests(after, "GET", "/metrics", "200") - requests(before, "GET", "/metrics", "200") == 1

    assert after[("castray_view_version", ())] == view.version
    assert after[("castray_nodes", (("state", "ALIVE"),))] == 1
    assert after[("castray_nodes", (("state", "DEAD"),))] == 1
    assert after[("castray_clusters", (("state", "alive"),))] == 1
    assert after[("castray_gateway_events_subscribed", ())] == 1


async def test_methods_outside_the_api_are_counted_as_other(gateway) -> None:
    """HTTP allows any token as a method (aiohttp's Python parser takes any; its C parser, llhttp's few
    dozen, WebDAV's and RTSP's among them): none but the API's own may be a series kept forever."""
    before = await scrape(gateway)
    others = ("PROPFIND", "MKCOL", "PURGE", "REPORT", "SEARCH")
    for method in others:
        assert (await gateway.request(method, "/api/nodes")).status == 405
    after = await scrape(gateway)

    methods = {dict(labels).get("method") for (_, labels) in after}
    assert methods.isdisjoint(others), methods
    assert requests(after, "other", "unmatched", "405") - requests(before, "other", "unmatched", "405") == 5


async def test_websocket_gauge_follows_a_client(gateway) -> None:
    gauge = ("castray_gateway_websocket_clients", ())
    assert (await scrape(gateway))[gauge] == 0
    async with gateway.ws_connect("/ws") as ws:
        await ws.receive_json()  # the snapshot: the handler has registered the client
        assert (await scrape(gateway))[gauge] == 1

    async def gone() -> bool:
        return (await scrape(gateway))[gauge] == 0

    await wait_for(gone, what="the WebSocket gauge back to 0")


async def test_metrics_needs_the_token_and_is_get_only(make_gateway) -> None:
    client = await make_gateway(api_token=TOKEN)
    resp = await client.get("/metrics")
    assert resp.status == 401
    assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status == 401
    samples = await scrape(client, Authorization=f"Bearer {TOKEN}")
    assert requests(samples, "GET", "/metrics", "401") == 2
    assert (await client.post("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})).status == 405
    assert (await client.head("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})).status == 405
    spec = await (await client.get("/api/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})).json()
    op = spec["paths"]["/metrics"]["get"]
    assert list(op) and set(op["responses"]) >= {"200", "401"}
    assert "text/plain; version=0.0.4" in op["responses"]["200"]["content"]
    assert list(spec["paths"]["/metrics"]) == ["get"]


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_transfer_counters_move_by_exactly_one_transfers_figures(
        gateway, redis_client: aioredis.Redis, names: Names) -> None:
    bus = Bus(redis_client, names, source="test-transfer")
    before = await scrape(gateway)
    events = [TransferStarted(transfer_id="t1", mode="broadcast", bytes_total=1000, targets=["c1-a", "c1-b"]),
              TransferProgress(transfer_id="t1", node_id="c1-a", bytes_done=500, bytes_total=1000),
              # a second attempt's start, as a worker that took over publishes it: the same transfer
              TransferStarted(transfer_id="t1", mode="broadcast", bytes_total=1000, targets=["c1-a", "c1-b"]),
              TransferCompleted(transfer_id="t1", node_id="c1-a", path="/tmp/f", sha256="ab",
                                bytes_total=1000),
              TransferFailed(transfer_id="t1", node_id="c1-b", error="node died"),
              TransferCompleted(transfer_id="t1", node_id=None, sha256="ab", bytes_total=1000)]
    for payload in events:
        await bus.publish(names.transfer_events, payload)

    async def relayed() -> dict | None:
        samples = await scrape(gateway)
        done = value(samples, "castray_ws_events_relayed_total", type="transfer-completed") == 2
        return samples if done else None

    after = await wait_for(relayed, what="the transfer's events relayed")

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("castray_transfers_total", state="started", mode="broadcast") == 1
    assert moved("castray_transfers_total", state="completed", mode="broadcast") == 1
    assert moved("castray_transfers_total", state="failed", mode="broadcast") == 0
    assert moved("castray_transfer_destinations_total", state="completed") == 1
    assert moved("castray_transfer_destinations_total", state="failed") == 1
    assert moved("castray_transfer_bytes_delivered_total") == 1000
    assert moved("castray_transfer_duration_seconds_count", state="completed") == 1
    for event_type, count in (("transfer-started", 2), ("transfer-progress", 1), ("transfer-failed", 1)):
        assert moved("castray_ws_events_relayed_total", type=event_type) == count

    # A transfer whose start this gateway never saw: counted when it ends, mode unknown, no duration.
    await bus.publish(names.transfer_events, TransferCancelled(transfer_id="t0"))

    async def cancelled() -> bool:
        return value(await scrape(gateway), "castray_transfers_total", state="cancelled", mode="unknown") == 1

    await wait_for(cancelled, what="the cancelled transfer counted")
    assert value(await scrape(gateway), "castray_transfer_duration_seconds_count", state="cancelled") == 0


async def test_stream_depth_pending_and_heartbeats_read_at_scrape(
        gateway, redis_client: aioredis.Redis, names: Names) -> None:
    stream = names.transfer_requests
    samples = await scrape(gateway)
    assert value(samples, "castray_transfer_stream_length") == 0  # no stream yet
    assert value(samples, "castray_transfer_stream_pending") == 0
    for i in range(7):
        await redis_client.xadd(stream, {"n": str(i)})
    await redis_client.xgroup_create(stream, TRANSFER_GROUP, id="0")
    await redis_client.xreadgroup(TRANSFER_GROUP, "worker-1", {stream: ">"}, count=3)
    samples = await scrape(gateway)
    assert samples[("castray_transfer_stream_length", ())] == await redis_client.xlen(stream) == 7
    assert samples[("castray_transfer_stream_pending", ())] == 3

    instance = gateway.app[keys.BUS].source
    replica = (("instance", instance), ("service", "gateway"))
    assert samples[("castray_service_up", replica)] == 1
    assert 0 <= samples[("castray_service_heartbeat_age_seconds", replica)] < 60

    # A read that fails leaves its metrics out; the scrape still answers, with the rest.
    await redis_client.delete(stream)
    await redis_client.set(stream, "not a stream")
    samples = await scrape(gateway)
    assert not any(name.startswith("castray_transfer_stream") for name, _ in samples)
    assert samples[("castray_service_up", replica)] == 1


async def test_stream_depth_follows_transfers_queued_through_the_api(
        namespace: str, names: Names, tmp_path: Path, redis_client: aioredis.Redis) -> None:
    await seed_view(redis_client, names, STANDARD_VIEW)
    async with files_gateway(namespace, tmp_path / "data") as client:
        for _ in range(4):
            resp = await client.post("/api/transfers", json={"source": {"generate": {"size": "1KB"}},
                                                             "mode": "unicast", "targets": ["c1-w1"]})
            assert resp.status == 202, await resp.text()
        samples = await scrape(client)
    assert samples[("castray_transfer_stream_length", ())] == await redis_client.xlen(names.transfer_requests)
    assert samples[("castray_transfer_stream_length", ())] == 4
    assert samples[("castray_transfer_stream_pending", ())] == 0  # no worker has taken one


async def test_a_stale_replica_is_down(gateway, redis_client: aioredis.Redis, names: Names) -> None:
    silent = ServiceBeat(service="transfer", instance="tw-1", host="h", pid=1, started=time.time() - 100,
                         beat=time.time() - 30, interval=1.0, version="0")
    await redis_client.hset(names.services, silent.key, codec.encode(silent))
    samples = await scrape(gateway)
    replica = (("instance", "tw-1"), ("service", "transfer"))
    assert samples[("castray_service_up", replica)] == 0
    assert samples[("castray_service_heartbeat_age_seconds", replica)] >= 30


async def test_destination_throughput_is_each_completed_destinations_bytes_over_its_time(
        gateway, redis_client: aioredis.Redis, names: Names) -> None:
    publisher, t = TimedPublisher(redis_client, names), time.time()
    before = await scrape(gateway)
    events = [
        (TransferStarted(transfer_id="t2", mode="broadcast", bytes_total=4_000_000,
                         targets=["c1-a", "c1-b", "c1-c"]), t),
        (TransferCompleted(transfer_id="t2", node_id="c1-a", bytes_total=4_000_000), t + 2),  # 2 MB/s
        (TransferCompleted(transfer_id="t2", node_id="c1-b", bytes_total=1_000), t + 4),  # 250 B/s
        (TransferFailed(transfer_id="t2", node_id="c1-c", error="node died"), t + 4),  # none
        (TransferCompleted(transfer_id="t2", node_id=None, bytes_total=4_000_000), t + 4),
        # a destination of a transfer whose start this gateway never saw: no time to divide by
        (TransferCompleted(transfer_id="t3", node_id="c1-a", bytes_total=7), t + 5),
        (TransferCompleted(transfer_id="t3", node_id=None, bytes_total=7), t + 5),
    ]
    for payload, at in events:
        await publisher.transfer_event(payload, at=at)

    async def relayed() -> dict | None:
        samples = await scrape(gateway)
        done = value(samples, "castray_transfers_total", state="completed", mode="unknown") == 1
        return samples if done else None

    after = await wait_for(relayed, what="the transfers' events relayed")

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    metric = "castray_transfer_destination_throughput_bytes_per_second"
    assert moved(f"{metric}_count", mode="broadcast") == 2
    assert moved(f"{metric}_sum", mode="broadcast") == 2_000_000 + 250
    assert moved(f"{metric}_bucket", mode="broadcast", le="100000.0") == 1  # 250 B/s
    assert moved(f"{metric}_bucket", mode="broadcast", le="1e+06") == 1
    assert moved(f"{metric}_bucket", mode="broadcast", le="1e+07") == 2  # and 2 MB/s
    assert moved(f"{metric}_count", mode="unknown") == 0
    assert moved("castray_transfer_bytes_delivered_total") == 4_001_007
    assert not any(dict(labels).get("node") or "c1-a" in dict(labels).values()
                   for (name, labels) in after if name.startswith(metric))  # no series per node


async def test_heavy_slots_queue_and_shed_are_on_metrics(make_gateway, view: ViewWriter) -> None:
    await view.reset(clusters=[cluster("c1")], nodes=[node("a", "c1")])
    client = await make_gateway(heavy_requests=1, heavy_queue=1)
    gate = client.app[keys.HEAVY_GATE]
    samples = await scrape(client)
    assert (samples[("castray_gateway_heavy_slots", ())], samples[("castray_gateway_heavy_shed_total", ())],
            samples[("castray_gateway_heavy_slots_in_use", ())]) == (1, 0, 0)
    async with gate.slot():  # the one slot taken
        queued = asyncio.create_task(client.get("/api/nodes"))
        await wait_for(lambda: gate.waiting == 1, what="a request queued for the slot")
        shed = await client.get("/api/nodes")  # the queue is full: refused at once
        assert shed.status == 503 and (await shed.json())["code"] == "overloaded"
        samples = await scrape(client)
        assert samples[("castray_gateway_heavy_slots_in_use", ())] == 1
        assert samples[("castray_gateway_heavy_queued", ())] == 1
        assert samples[("castray_gateway_heavy_shed_total", ())] == 1
    assert (await queued).status == 200
    samples = await scrape(client)
    assert samples[("castray_gateway_heavy_slots_in_use", ())] == 0
    assert samples[("castray_gateway_heavy_queued", ())] == 0
    assert samples[("castray_gateway_heavy_shed_total", ())] == gate.shed == 1
