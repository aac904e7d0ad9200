"""A lying cluster costs bounded time and memory, and nothing else (issue 12, item 4).

A hostile dashboard (``tests/support/hostile_dashboard.py``, a real HTTP server) is watched beside the
session's real Ray head. Once it turns hostile, it must end as a lost cluster with the reason, while the real
one keeps updating; a discovery pass with it among the candidates still finds the others; and what one
answer may cost in memory is bounded by the response and row caps, whatever it sends.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from castray import local_ray
from castray.discovery.dashboard import DashboardClient
from castray.discovery.errors import ProbeError
from castray.shared.bus import Bus
from castray.shared.errors import CommandError
from castray.shared.names import Names
from tests.support.discovery import cluster_event, connect_cluster, node_event, stored_state
from tests.support.hostile_dashboard import HostileDashboard
from tests.support.ray_nodes import start_worker
from tests.support.waiting import wait_for

MAX_BYTES = 1024 * 1024
MAX_NODES = 50
# mode -> what the lost cluster's reason says
REASONS = {
    "nested": "nested too deeply",
    "huge": f"(most accepted: {MAX_NODES})",
    "flood": f"more than {MAX_BYTES} bytes",
    "garbage": "not JSON",
    "slow": "did not answer within",
    "redirect": "redirect",
    "churn": "never seen before",
}
LIMITS: dict[str, Any] = dict(max_response_bytes=MAX_BYTES, max_cluster_nodes=MAX_NODES,
                              max_new_nodes_per_minute=1.0, poll_timeout=1.0, lost_after=3)


@pytest.fixture
async def hostile() -> AsyncIterator[HostileDashboard]:
    server = HostileDashboard(huge_rows=4 * MAX_NODES)
    await server.start()
    yield server
    await server.stop()


@pytest.mark.parametrize("mode", sorted(REASONS))
async def test_a_lying_cluster_fails_with_its_reason_and_the_real_one_keeps_updating(
    run_discovery, events, bus: Bus, hostile: HostileDashboard,
    ray_head: local_ray.RayNode, redis_client: aioredis.Redis, names: Names, mode: str,
) -> None:
    worker = await run_discovery(**LIMITS)
    real = await connect_cluster(bus, ray_head.dashboard_url)
    bad = await connect_cluster(bus, hostile.url)
    assert worker.tracker is not None
    state = worker.tracker.state

    hostile.mode = mode
    lost = await events.wait_for(cluster_event("cluster-lost", bad), what=f"{mode}: cluster-lost")
    payload: Any = lost.payload
    assert REASONS[mode] in payload.reason, payload.reason
    assert payload.cluster.state == "lost" and REASONS[mode] in (payload.cluster.error or "")

    # The real cluster is still watched: its polls go on, and it stays alive.
    seen = state.clusters[real].last_seen
    await wait_for(lambda: _later(state.clusters[real].last_seen, seen), what="the real cluster polled")
    assert state.clusters[real].state == "alive"
    # The record in Redis (what the view is built from) says the same.
    clusters, nodes = await stored_state(redis_client, names)
    assert clusters[bad].state == "lost" and REASONS[mode] in (clusters[bad].error or "")
    assert clusters[real].state == "alive"
    # Bounded: never more nodes for the liar than its first list plus the budget of new ids.
    added = [e for e in events.of_type("node-changed") if node_event("added", cluster_id=bad)(e)]
    assert len(added) <= hostile.nodes + MAX_NODES
    assert sum(1 for n in nodes.values() if n.cluster_id == bad) <= MAX_NODES


async def _later(now: float, before: float) -> bool:
    return now > before


async def test_a_new_node_of_the_real_cluster_is_seen_while_the_other_lies(
    run_discovery, events, bus: Bus, hostile: HostileDashboard,
    ray_head: local_ray.RayNode, ray_workers: list[local_ray.RayNode],
) -> None:
    await run_discovery(**LIMITS)
    await connect_cluster(bus, ray_head.dashboard_url)
    bad = await connect_cluster(bus, hostile.url)
    hostile.mode = "nested"
    await events.wait_for(cluster_event("cluster-lost", bad), what="cluster-lost of the liar")
    joined = await asyncio.to_thread(start_worker, ray_head)  # the loop goes on meanwhile
    ray_workers.append(joined)
    await events.wait_for(node_event("added", ray_node_id=joined.node_id), what="the new worker added")


async def test_a_discovery_pass_with_a_liar_among_the_candidates_finds_the_others(
    run_discovery, bus: Bus, hostile: HostileDashboard, ray_head: local_ray.RayNode,
) -> None:
    """The bug of issue 12: ~400 KB of nested JSON raised RecursionError and aborted the whole pass."""
    hostile.mode = "nested"
    await run_discovery(discovery_addresses=[hostile.url, ray_head.dashboard_url], **LIMITS)
    reply = await bus.request("discovery", "discover", {}, timeout=30)
    assert reply["found"], reply
    found = {c["dashboard_url"] for c in reply["found"]}
    assert found == {ray_head.dashboard_url}
    with pytest.raises(CommandError) as info:
        await bus.request("discovery", "connect", {"cluster_address": hostile.url}, timeout=30)
    assert (info.value.status, info.value.code) == (422, "not_ray_dashboard")
    assert "nested too deeply" in info.value.message


@pytest.mark.parametrize("mode", ["nested", "huge", "flood", "garbage", "churn"])
async def test_what_one_answer_costs_in_memory_is_bounded_by_the_caps(
    hostile: HostileDashboard, mode: str
) -> None:
    """Deterministic, not timed: the peak of Python allocations while reading one answer stays within a
    few times the response cap, however much the dashboard sends."""
    hostile.mode = mode
    async with aiohttp.ClientSession() as session:
        client = DashboardClient(session, hostile.url, timeout=10.0, max_bytes=MAX_BYTES, max_rows=MAX_NODES)
        tracemalloc.start()
        try:
            try:
                rows = await client.nodes()
            except ProbeError as e:
                assert e.code == "not_ray_dashboard", e
                rows = []
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert len(rows) <= MAX_NODES
    assert peak < 8 * MAX_BYTES, peak
