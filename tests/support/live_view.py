"""The real discovery and node-registry services, in this test's event loop: the node view in Redis as
it is kept in production, from real Ray dashboards."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis

from castray.discovery.settings import DiscoverySettings
from castray.discovery.worker import DiscoveryWorker
from castray.node_registry.settings import RegistrySettings
from castray.node_registry.worker import RegistryWorker
from castray.shared.events import ClusterInfo, NodeInfo
from castray.shared.names import Names
from castray.shared.view import ViewReader


def discovery_settings(namespace: str, redis_url: str, addresses: list[str], **overrides: Any
                       ) -> DiscoverySettings:
    """Watch ``addresses`` only (no session files, no port scan), with quick polls."""
    base: dict[str, Any] = dict(namespace=namespace, redis_url=redis_url, ray_temp_dirs=[], scan_ports="",
                                discovery_addresses=addresses, poll_interval=0.25, poll_timeout=2.0,
                                connect_timeout=8.0, scan_interval=30.0, state_check_interval=0.5)
    return DiscoverySettings(**{**base, **overrides})


@asynccontextmanager
async def live_view(namespace: str, redis_url: str, addresses: list[str], **overrides: Any
                    ) -> AsyncIterator[DiscoveryWorker]:
    """Discovery watching ``addresses`` and a registry writing the view; both stopped afterwards."""
    registry = RegistryWorker(settings=RegistrySettings(redis_url=redis_url, namespace=namespace,
                                                        check_interval=0.5))
    tasks = [asyncio.create_task(registry.run())]
    client = aioredis.Redis.from_url(redis_url, socket_timeout=5)
    discovery = DiscoveryWorker(settings=discovery_settings(namespace, redis_url, addresses, **overrides),
                                redis=client)
    try:
        await asyncio.wait_for(registry.ready.wait(), 30)
        tasks.append(asyncio.create_task(discovery.run()))
        await discovery.started(30)
        yield discovery
    finally:
        await discovery.close()
        await registry.close()
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)
        await client.aclose()


async def view_clusters(redis: aioredis.Redis, names: Names) -> dict[str, ClusterInfo]:
    return (await ViewReader(redis, names).snapshot()).clusters


async def view_nodes(redis: aioredis.Redis, names: Names) -> dict[str, NodeInfo]:
    """The view's nodes by Ray node id."""
    return {n.ray_node_id: n for n in (await ViewReader(redis, names).nodes()).values()}
