"""The node registry in-process for tests: a starter of workers, a recorder of the view channel, and
how far the view is from discovery's state."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from castray.node_registry.settings import RegistrySettings
from castray.node_registry.worker import RegistryWorker
from castray.shared import codec
from castray.shared.events import ViewChangedEvent
from castray.shared.names import Names
from tests.support.waiting import wait_for

StartRegistry = Callable[..., Awaitable[RegistryWorker]]


@pytest.fixture
async def start_registry(redis_url: str, namespace: str) -> AsyncIterator[StartRegistry]:
    """Start in-process registry workers; each is ready (its view exists) when returned."""
    running: list[tuple[RegistryWorker, asyncio.Task[None]]] = []

    async def start(**overrides: Any) -> RegistryWorker:
        settings = RegistrySettings(redis_url=redis_url, namespace=namespace, **overrides)
        worker = RegistryWorker(settings=settings)
        running.append((worker, asyncio.create_task(worker.run())))
        await asyncio.wait_for(worker.ready.wait(), 15)
        return worker

    yield start
    for worker, task in running:
        await worker.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def view_events(redis_client: aioredis.Redis, names: Names) -> AsyncIterator[list[Any]]:
    """Every event published on the view channel from now on, decoded, in order."""
    got: list[Any] = []
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(names.view_events)

    async def collect() -> None:
        async for message in pubsub.listen():
            if message.get("type") == "message":
                got.append(codec.decode(message["data"]))

    task = asyncio.create_task(collect())
    yield got
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await pubsub.aclose()


async def view_differs(redis: aioredis.Redis, names: Names) -> list[str]:
    """How the view differs from discovery's state (empty when equal), read in one MULTI."""
    async with redis.pipeline(transaction=True) as pipe:
        for key in (names.view_clusters, names.discovery_clusters, names.view_nodes, names.discovery_nodes,
                    names.view_meta, names.discovery_meta):
            pipe.hgetall(key)
        vc, dc, vn, dn, vm, dm = await pipe.execute()
    diffs = []
    if vc != dc:
        diffs.append(f"clusters: view {sorted(vc)} vs discovery {sorted(dc)}")
    if vn != dn:
        diffs.append(f"nodes differ: {sorted(set(vn.items()) ^ set(dn.items()))[:3]}")
    if b"epoch" not in vm:
        diffs.append("no view epoch")
    if (vm.get(b"source"), vm.get(b"seq")) != (dm.get(b"source"), dm.get(b"seq")):
        diffs.append(f"position: view {vm.get(b'source')}/{vm.get(b'seq')} vs "
                     f"discovery {dm.get(b'source')}/{dm.get(b'seq')}")
    return diffs


async def wait_equal(redis: aioredis.Redis, names: Names, timeout: float = 15.0) -> list[str]:
    """Wait until the view equals discovery's state; the remaining differences if it never does."""
    diffs: list[str] = []

    async def equal() -> bool:
        nonlocal diffs
        diffs = await view_differs(redis, names)
        return not diffs

    with contextlib.suppress(AssertionError):
        await wait_for(equal, "the view to equal discovery's state", deadline=timeout, interval=0.05)
    return diffs


def changed_only(events: list[Any]) -> list[ViewChangedEvent]:
    return [e for e in events if isinstance(e, ViewChangedEvent)]
