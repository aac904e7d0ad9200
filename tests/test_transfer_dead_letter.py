"""Poison transfer requests: one whose handling raises an unexpected error is retried up to
``max_deliveries`` deliveries, then fails with its reason, is acknowledged and copied to the dead-letter
stream; one begun too often without an outcome (its replica died each time) is given up unrun."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import redis.asyncio as aioredis

from castray.shared import codec
from castray.shared.bus import Bus
from castray.shared.events import ClusterInfo, NodeInfo
from castray.shared.names import TRANSFER_GROUP, Names
from castray.shared.transfers import Destination, TransferRecord
from tests.support import transfer_env as env
from tests.support.waiting import wait_for


async def _view(redis: aioredis.Redis, names: Names) -> NodeInfo:
    cluster = ClusterInfo(id="cx", name="cx", gcs_address="127.0.0.1:1")  # never contacted here
    node = NodeInfo(id="cx-aaaaaaaaaaaa", ray_node_id="a" * 56, cluster_id="cx", name="a", is_head=True)
    await redis.hset(names.view_clusters, cluster.id, codec.encode(cluster))
    await redis.hset(names.view_nodes, node.id, codec.encode(node))
    return node


async def _pending(redis: aioredis.Redis, names: Names) -> int:
    return int((await redis.xpending(names.transfer_requests, TRANSFER_GROUP))["pending"])


async def _dead_letters(redis: aioredis.Redis, names: Names, count: int) -> list[dict[bytes, bytes]]:
    async def arrived() -> list[dict[bytes, bytes]] | None:
        rows = await redis.xrange(names.transfer_dead_letters)
        return [fields for _id, fields in rows] if len(rows) >= count else None

    found: list[dict[bytes, bytes]] = await wait_for(arrived, f"{count} request(s) in the dead-letter stream",
                                                     deadline=90, interval=0.1)
    return found


async def test_a_request_that_raises_fails_with_its_reason_after_max_deliveries(
    namespace: str, tmp_path: Path, redis_client: aioredis.Redis, names: Names
) -> None:
    node = await _view(redis_client, names)
    # a size the plan's model refuses: its handling raises a ValidationError, not a PlanError
    rec = await env.queue(redis_client, names, source={"generate": {"size": 10}}, targets=[node.id],
                          file_name="p.bin", mode="unicast", cluster_id="cx", bytes_total=-1)
    async with env.running_worker(namespace, tmp_path, redis_client, claim_idle_ms=500, max_deliveries=3):
        got = await env.wait_record(redis_client, names, rec.id, env.done, timeout=120)
        fields = (await _dead_letters(redis_client, names, 1))[0]
    assert got.state == "failed"
    assert "gave up after 3 deliveries" in str(got.error) and "ValidationError" in str(got.error)
    assert got.destinations[0].state == "failed" and got.destinations[0].error == got.error
    assert fields[b"transfer_id"].decode() == rec.id and int(fields[b"deliveries"]) == 3
    assert codec.unpack(fields[b"data"])["id"] == rec.id
    assert await _pending(redis_client, names) == 0  # acknowledged: never claimed again


async def test_a_request_delivered_too_often_is_given_up_without_running(
    namespace: str, tmp_path: Path, redis_client: aioredis.Redis, names: Names
) -> None:
    node = await _view(redis_client, names)
    # two replicas took it and died mid-run (never acknowledged): two attempts already
    rec = TransferRecord(id=uuid.uuid4().hex, mode="unicast", source={"generate": {"size": 10}},
                         file_name="d.bin", created_at=time.time(), cluster_id="cx", state="running",
                         worker="dead-2", attempts=2, destinations=[Destination(node_id=node.id)])
    await redis_client.set(names.transfer(rec.id), codec.encode(rec))
    bus = Bus(redis_client, names, source="test")
    await bus.add_work(names.transfer_requests, rec.model_dump(mode="json"))
    async with env.running_worker(namespace, tmp_path, redis_client, claim_idle_ms=500, max_deliveries=2):
        got = await env.wait_record(redis_client, names, rec.id, env.done, timeout=60)
        await _dead_letters(redis_client, names, 1)
    assert got.state == "failed" and "gave up after 2 deliveries" in str(got.error)
    assert got.worker == "dead-2" and got.started_at is None  # not run a third time
    assert await _pending(redis_client, names) == 0


async def test_a_replica_stopped_by_a_shutdown_does_not_count_an_attempt(
    namespace: str, tmp_path: Path, redis_client: aioredis.Redis, names: Names
) -> None:
    cluster = ClusterInfo(id="cw", name="no-gcs-yet")  # the transfer waits for its GCS address
    node = NodeInfo(id="cw-aaaaaaaaaaaa", ray_node_id="a" * 56, cluster_id="cw", name="a", is_head=True)
    await redis_client.hset(names.view_clusters, cluster.id, codec.encode(cluster))
    await redis_client.hset(names.view_nodes, node.id, codec.encode(node))
    rec = await env.queue(redis_client, names, source={"generate": {"size": 10}}, targets=[node.id],
                          file_name="w.bin", mode="unicast", cluster_id="cw")
    async with env.running_worker(namespace, tmp_path, redis_client, ready_timeout=300.0):
        got = await env.wait_record(redis_client, names, rec.id, lambda r: r.waiting_for is not None,
                                    timeout=60)
        assert got.attempts == 1
    after = await env.read(redis_client, names, rec.id)  # the worker closed while the transfer waited
    assert after.attempts == 0 and after.state == "running"


async def test_an_unreadable_record_is_given_up_at_once(
    namespace: str, tmp_path: Path, redis_client: aioredis.Redis, names: Names
) -> None:
    """A stored record no model reads (here, a source of no known kind) fails the same way on every
    delivery: it is dead-lettered on the first, with the reason, and never claimed again."""
    tid = uuid.uuid4().hex
    stored = {"id": tid, "mode": "unicast", "source": {"x": 1}}
    await redis_client.set(names.transfer(tid), codec.pack(stored))
    await Bus(redis_client, names, source="test").add_work(names.transfer_requests, {"id": tid})
    async with env.running_worker(namespace, tmp_path, redis_client, claim_idle_ms=500, max_deliveries=3):
        fields = (await _dead_letters(redis_client, names, 1))[0]
    assert fields[b"transfer_id"].decode() == tid and int(fields[b"deliveries"]) == 1
    assert "unreadable" in fields[b"error"].decode()
    assert await _pending(redis_client, names) == 0
