"""Several real clusters at once: found together, disconnected one by one, a dead head, a hanging
neighbour that must not slow the others."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web

from castray import local_ray
from castray.shared.bus import Bus
from castray.shared.names import Names
from tests.support.discovery import EventLog, cluster_event, node_event, stored_state
from tests.support.ray_nodes import start_worker
from tests.support.waiting import wait_for


async def test_two_clusters_discover_and_disconnect_one(
    run_discovery,
    events: EventLog,
    ray_head: local_ray.RayNode,
    own_ray_head: local_ray.RayNode,
    redis_client: aioredis.Redis,
    names: Names,
) -> None:
    ports = f"{ray_head.dashboard_port},{own_ray_head.dashboard_port}"
    worker = await run_discovery(scan_ports=ports, periodic=True, scan_interval=0.2)
    bus = Bus(redis_client, names, source="test")
    reply = await bus.request("discovery", "discover", {}, timeout=20)
    assert reply["found"]
    by_port = {c["dashboard_url"].rsplit(":", 1)[1]: c for c in reply["found"]}
    assert set(by_port) == {str(ray_head.dashboard_port), str(own_ray_head.dashboard_port)}
    keep, drop = by_port[str(ray_head.dashboard_port)], by_port[str(own_ray_head.dashboard_port)]
    assert keep["id"] != drop["id"]
    heads = {n["ray_node_id"] for n in reply["external_nodes"]}
    assert {ray_head.node_id, own_ray_head.node_id} <= heads

    # Disconnect one by its address: its nodes leave (removed), then the cluster.
    out = await bus.request(
        "discovery", "disconnect", {"cluster": f"127.0.0.1:{own_ray_head.dashboard_port}"}
    )
    assert out == {"disconnected": [drop["id"]]}
    removed = await events.wait_for(cluster_event("cluster-removed", drop["id"]), what="cluster-removed")
    gone_node = await events.wait_for(
        node_event("removed", ray_node_id=own_ray_head.node_id), what="node removed"
    )
    assert gone_node.seq < removed.seq
    clusters, nodes = await stored_state(redis_client, names)
    assert set(clusters) == {keep["id"]}
    assert all(n.cluster_id == keep["id"] for n in nodes.values())

    # Periodic passes (every 0.5 s here) do not bring it back; an explicit discover does.
    assert worker.discoverer is not None
    seen, passes = len(events.events), worker.discoverer.passes

    async def two_more_passes() -> bool:
        return worker.discoverer.passes >= passes + 2  # type: ignore[union-attr]

    await wait_for(two_more_passes, what="two periodic passes")
    assert not [e for e in events.events[seen:] if cluster_event("cluster-found", drop["id"])(e)]
    clusters, _ = await stored_state(redis_client, names)
    assert drop["id"] not in clusters
    again = await bus.request("discovery", "discover", {}, timeout=20)
    assert {c["id"] for c in again["found"]} == {keep["id"], drop["id"]}


async def test_head_killed_cluster_lost_nodes_unreachable(
    run_discovery,
    events: EventLog,
    own_ray_head: local_ray.RayNode,
    redis_client: aioredis.Redis,
    names: Names,
) -> None:
    worker = await run_discovery(discovery_addresses=[own_ray_head.dashboard_url], lost_after=3)
    reply = await worker.commands("discover", {})  # type: ignore[misc]
    cid = reply["found"][0]["id"]
    await events.wait_for(node_event("added", ray_node_id=own_ray_head.node_id), what="head added")

    own_ray_head.stop()  # the whole head, dashboard included
    lost = await events.wait_for(cluster_event("cluster-lost", cid), what="cluster-lost")
    assert lost.payload.cluster.state == "lost"  # type: ignore[union-attr]
    marked = await events.wait_for(
        node_event("updated", ray_node_id=own_ray_head.node_id, state="UNREACHABLE")
    )
    assert marked.seq > lost.seq
    assert marked.payload.changed["state"].old == "ALIVE"  # type: ignore[union-attr]
    clusters, nodes = await stored_state(redis_client, names)
    assert clusters[cid].state == "lost"
    assert {n.state for n in nodes.values() if n.cluster_id == cid} == {"UNREACHABLE"}
    # Exactly one cluster-lost, however many polls failed since.
    watcher = worker.tracker.watchers[cid]  # type: ignore[union-attr]

    async def more_failures() -> bool:
        return watcher.failures >= 5

    await wait_for(more_failures, what="two more failed polls")
    assert len([e for e in events.events if cluster_event("cluster-lost", cid)(e)]) == 1


async def test_hanging_cluster_does_not_delay_others(
    run_discovery,
    events: EventLog,
    ray_head: local_ray.RayNode,
    ray_workers: list[local_ray.RayNode],
) -> None:
    """A 'cluster' that answered once and then hangs on every poll is watched beside a real one."""
    hang = asyncio.Event()
    rows = [{"node_id": "ef" * 28, "node_ip": "10.9.9.9", "is_head_node": True, "state": "ALIVE"}]

    async def version(request: web.Request) -> web.Response:
        return web.json_response({"ray_version": "2.60.0", "session_name": "session_hanging_1"})

    async def nodes(request: web.Request) -> web.Response:
        if hang.is_set():
            await asyncio.sleep(3600)
        return web.json_response({"result": True, "data": {"result": {"result": rows}}})

    app = web.Application()
    app.router.add_get("/api/version", version)
    app.router.add_get("/api/v0/nodes", nodes)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = local_ray.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        worker = await run_discovery(poll_timeout=30.0, connect_timeout=8.0)
        fake: Any = await worker.commands("connect", {"cluster_address": f"127.0.0.1:{port}"})  # type: ignore[misc]
        real: Any = await worker.commands("connect", {"cluster_address": ray_head.dashboard_url})  # type: ignore[misc]
        hang.set()  # from now on every poll of the fake hangs (for 30 s, the poll timeout)
        node = start_worker(ray_head)
        ray_workers.append(node)
        await events.wait_for(
            node_event("added", ray_node_id=node.node_id), timeout=15, what="join beside a hang"
        )
        assert fake["cluster"]["id"] != real["cluster"]["id"]
    finally:
        await runner.cleanup()
