"""Helpers for the discovery tests: run a `DiscoveryWorker` in-process and watch its events in Redis.

(No tests here; the fixtures are imported by the ``test_discovery_*`` modules.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from castray.discovery.settings import DiscoverySettings
from castray.discovery.worker import DiscoveryWorker
from castray.shared import codec
from castray.shared.bus import Bus
from castray.shared.events import ClusterInfo, Event, NodeInfo
from castray.shared.names import Names
from tests.support.hostile_dashboard import HostileDashboard
from tests.support.waiting import wait_for

DEADLINE = 30.0  # generous: we wait for conditions, we never assert on timing


class EventLog:
    """Every event published on ``names.discovery_events`` since the subscription started."""

    def __init__(self, redis: aioredis.Redis, names: Names) -> None:
        self.redis = redis
        self.names = names
        self.events: list[Event] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self.names.discovery_events)
        self._task = asyncio.create_task(self._read(pubsub))

    async def _read(self, pubsub: Any) -> None:
        try:
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                self.events.append(codec.decode(message["data"]))
        finally:
            await pubsub.aclose()

    async def wait_for(
        self, predicate: Callable[[Event], bool], timeout: float = DEADLINE, what: str = "event"
    ) -> Event:
        """The first event (old or new) matching ``predicate``."""
        try:
            found: Event = await wait_for(lambda: next((e for e in self.events if predicate(e)), None), what,
                                          deadline=timeout)
        except AssertionError:
            seen = [(e.type, _brief(e)) for e in self.events[-20:]]
            raise AssertionError(f"no {what} within {timeout:g} s; last events: {seen}") from None
        return found

    def of_type(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.type == kind]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


def _brief(event: Event) -> str:
    payload: Any = event.payload
    node = getattr(payload, "node", None)
    if node is not None:
        return f"{payload.change} {node.id} {node.state}"
    cluster = getattr(payload, "cluster", None)
    return cluster.id if cluster is not None else ""


def node_event(
    change: str, *, ray_node_id: str | None = None, state: str | None = None, cluster_id: str | None = None
) -> Callable[[Event], bool]:
    def match(event: Event) -> bool:
        if event.type != "node-changed":
            return False
        p: Any = event.payload
        return (
            p.change == change
            and (ray_node_id is None or p.node.ray_node_id == ray_node_id)
            and (state is None or p.node.state == state)
            and (cluster_id is None or p.node.cluster_id == cluster_id)
        )

    return match


def cluster_event(kind: str, cluster_id: str | None = None) -> Callable[[Event], bool]:
    def match(event: Event) -> bool:
        p: Any = event.payload
        return event.type == kind and (cluster_id is None or p.cluster.id == cluster_id)

    return match


async def stored_state(
    redis: aioredis.Redis, names: Names
) -> tuple[dict[str, ClusterInfo], dict[str, NodeInfo]]:
    raw_c = await redis.hgetall(names.discovery_clusters)
    raw_n = await redis.hgetall(names.discovery_nodes)
    clusters = {k.decode(): codec.decode_model(v, ClusterInfo) for k, v in raw_c.items()}
    nodes = {k.decode(): codec.decode_model(v, NodeInfo) for k, v in raw_n.items()}
    return clusters, nodes


def quiet_settings(namespace: str, redis_url: str, **overrides: Any) -> DiscoverySettings:
    """Settings that look nowhere by default (no /tmp/ray, no 8265-8269), fast polls."""
    base: dict[str, Any] = dict(
        namespace=namespace,
        redis_url=redis_url,
        ray_temp_dirs=[],
        scan_ports="",
        scan_hosts=["127.0.0.1"],
        discovery_addresses=[],
        poll_interval=0.25,
        poll_timeout=1.0,
        lost_after=3,
        connect_timeout=4.0,
        scan_interval=5.0,
        state_check_interval=0.2,
    )
    base.update(overrides)
    return DiscoverySettings(**base)


Runner = Callable[..., Awaitable[DiscoveryWorker]]


@pytest.fixture
async def bus(redis_client: aioredis.Redis, names: Names) -> Bus:
    """A bus on the test's namespace, to ask the services (``bus.request("discovery", ...)``)."""
    return Bus(redis_client, names, source="test")


@pytest.fixture
async def hostile() -> AsyncIterator[HostileDashboard]:
    """A stand-in dashboard that lies when told to (`HostileDashboard.mode`), healthy at first."""
    server = HostileDashboard()
    await server.start()
    yield server
    await server.stop()


async def connect_cluster(bus: Bus, url: str) -> str:
    """Ask discovery to connect ``url``; the cluster's id."""
    reply = await bus.request("discovery", "connect", {"cluster_address": url}, timeout=30)
    return str(reply["cluster"]["id"])


@pytest.fixture
async def events(redis_client: aioredis.Redis, names: Names) -> AsyncIterator[EventLog]:
    log = EventLog(redis_client, names)
    await log.start()
    yield log
    await log.stop()


@pytest.fixture
async def run_discovery(namespace: str, redis_url: str) -> AsyncIterator[Runner]:
    """``await run_discovery(**settings)`` starts a worker (own Redis client) in a task; stopped after."""
    started: list[tuple[DiscoveryWorker, asyncio.Task[None], aioredis.Redis]] = []

    async def start(*, periodic: bool = False, **overrides: Any) -> DiscoveryWorker:
        settings = quiet_settings(namespace, redis_url, **overrides)
        client = aioredis.Redis.from_url(redis_url, socket_timeout=5)
        worker = DiscoveryWorker(settings=settings, redis=client, periodic=periodic)
        task = asyncio.create_task(worker.run())
        started.append((worker, task, client))
        await worker.started()
        return worker

    yield start
    for worker, task, client in started:
        await worker.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await client.aclose()
