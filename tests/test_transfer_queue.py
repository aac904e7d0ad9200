"""The worker's queue discipline, without Ray: finished records are only acknowledged, a cancel before
start settles at once, a transfer that cannot be planned fails with a reason (after ``ready_timeout`` if it
waited for the view), a lease held by a live replica is respected."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from castray.shared import codec
from castray.shared.events import ClusterInfo, NodeInfo
from castray.shared.names import TRANSFER_GROUP, Names
from castray.shared.transfers import Destination, TransferRecord
from castray.transfer.worker import TransferWorker
from tests.support import transfer_env as env
from tests.support.waiting import wait_for


@pytest.fixture
async def worker(namespace: str, tmp_path: Path,
                 redis_client: aioredis.Redis) -> AsyncIterator[TransferWorker]:
    async with env.running_worker(namespace, tmp_path, redis_client, claim_idle_ms=1000,
                                  ready_timeout=1.0) as w:
        yield w


async def _pending(redis: aioredis.Redis, names: Names) -> int:
    return int((await redis.xpending(names.transfer_requests, TRANSFER_GROUP))["pending"])


async def _wait_acked(redis: aioredis.Redis, names: Names) -> None:
    async def acked() -> bool:
        info = await redis.xinfo_groups(names.transfer_requests)
        return bool(info) and int(info[0]["lag"] or 0) == 0 and await _pending(redis, names) == 0

    # generous: a worker starved on a busy 2-core machine re-claims its entry late
    await wait_for(acked, "the request acknowledged", deadline=60, interval=0.1)


async def test_finished_records_are_only_acknowledged(
    worker: TransferWorker, redis_client: aioredis.Redis, names: Names
) -> None:
    rec = TransferRecord(id=uuid.uuid4().hex, mode="unicast", source={"generate": {"size": 10}},
                         file_name="a.bin", created_at=time.time(), destinations=[Destination(node_id="n1")],
                         state="completed", finished_at=123.0)
    await redis_client.set(names.transfer(rec.id), codec.encode(rec))
    await worker.bus.add_work(names.transfer_requests, rec.model_dump(mode="json"))
    await _wait_acked(redis_client, names)
    after = await env.read(redis_client, names, rec.id)
    assert after.state == "completed" and after.finished_at == 123.0 and after.worker is None


async def test_cancel_before_start_and_unplannable(
    worker: TransferWorker, redis_client: aioredis.Redis, names: Names
) -> None:
    cluster = ClusterInfo(id="cx", name="no-gcs")  # known only by its dashboard: no GCS address
    node = NodeInfo(id="cx-aaaaaaaaaaaa", ray_node_id="a" * 56, cluster_id="cx", name="a", is_head=True)
    await redis_client.hset(names.view_clusters, cluster.id, codec.encode(cluster))
    await redis_client.hset(names.view_nodes, node.id, codec.encode(node))

    # cancel requested before any worker started it
    rec = await env.queue(redis_client, names, source={"generate": {"size": 10}}, targets=[node.id],
                          file_name="c.bin", mode="unicast", cancel_requested=True)
    unknown = await env.queue(redis_client, names, source={"generate": {"size": 10}}, targets=["nowhere"],
                              file_name="u.bin", mode="unicast")
    no_gcs = await env.queue(redis_client, names, source={"generate": {"size": 10}}, targets=[node.id],
                             file_name="g.bin", mode="unicast")

    got = await env.wait_record(redis_client, names, rec.id, env.done, timeout=30)
    assert got.state == "cancelled" and got.destinations[0].state == "cancelled"
    got = await env.wait_record(redis_client, names, unknown.id, env.done, timeout=30)
    assert got.state == "failed" and "node view" in str(got.error)
    assert got.destinations[0].state == "failed" and got.destinations[0].error
    got = await env.wait_record(redis_client, names, no_gcs.id, env.done, timeout=30)
    # (it waited for the address, up to ready_timeout: tests/test_transfer_waits.py)
    assert got.state == "failed" and "gave up after 1 s waiting for the GCS address" in str(got.error)
    await _wait_acked(redis_client, names)


async def test_a_live_lease_is_respected(
    worker: TransferWorker, redis_client: aioredis.Redis, names: Names
) -> None:
    """Another replica holds the transfer (and keeps renewing): this one must not run it."""
    rec = await env.queue(redis_client, names, source={"generate": {"size": 10}}, targets=["n1"],
                          file_name="l.bin", mode="unicast")
    await redis_client.set(names.transfer_lease(rec.id), "other-replica", px=60_000)
    await asyncio.sleep(3)  # several read and claim rounds (claim_idle_ms is 1 s)
    assert (await env.read(redis_client, names, rec.id)).state == "queued"
    await redis_client.delete(names.transfer_lease(rec.id))  # the holder died: its lease expires
    got = await env.wait_record(redis_client, names, rec.id, env.done, timeout=30)
    assert got.state == "failed" and got.worker == worker.instance  # n1 is in no view: failed, by us
