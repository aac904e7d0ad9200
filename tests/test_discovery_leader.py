"""Several discovery replicas in one namespace: one leads (it holds the lease at ``Names.discovery_leader``),
the others stand by, and one of them takes over when the leader dies. Real Redis, a real Ray cluster, and
for the crash a real ``castray discovery`` process killed with SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import Any

import pytest
import redis.asyncio as aioredis

from castray import local_ray
from castray.discovery.errors import NotLeading
from castray.discovery.worker import DiscoveryWorker
from castray.shared.bus import Bus
from castray.shared.codec import as_text
from castray.shared.lease import Lease, holder_of
from castray.shared.names import Names
from tests.support.discovery import EventLog, quiet_settings, stored_state
from tests.support.waiting import wait_for


async def _meta_source(redis: aioredis.Redis, names: Names) -> str | None:
    return as_text(await redis.hget(names.discovery_meta, "source"))


async def _command_servers(redis: aioredis.Redis, names: Names) -> int:
    channel = names.commands("discovery")
    return int(dict(await redis.pubsub_numsub(channel)).get(channel.encode(), 0))


async def test_lease_has_one_holder_and_is_kept_renewed(redis_client: aioredis.Redis, names: Names) -> None:
    key = f"{names.ns}:test-lease"
    a, b = Lease(redis_client, key, "a", 2000), Lease(redis_client, key, "b", 2000)
    assert await a.acquire() and not await b.acquire()
    assert not await b.renew()
    await b.release()  # not b's: nothing happens
    assert await a.holder() == "a" and await a.acquire()  # acquiring a lease we hold renews it
    await a.release()
    assert await a.holder() is None
    assert await b.acquire() and not await a.acquire()
    await b.release()

    # keep() takes a lease that vanished back (Redis restarted empty), and returns once another holds it
    assert await a.acquire()
    keeper = asyncio.create_task(a.keep(0.05))
    await redis_client.delete(key)
    await wait_for(lambda: _holder_is(a, "a"), what="the vanished lease taken back")
    assert not keeper.done()
    await redis_client.set(key, "b", px=2000)
    await asyncio.wait_for(keeper, 10)
    assert await a.holder() == "b"


async def _holder_is(lease: Lease, owner: str) -> bool:
    return await lease.holder() == owner


async def test_two_replicas_one_leads_the_other_stands_by(
    run_discovery,
    events: EventLog,
    ray_head: local_ray.RayNode,
    redis_client: aioredis.Redis,
    names: Names,
    namespace: str,
    redis_url: str,
) -> None:
    settings: dict[str, Any] = dict(scan_ports=str(ray_head.dashboard_port), periodic=True, scan_interval=0.2,
                                    leader_ttl=1.0)
    first: DiscoveryWorker = await run_discovery(**settings)
    client = aioredis.Redis.from_url(redis_url, socket_timeout=5)
    periodic = settings.pop("periodic")
    second = DiscoveryWorker(settings=quiet_settings(namespace, redis_url, **settings), redis=client,
                             periodic=periodic)
    task = asyncio.create_task(second.run())
    try:
        await wait_for(lambda: _found(redis_client, names), what="the cluster in discovery's state")
        resets = len(events.of_type("source-reset"))
        # Many state checks (every 0.2 s) and lease renewals later: still one writer, no rewrites. Two
        # replicas without the lease rewrote each other's state at every check.
        for _ in range(15):
            await asyncio.sleep(0.2)
            assert await holder_of(redis_client, names.discovery_leader) == first.bus.source
            assert await _meta_source(redis_client, names) == first.bus.source
        assert first.leading and not second.leading and second.terms == 0
        assert len(events.of_type("source-reset")) == resets
        assert {e.source for e in events.events} == {first.bus.source}
        assert await _command_servers(redis_client, names) == 1

        # The leader stops (it releases the lease): the standby takes over and rewrites the state.
        await first.close()
        await second.started(timeout=30)
        assert second.leading and second.terms == 1
        await wait_for(lambda: _found(redis_client, names), what="the cluster found by the new leader")
        assert await _meta_source(redis_client, names) == second.bus.source
        bus = Bus(redis_client, names, source="test")
        reply = await bus.request("discovery", "discover", {}, timeout=20)
        assert reply["found"]
    finally:
        await second.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()


async def _found(redis: aioredis.Redis, names: Names) -> bool:
    clusters, nodes = await stored_state(redis, names)
    return bool(clusters) and bool(nodes)


async def test_leader_that_lost_its_lease_writes_nothing_and_stands_by(
    run_discovery,
    ray_head: local_ray.RayNode,
    redis_client: aioredis.Redis,
    names: Names,
) -> None:
    worker: DiscoveryWorker = await run_discovery(scan_ports=str(ray_head.dashboard_port), periodic=True,
                                                  scan_interval=0.2, leader_ttl=1.0)
    await wait_for(lambda: _found(redis_client, names), what="the cluster in discovery's state")
    publisher = worker.publisher
    # Another replica holds the lease now (ours expired while we were paused, say).
    await redis_client.set(names.discovery_leader, "intruder", px=60_000)
    before = await redis_client.hgetall(names.discovery_meta)
    with pytest.raises(NotLeading):
        await publisher.reset()
    assert await redis_client.hgetall(names.discovery_meta) == before

    async def standing_by() -> bool:
        return not worker.leading and await _command_servers(redis_client, names) == 0

    await wait_for(standing_by, what="the leader standing by")
    assert await redis_client.hgetall(names.discovery_meta) == before

    # The intruder goes away: this replica leads again, in a new term, and rewrites the state.
    await redis_client.delete(names.discovery_leader)
    await worker.started(timeout=30)
    assert worker.terms == 2
    await wait_for(lambda: _found(redis_client, names), what="the state written in the new term")
    assert await _meta_source(redis_client, names) == worker.bus.source


async def test_standby_takes_over_from_a_killed_leader_process(
    events: EventLog,
    ray_head: local_ray.RayNode,
    redis_client: aioredis.Redis,
    names: Names,
    namespace: str,
    redis_url: str,
) -> None:
    env = {**os.environ, "CASTRAY_NAMESPACE": namespace, "CASTRAY_REDIS_URL": redis_url,
           "CASTRAY_SCAN_PORTS": str(ray_head.dashboard_port), "CASTRAY_SCAN_INTERVAL": "0.2",
           "CASTRAY_RAY_TEMP_DIRS": "", "CASTRAY_LEADER_TTL": "1.0", "CASTRAY_POLL_INTERVAL": "0.25"}
    leader = await asyncio.create_subprocess_exec(sys.executable, "-m", "castray.discovery.main", env=env,
                                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = aioredis.Redis.from_url(redis_url, socket_timeout=5)
    settings = quiet_settings(namespace, redis_url, scan_ports=str(ray_head.dashboard_port),
                              scan_interval=0.2, leader_ttl=1.0)
    standby = DiscoveryWorker(settings=settings, redis=client, periodic=True)
    task: asyncio.Task[None] | None = None
    try:
        await wait_for(lambda: _found(redis_client, names), what="the leader process's state")
        leader_source = await _meta_source(redis_client, names)
        assert leader_source and leader_source.startswith("discovery")
        task = asyncio.create_task(standby.run())
        await wait_for(lambda: _stands_by(standby, redis_client, names, leader_source),
                         what="the in-process replica standing by")

        leader.send_signal(signal.SIGKILL)  # no release: the lease must expire
        await asyncio.wait_for(leader.wait(), 10)
        await standby.started(timeout=30)
        await wait_for(lambda: _found(redis_client, names), what="the new leader's state")
        assert await _meta_source(redis_client, names) == standby.bus.source
        reset = await events.wait_for(lambda e: e.type == "source-reset" and e.source == standby.bus.source,
                                      what="the new leader's source-reset")
        assert reset.source != leader_source
    finally:
        if leader.returncode is None:
            leader.kill()
            await asyncio.wait_for(leader.wait(), 10)
        await standby.close()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await client.aclose()


async def _stands_by(worker: DiscoveryWorker, redis: aioredis.Redis, names: Names, leader: str) -> bool:
    return (worker._runner is not None and not worker.leading
            and await holder_of(redis, names.discovery_leader) == leader)
