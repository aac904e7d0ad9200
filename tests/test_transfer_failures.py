"""Failures mid-transfer: a destination node killed (it fails with a reason, the others complete, nothing
partial is left), and a transfer worker replica killed (another replica takes the transfer over and
finishes it, once, keeping what the dead one settled: a destination it completed or failed is neither
sent to again nor reported anew)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest
import redis.asyncio as aioredis

from castray import local_ray
from castray.shared import codec
from castray.shared.bus import Bus
from castray.shared.names import Names
from castray.shared.transfers import Destination, QueuedTransfer, TransferRecord, UploadSource
from castray.transfer.worker import TransferWorker
from tests.support import transfer_env as env
from tests.support.ray_nodes import start_worker

MiB = 1024 * 1024


@pytest.fixture
async def slow_worker(namespace: str, tmp_path: Path,
                      redis_client: aioredis.Redis) -> AsyncIterator[TransferWorker]:
    async with env.running_worker(namespace, tmp_path, redis_client,
                                  rate_limit=8 * MiB, chunk_bytes=MiB) as w:
        yield w


async def test_destination_killed_mid_transfer(
    ray_head: local_ray.RayNode, ray_workers: list[local_ray.RayNode], slow_worker: TransferWorker,
    redis_client: aioredis.Redis, names: Names, tmp_path: Path,
) -> None:
    for _ in range(2):
        ray_workers.append(await asyncio.to_thread(start_worker, ray_head))
    view = await env.register_view(redis_client, names, ray_head)
    head, w1, doomed = view[str(ray_head.node_id)], *(view[str(n.node_id)] for n in ray_workers)
    upload_id, want = await env.random_upload(redis_client, names, tmp_path / "data/uploads/payload.bin",
                                              64 * MiB)
    rec = await env.queue(redis_client, names, source={"upload_id": upload_id},
                          targets=[head.id, w1.id, doomed.id], file_name="f.bin")
    await env.wait_record(redis_client, names, rec.id,
                          lambda r: all(d.bytes_done >= 4 * MiB for d in r.destinations))
    await asyncio.to_thread(ray_workers[1].stop)  # the whole node: raylet, agent, workers (SIGKILL)

    final = await env.wait_record(redis_client, names, rec.id, env.done, timeout=120)
    by_node = {d.node_id: d for d in final.destinations}
    assert by_node[doomed.id].state == "failed" and by_node[doomed.id].error, final.model_dump()
    assert "node" in str(by_node[doomed.id].error)
    assert final.state == "completed" and doomed.id in str(final.error)
    inbox = slow_worker.settings.inbox_root()
    for node in (head, w1):
        assert by_node[node.id].state == "completed" and by_node[node.id].sha256 == want
        assert env.sha256_file(inbox / node.id / "f.bin") == want
    assert not env.exists(inbox / doomed.id / "f.bin")
    assert env.temp_files(inbox) == []  # the dead node's temp file was removed from the same host


def _spawn_worker(tmp_path: Path, namespace: str, index: int) -> subprocess.Popen[bytes]:
    envs = {**os.environ, "CASTRAY_NAMESPACE": namespace, "CASTRAY_DATA_DIR": str(tmp_path / "data"),
            "CASTRAY_INBOX_DIR": str(tmp_path / "inbox"), "CASTRAY_CLAIM_IDLE_MS": "3000",
            "CASTRAY_RATE_LIMIT": str(6 * MiB), "CASTRAY_CHUNK_BYTES": str(MiB),
            "CASTRAY_REDIS_URL": os.environ.get("CASTRAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")}
    log = open(tmp_path / f"worker{index}.log", "wb")  # noqa: SIM115 - kept open by the child
    return subprocess.Popen([sys.executable, "-c", "from castray.transfer.main import main; main()"],
                            env=envs, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


@pytest.fixture
def two_replicas(tmp_path: Path, namespace: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [_spawn_worker(tmp_path, namespace, i) for i in range(2)]
    yield procs
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


async def test_worker_replica_killed_mid_transfer(
    ray_head: local_ray.RayNode, ray_workers: list[local_ray.RayNode],
    two_replicas: list[subprocess.Popen[bytes]], redis_client: aioredis.Redis, names: Names, tmp_path: Path,
) -> None:
    ray_workers.append(await asyncio.to_thread(start_worker, ray_head))
    view = await env.register_view(redis_client, names, ray_head)
    head, w1 = view[str(ray_head.node_id)], view[str(ray_workers[0].node_id)]
    upload_id, want = await env.random_upload(redis_client, names, tmp_path / "data/uploads/payload.bin",
                                              64 * MiB)
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(names.transfer_events)
    rec = await env.queue(redis_client, names, source={"upload_id": upload_id}, targets=[head.id, w1.id],
                          file_name="g.bin")
    running = await env.wait_record(redis_client, names, rec.id, lambda r: r.worker is not None and all(
        d.bytes_done >= 4 * MiB for d in r.destinations), timeout=120)
    first = str(running.worker)
    victim = psutil.Process(int(first.split(":")[-2]))
    assert victim.pid in {p.pid for p in two_replicas}
    drivers = victim.children(recursive=True)
    victim.kill()  # kill -9: no goodbye, its lease and stream entry just go stale

    final = await env.wait_record(redis_client, names, rec.id, env.done, timeout=150)
    assert final.state == "completed", final.model_dump()
    assert final.worker is not None and final.worker != first
    inbox = tmp_path / "inbox"
    for node in (head, w1):
        d = next(x for x in final.destinations if x.node_id == node.id)
        assert d.state == "completed" and d.sha256 == want
        assert env.sha256_file(inbox / node.id / "g.bin") == want
    assert env.temp_files(inbox) == []
    gone, alive = await asyncio.to_thread(psutil.wait_procs, drivers, timeout=10)  # its driver died too
    assert alive == []
    completions = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if msg is not None:
            event = codec.unpack(msg["data"])
            if event["type"] == "transfer-completed" and event["payload"]["node_id"] is None:
                completions.append(event)
    await pubsub.aclose()
    assert len(completions) == 1  # finished once
    pending = await redis_client.xpending(names.transfer_requests, "transfer-workers")
    assert pending["pending"] == 0  # acknowledged


async def test_a_taken_over_transfer_keeps_the_destinations_the_dead_replica_settled(
    ray_head: local_ray.RayNode, redis_client: aioredis.Redis, names: Names, namespace: str, tmp_path: Path,
) -> None:
    """The record as a replica that died mid-transfer left it: one copy completed, one failed (both
    published), one running. The replica taking it over sends to the running one only."""
    view = await env.register_view(redis_client, names, ray_head)
    head = view[str(ray_head.node_id)]
    done, failed = (head.model_copy(update={"id": f"{head.id}-{role}", "is_head": False})
                    for role in ("done", "failed"))  # more destinations on the same Ray node
    for node in (done, failed):
        await redis_client.hset(names.view_nodes, node.id, codec.encode(node))
    payload = tmp_path / "data/uploads/payload.bin"
    upload_id, want = await env.random_upload(redis_client, names, payload, 3 * MiB)
    placed = tmp_path / "inbox" / done.id / "t.bin"
    placed.parent.mkdir(parents=True)
    placed.write_bytes(payload.read_bytes())
    rec = TransferRecord(
        id=uuid.uuid4().hex, state="running", mode="multicast", source=UploadSource(upload_id=upload_id),
        file_name="t.bin", created_at=time.time(), started_at=time.time(), bytes_total=3 * MiB,
        worker="transfer@gone:1:dead", attempts=1, destinations=[
            Destination(node_id=done.id, state="completed", bytes_done=3 * MiB, path=str(placed),
                        sha256=want),
            Destination(node_id=failed.id, state="failed", bytes_done=MiB, error="disk full (as it was)"),
            Destination(node_id=head.id, state="running", bytes_done=2 * MiB)])
    await redis_client.set(names.transfer(rec.id), codec.encode(rec))
    await Bus(redis_client, names, source="test").add_work(names.transfer_requests,
                                                           QueuedTransfer(id=rec.id).model_dump())
    async with env.running_worker(namespace, tmp_path, redis_client, chunk_bytes=MiB):
        final = await env.wait_record(redis_client, names, rec.id, env.done, timeout=240)

    by_node = {d.node_id: d for d in final.destinations}
    assert final.state == "completed" and final.worker != rec.worker, final.model_dump()
    assert by_node[head.id].state == "completed" and by_node[head.id].sha256 == want, final.model_dump()
    assert env.sha256_file(tmp_path / "inbox" / head.id / "t.bin") == want
    assert by_node[failed.id].state == "failed", final.model_dump()  # not pending, not sent again
    assert by_node[failed.id].error == "disk full (as it was)", final.model_dump()
    assert not env.exists(tmp_path / "inbox" / failed.id / "t.bin")
    assert by_node[done.id] == rec.destinations[0], final.model_dump()  # as the dead replica left it
    assert final.error is not None and failed.id in final.error
    assert env.temp_files(tmp_path / "inbox") == []
