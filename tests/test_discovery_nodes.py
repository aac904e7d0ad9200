"""Discovery against the session's real Ray head: nodes joining and dying become events, the state in
Redis equals what the events said, and a cluster found several ways is one cluster."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Any

import psutil
import redis.asyncio as aioredis

from castray import local_ray
from castray.gateway.original.clusters import discover_reply
from castray.shared.events import NodeInfo
from castray.shared.names import Names
from castray.shared.replies import DiscoverReply
from tests.support.discovery import EventLog, cluster_event, node_event, stored_state
from tests.support.ray_nodes import start_worker
from tests.support.waiting import wait_for


def _apply(log: EventLog) -> tuple[dict[str, Any], dict[str, NodeInfo]]:
    """Replay the events from the last source-reset, as a consumer would, into (clusters, nodes)."""
    clusters: dict[str, Any] = {}
    nodes: dict[str, NodeInfo] = {}
    for event in log.events:
        p: Any = event.payload
        if event.type == "source-reset":
            clusters, nodes = {}, {}  # the stored state is the truth at a reset; we started before it
        elif event.type in ("cluster-found", "cluster-lost"):
            clusters[p.cluster.id] = p.cluster
        elif event.type == "cluster-removed":
            clusters.pop(p.cluster.id, None)
        elif event.type == "node-changed":
            if p.change == "removed":
                nodes.pop(p.node.id, None)
            else:
                nodes[p.node.id] = p.node
    return clusters, nodes


async def test_worker_join_and_sigterm(
    run_discovery,
    events: EventLog,
    ray_head: local_ray.RayNode,
    ray_workers: list[local_ray.RayNode],
    redis_client: aioredis.Redis,
    names: Names,
) -> None:
    worker = await run_discovery(discovery_addresses=[ray_head.dashboard_url])
    reply = await worker.commands("discover", {})  # type: ignore[misc]
    assert reply["found"]
    cid = reply["found"][0]["id"]
    await events.wait_for(node_event("added", ray_node_id=ray_head.node_id), what="head added")

    node = start_worker(ray_head, labels={"team": "castray"}, node_name="w-join")
    ray_workers.append(node)
    added = await events.wait_for(node_event("added", ray_node_id=node.node_id), what="worker added")
    info: Any = added.payload
    assert info.node.id == f"{cid}-{node.node_id[:12]}"
    assert info.node.state == "ALIVE" and info.node.external is True and not info.node.is_head
    assert info.node.labels.get("team") == "castray" and info.node.name == "w-join"

    raylet = node.raylet_pid()
    assert raylet is not None
    os.kill(raylet, signal.SIGTERM)
    dead = await events.wait_for(node_event("updated", ray_node_id=node.node_id, state="DEAD"), what="DEAD")
    changed = dead.payload.changed  # type: ignore[union-attr]
    assert changed["state"].old == "ALIVE" and changed["state"].new == "DEAD"

    # What is stored equals what the events said (last_seen aside), and meta names the last event.
    async def same() -> bool:
        clusters, nodes = await stored_state(redis_client, names)
        _, replayed = _apply(events)
        strip = {"last_seen", "first_seen"}
        return set(clusters) == {cid} and {k: v.model_dump(exclude=strip) for k, v in nodes.items()} == {
            k: v.model_dump(exclude=strip) for k, v in replayed.items()
        }

    await wait_for(same, what="stored state == replayed events")
    meta = await redis_client.hgetall(names.discovery_meta)
    assert meta[b"source"].decode() == worker.bus.source
    assert int(meta[b"seq"]) == events.events[-1].seq


async def test_one_cluster_found_many_ways(
    run_discovery,
    events: EventLog,
    ray_head: local_ray.RayNode,
) -> None:
    """Config (dashboard URL and GCS host:port) + session files + scan + connect -> one cluster id."""
    worker = await run_discovery(
        discovery_addresses=[ray_head.dashboard_url, ray_head.gcs_address],
        ray_temp_dirs=[ray_head.temp_dir],
        scan_ports=str(ray_head.dashboard_port),
    )
    reply = await worker.commands("discover", {})  # type: ignore[misc]
    assert len(reply["found"]) == 1, reply["found"]
    cluster = reply["found"][0]
    assert set(cluster["sources"]) == {"config", "session-file", "scan"}
    assert cluster["session_name"].startswith("session_")
    assert cluster["gcs_address"].endswith(f":{ray_head.gcs_port}")
    assert discover_reply(DiscoverReply.model_validate(reply))["connected_cluster"] == (
        f"127.0.0.1:{ray_head.dashboard_port}")
    head_id = f"{cluster['id']}-{ray_head.node_id[:12]}"
    assert head_id in {n["id"] for n in reply["external_nodes"]}

    # Through the GCS address as Ray writes it in ray_current_cluster (host IP; the dashboard only
    # listens on 127.0.0.1): the same cluster.
    current = (Path(ray_head.temp_dir) / "ray_current_cluster").read_text().strip()
    via_file = await worker.commands("connect", {"cluster_address": current})  # type: ignore[misc]
    assert via_file["cluster"]["id"] == cluster["id"]
    assert current in via_file["cluster"]["addresses"]

    # By hand, through the GCS address: the same id again.
    connected = await worker.commands("connect", {"cluster_address": ray_head.gcs_address})  # type: ignore[misc]
    assert connected["cluster"]["id"] == cluster["id"]
    assert connected["cluster"]["found_by"] == "manual"
    listed = await worker.commands("clusters", {})  # type: ignore[misc]
    assert [c["id"] for c in listed["clusters"]] == [cluster["id"]]
    assert len(events.of_type("cluster-found")) >= 1
    assert all(e.payload.cluster.id == cluster["id"] for e in events.of_type("cluster-found"))  # type: ignore[union-attr]


async def test_state_rewritten_when_redis_loses_it(
    run_discovery,
    events: EventLog,
    ray_head: local_ray.RayNode,
    redis_client: aioredis.Redis,
    names: Names,
) -> None:
    """Redis restarted empty (here: our keys deleted): discovery rewrites everything with source-reset."""
    worker = await run_discovery(discovery_addresses=[ray_head.dashboard_url])
    await worker.commands("discover", {})  # type: ignore[misc]
    await events.wait_for(node_event("added", ray_node_id=ray_head.node_id), what="head added")
    resets = len(events.of_type("source-reset"))
    await redis_client.delete(names.discovery_clusters, names.discovery_nodes, names.discovery_meta)
    await events.wait_for(
        lambda e: e.type == "source-reset" and len(events.of_type("source-reset")) > resets,
        what="a new source-reset",
    )
    clusters, nodes = await stored_state(redis_client, names)
    assert len(clusters) == 1
    assert any(n.ray_node_id == ray_head.node_id for n in nodes.values())
    meta = await redis_client.hgetall(names.discovery_meta)
    assert int(meta[b"seq"]) == events.of_type("source-reset")[-1].seq


async def test_local_cluster_nodes_are_not_external(
    run_discovery,
    events: EventLog,
    ray_head: local_ray.RayNode,
) -> None:
    worker = await run_discovery(
        local_cluster=ray_head.dashboard_url, scan_ports=str(ray_head.dashboard_port)
    )
    reply = await worker.commands("discover", {})  # type: ignore[misc]
    [cluster] = reply["found"]
    assert cluster["found_by"] == "local"
    assert reply["external_nodes"] == [] and discover_reply(DiscoverReply.model_validate(reply))[
        "connected_cluster"] is None
    added = await events.wait_for(node_event("added", ray_node_id=ray_head.node_id), what="head added")
    assert added.payload.node.external is False  # type: ignore[union-attr]
    await events.wait_for(cluster_event("cluster-found", cluster["id"]))


def _dashboard_pid(head: local_ray.RayNode) -> int:
    for child in psutil.Process(head.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if any(part.endswith("dashboard/dashboard.py") for part in child.cmdline()):
                return int(child.pid)
    raise AssertionError("no dashboard process")


async def test_cluster_lost_and_found_again(
    run_discovery,
    events: EventLog,
    ray_head: local_ray.RayNode,
    redis_client: aioredis.Redis,
    names: Names,
) -> None:
    """A frozen dashboard (SIGSTOP): polls time out, cluster-lost; thawed: cluster-found, nodes ALIVE."""
    worker = await run_discovery(discovery_addresses=[ray_head.dashboard_url], poll_timeout=0.5)
    [cluster] = (await worker.commands("discover", {}))["found"]  # type: ignore[misc]
    cid = cluster["id"]
    await events.wait_for(node_event("added", ray_node_id=ray_head.node_id), what="head added")
    dashboard = _dashboard_pid(ray_head)
    os.kill(dashboard, signal.SIGSTOP)
    try:
        lost = await events.wait_for(cluster_event("cluster-lost", cid), what="cluster-lost")
        await events.wait_for(node_event("updated", ray_node_id=ray_head.node_id, state="UNREACHABLE"))
    finally:
        os.kill(dashboard, signal.SIGCONT)
    found = await events.wait_for(
        lambda e: cluster_event("cluster-found", cid)(e) and e.seq > lost.seq, what="cluster-found again"
    )
    assert found.payload.cluster.state == "alive"  # type: ignore[union-attr]
    alive = await events.wait_for(
        lambda e: node_event("updated", ray_node_id=ray_head.node_id, state="ALIVE")(e) and e.seq > found.seq
    )
    assert alive.payload.changed["state"].old == "UNREACHABLE"  # type: ignore[union-attr]
    clusters, _ = await stored_state(redis_client, names)
    assert clusters[cid].state == "alive"


async def test_discover_requests_coalesce(
    run_discovery,
    ray_head: local_ray.RayNode,
) -> None:
    worker = await run_discovery(
        discovery_addresses=[ray_head.dashboard_url], scan_ports=str(ray_head.dashboard_port)
    )
    assert worker.discoverer is not None
    before = worker.discoverer.passes
    replies = await asyncio.gather(*(worker.commands("discover", {}) for _ in range(5)))  # type: ignore[misc]
    assert worker.discoverer.passes == before + 1
    assert all(r["found"] == replies[0]["found"] for r in replies)
