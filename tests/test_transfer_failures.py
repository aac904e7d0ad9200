"""Failures mid-transfer: a destination node killed (it fails with a reason, the others complete, nothing
partial is left), and a transfer worker replica killed (another replica takes the transfer over and
finishes it, once)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest
import redis.asyncio as aioredis

from castray import local_ray
from castray.shared import codec
from castray.shared.names import Names
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
