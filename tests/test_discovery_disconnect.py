"""A disconnected cluster stays disconnected across a restart of discovery (crash, kill -9, ``castray up``
restarting it): periodic passes of the new run ignore it; an explicit discover or connect brings it back
and clears the stored mark (``names.discovery_disconnected``)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from castray import local_ray
from castray.discovery.worker import DiscoveryWorker
from castray.shared import codec
from castray.shared.bus import Bus
from castray.shared.names import Names
from tests.support.discovery import EventLog, cluster_event, stored_state
from tests.support.waiting import wait_for


async def _start(run_discovery: Any, redis_client: aioredis.Redis, names: Names,
                 settings: dict[str, Any]) -> DiscoveryWorker:
    """A worker whose command server is subscribed (``started`` does not wait for that)."""
    worker: DiscoveryWorker = await run_discovery(**settings)

    async def serving() -> bool:
        return bool(dict(await redis_client.pubsub_numsub(names.commands("discovery"))).get(
            names.commands("discovery").encode()))

    await wait_for(serving, what="discovery's command server")
    return worker


async def _disconnect_then_restart(
    run_discovery: Any,
    bus: Bus,
    redis_client: aioredis.Redis,
    names: Names,
    settings: dict[str, Any],
) -> tuple[str, DiscoveryWorker]:
    """Discover the cluster, disconnect it, stop discovery and start a new one with the same settings."""
    first = await _start(run_discovery, redis_client, names, settings)
    reply = await bus.request("discovery", "discover", {}, timeout=20)
    assert reply["found"]
    [cid] = [c["id"] for c in reply["found"]]
    out = await bus.request("discovery", "disconnect", {"cluster": cid})
    assert out == {"disconnected": [cid]}
    stored = await redis_client.hgetall(names.discovery_disconnected)
    assert set(stored) == {cid.encode()}
    record = codec.unpack(stored[cid.encode()])
    assert record["id"] == cid and record["addresses"]
    await first.close()
    return cid, await _start(run_discovery, redis_client, names, settings)


async def test_disconnected_cluster_stays_away_after_restart_until_discover(
    run_discovery,
    events: EventLog,
    ray_head: local_ray.RayNode,
    redis_client: aioredis.Redis,
    names: Names,
) -> None:
    bus = Bus(redis_client, names, source="test")
    settings = dict(scan_ports=str(ray_head.dashboard_port), periodic=True, scan_interval=0.2)
    cid, worker = await _disconnect_then_restart(run_discovery, bus, redis_client, names, settings)
    seen = len(events.events)

    # The scan of the new run reaches the cluster again (the first run found it the same way): its first
    # pass has ended once a second one has started.
    async def first_pass_done() -> bool:
        return worker.discoverer is not None and worker.discoverer.passes >= 2

    await wait_for(first_pass_done, what="the restarted discovery's first periodic pass")
    clusters, nodes = await stored_state(redis_client, names)
    assert cid not in clusters
    assert not [n for n in nodes.values() if n.cluster_id == cid]
    assert not [e for e in events.events[seen:] if cluster_event("cluster-found", cid)(e)]
    listed = await bus.request("discovery", "clusters", {})
    assert listed["disconnected"] == [cid]

    # An explicit discover brings it back and clears the stored mark.
    again = await bus.request("discovery", "discover", {}, timeout=20)
    assert [c["id"] for c in again["found"]] == [cid]
    clusters, _ = await stored_state(redis_client, names)
    assert cid in clusters
    assert await redis_client.hlen(names.discovery_disconnected) == 0


async def test_connect_after_restart_clears_the_mark(
    run_discovery,
    ray_head: local_ray.RayNode,
    redis_client: aioredis.Redis,
    names: Names,
) -> None:
    bus = Bus(redis_client, names, source="test")
    settings = dict(scan_ports=str(ray_head.dashboard_port))
    cid, worker = await _disconnect_then_restart(run_discovery, bus, redis_client, names, settings)
    assert worker.tracker is not None and worker.tracker.disconnected == {cid}

    out = await bus.request(
        "discovery", "connect", {"cluster_address": f"127.0.0.1:{ray_head.dashboard_port}"}, timeout=20
    )
    assert out["cluster"]["id"] == cid
    assert await redis_client.hlen(names.discovery_disconnected) == 0
    assert worker.tracker.disconnected == set()
