"""The registry fed by the real discovery service watching the session's real Ray head: the contract
between the two (events + state hashes) holds end to end, across a discovery restart.

(Workers joining and dying are discovery's tests; here the head alone carries the contract, which keeps
this test off the slow, load-sensitive `ray start` of a worker.)"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from castray import local_ray
from castray.shared.names import Names
from castray.shared.view import ViewReader
from tests.support.registry import StartRegistry, view_differs
from tests.support.waiting import wait_for


async def test_view_follows_discovery_of_a_real_cluster(
    run_discovery: Any,
    start_registry: StartRegistry,
    ray_head: local_ray.RayNode,
    redis_client: aioredis.Redis,
    names: Names,
) -> None:
    await start_registry(check_interval=0.5)
    discovery = await run_discovery(discovery_addresses=[ray_head.dashboard_url])
    await discovery.commands("discover", {})

    async def equal_with(*ray_ids: str) -> bool:
        snap = await ViewReader(redis_client, names).snapshot()
        seen = {n.ray_node_id: n.state for n in snap.nodes.values()}
        return all(seen.get(r) == "ALIVE" for r in ray_ids) and await view_differs(redis_client, names) == []

    await wait_for(lambda: equal_with(ray_head.node_id), what="the head ALIVE in a view equal to discovery")
    snap = await ViewReader(redis_client, names).snapshot()
    [cluster] = snap.clusters.values()
    assert cluster.state == "alive" and cluster.dashboard_url is not None
    before = snap.epoch

    # Discovery restarts: a new source, announced with source-reset; the view follows it.
    await discovery.close()
    restarted = await run_discovery(discovery_addresses=[ray_head.dashboard_url])
    await restarted.commands("discover", {})

    async def follows_new_source() -> bool:
        meta = await redis_client.hgetall(names.view_meta)
        return meta.get(b"source") == restarted.bus.source.encode() and await equal_with(ray_head.node_id)

    await wait_for(follows_new_source, what="the view rebuilt from the restarted discovery")
    # Redis kept the view: same epoch
    assert (await ViewReader(redis_client, names).snapshot()).epoch == before
