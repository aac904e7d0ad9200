"""The node registry under stress: two replicas at once, kill -9, and a Redis that restarts empty."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from castray.local_ray import free_port
from castray.node_registry.settings import RegistrySettings
from castray.node_registry.worker import RegistryWorker
from castray.shared.events import NodeInfo, ViewChangedEvent, ViewResetEvent
from castray.shared.names import Names
from castray.shared.view import ViewReader
from tests.support.feed import DiscoveryFeed, make_cluster, make_node
from tests.support.registry import StartRegistry, changed_only, wait_equal
from tests.support.waiting import wait_for

REDIS_SERVER = "/usr/bin/redis-server"
REGISTRY_MAIN = "from castray.node_registry.main import main; main()"


async def random_step(feed: DiscoveryFeed, rng: random.Random, counter: list[int]) -> None:
    """One discovery-like change: a node added, updated or removed, or a cluster lost or found again."""
    roll = rng.random()
    cluster_id = rng.choice(sorted(feed.clusters))
    own = [n for n in feed.nodes.values() if n.cluster_id == cluster_id]
    if roll < 0.03:
        cluster = feed.clusters[cluster_id]
        state = "alive" if cluster.state == "lost" else "lost"
        changed = cluster.model_copy(update={"state": state})
        await (feed.cluster_lost(changed) if state == "lost" else feed.cluster_found(changed))
    elif roll < 0.35 or len(own) < 3:
        counter[0] += 1
        await feed.node_upsert(make_node(cluster_id, counter[0]))
    elif roll < 0.85:
        node: NodeInfo = rng.choice(own)
        update = {"state": rng.choice(["ALIVE", "DEAD", "UNREACHABLE"]),
                  "resources": {"CPU": float(rng.randint(1, 16))}}
        await feed.node_upsert(node.model_copy(update=update))
    else:
        await feed.node_removed(rng.choice(own).id)


async def seeded_feed(redis: aioredis.Redis, names: Names) -> DiscoveryFeed:
    feed = DiscoveryFeed(redis, names)
    for c in range(3):
        feed.clusters[f"c{c}"] = make_cluster(c)
        for i in range(5):
            node = make_node(f"c{c}", i)
            feed.nodes[node.id] = node
    await feed.reset()
    return feed


async def test_two_replicas_applying_1000_events_keep_one_consistent_view(
    redis_client: aioredis.Redis, names: Names, start_registry: StartRegistry,
    view_events: list[Any],
) -> None:
    feed = await seeded_feed(redis_client, names)
    first = await start_registry(check_interval=30)
    second = await start_registry(check_interval=30)
    start = await ViewReader(redis_client, names).snapshot()
    rng, counter = random.Random(7), [100]
    for _ in range(1000):
        await random_step(feed, rng, counter)

    assert await wait_equal(redis_client, names, timeout=60) == []
    assert first.applied + second.applied == 1000  # each event applied exactly once between them
    end = await ViewReader(redis_client, names).snapshot()
    assert end.version == start.version + 1000

    log = await redis_client.xrange(names.view_log)
    ids = [int(eid.split(b"-")[0]) for eid, _ in log]
    assert ids == list(range(1, end.version + 1))  # unique, strictly increasing, no holes

    assert await wait_for(lambda: len(changed_only(view_events)) >= 1000)
    changes = [e for e in view_events if e.payload.version > start.version]
    assert [e.payload.version for e in changes] == list(range(start.version + 1, end.version + 1))
    assert not any(isinstance(e, ViewResetEvent) for e in changes)
    # Replaying the published deltas on the starting snapshot gives the final view.
    nodes = {k: v.model_dump(mode="json") for k, v in start.nodes.items()}
    clusters = {k: v.model_dump(mode="json") for k, v in start.clusters.items()}
    for e in changes:
        assert isinstance(e, ViewChangedEvent)
        table = clusters if e.payload.kind == "cluster" else nodes
        if e.payload.record is None:
            table.pop(e.payload.id, None)
        else:
            table[e.payload.id] = e.payload.record.model_dump(mode="json")
    assert nodes == {k: v.model_dump(mode="json") for k, v in end.nodes.items()}
    assert clusters == {k: v.model_dump(mode="json") for k, v in end.clusters.items()}


@contextlib.asynccontextmanager
async def killed_at_exit() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """A list to put subprocesses in; every one still running is killed at the end, even on failure."""
    procs: list[asyncio.subprocess.Process] = []
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def spawn_registry(redis_url: str, namespace: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "CASTRAY_NAMESPACE": namespace, "CASTRAY_REDIS_URL": redis_url,
           "CASTRAY_CHECK_INTERVAL": "0.5", "CASTRAY_LOG_LEVEL": "WARNING"}
    return await asyncio.create_subprocess_exec(sys.executable, "-c", REGISTRY_MAIN, env=env)


async def test_registry_killed_and_restarted_ends_equal_to_discovery(
    redis_client: aioredis.Redis, names: Names, namespace: str, redis_url: str
) -> None:
    feed = await seeded_feed(redis_client, names)
    rng, counter = random.Random(11), [100]
    async with killed_at_exit() as procs:
        procs.append(await spawn_registry(redis_url, namespace))
        assert await wait_equal(redis_client, names, timeout=30) == []
        epoch = (await ViewReader(redis_client, names).snapshot()).epoch

        stop = asyncio.Event()

        async def publish_steadily() -> None:  # ~500 events/s while the registry dies and comes back
            while not stop.is_set():
                await random_step(feed, rng, counter)
                await asyncio.sleep(0.002)

        publisher = asyncio.create_task(publish_steadily())
        await asyncio.sleep(0.5)
        procs[0].send_signal(signal.SIGKILL)
        await procs[0].wait()
        await asyncio.sleep(0.5)  # events published now reach no registry
        procs.append(await spawn_registry(redis_url, namespace))
        await asyncio.sleep(1.0)
        stop.set()
        await publisher

        assert await wait_equal(redis_client, names, timeout=30) == []
        snap = await ViewReader(redis_client, names).snapshot()
        assert snap.epoch == epoch  # Redis kept the view: same epoch, later version
        assert procs[1].returncode is None


async def start_redis(port: int, workdir: Path) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", str(workdir), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    client = aioredis.Redis(host="127.0.0.1", port=port)
    try:
        await wait_for(client.ping, f"redis-server on port {port}", deadline=10, interval=0.05,
                       ignoring=(OSError, aioredis.ConnectionError))
    except AssertionError:
        proc.kill()
        raise
    finally:
        await client.aclose()
    return proc


async def test_redis_restart_rebuilds_the_view_with_a_new_epoch(names: Names, tmp_path: Path) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    server = await start_redis(port, tmp_path)
    worker = RegistryWorker(settings=RegistrySettings(redis_url=url, namespace=names.ns, check_interval=0.5))
    runner = asyncio.create_task(worker.run())
    client = aioredis.Redis.from_url(url)
    try:
        feed = await seeded_feed(client, names)
        await feed.node_upsert(make_node("c0", 50))
        assert await wait_equal(client, names) == []
        old_epoch = (await ViewReader(client, names).snapshot()).epoch
        # A Redis that comes back with its data (AOF) has forgotten the scripts: they are reloaded.
        await client.script_flush()
        applied = worker.applied
        await feed.node_upsert(make_node("c0", 52))
        assert await wait_equal(client, names) == []
        assert worker.applied == applied + 1  # applied as an event, not repaired by a resync
        assert (await ViewReader(client, names).snapshot()).epoch == old_epoch

        server.kill()
        await server.wait()
        server = await start_redis(port, tmp_path)  # empty: no persistence
        await client.aclose()
        client = aioredis.Redis.from_url(url)
        feed.redis = feed.bus.redis = client
        await feed.reset()  # discovery rewrites its state after reconnecting
        await feed.node_upsert(make_node("c1", 51))

        assert await wait_equal(client, names, timeout=30) == []
        snap = await ViewReader(client, names).snapshot()
        assert snap.epoch is not None and snap.epoch != old_epoch
        assert {"c0-n0050", "c1-n0051"} <= set(snap.nodes)
    finally:
        await worker.close()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await client.aclose()
        if server.returncode is None:
            server.kill()
            await server.wait()
