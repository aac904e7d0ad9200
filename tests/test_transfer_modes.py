"""Unicast, multicast and broadcast of a 64 MiB random file among the session head and two workers, run by
a real transfer worker from a queued request; every copy is checked on disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from castray import local_ray
from castray.shared import codec
from castray.shared.names import Names
from castray.transfer.worker import TransferWorker
from tests.support import transfer_env as env
from tests.support.ray_nodes import start_worker

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def two_workers(ray_head: local_ray.RayNode) -> Iterator[list[local_ray.RayNode]]:
    nodes: list[local_ray.RayNode] = []
    try:
        for _ in range(2):
            nodes.append(start_worker(ray_head, object_store_memory=300 * MiB))
        yield nodes
    finally:
        for node in nodes:
            node.stop()


async def test_unicast_multicast_broadcast_64mib(
    ray_head: local_ray.RayNode, two_workers: list[local_ray.RayNode], transfer_worker: TransferWorker,
    redis_client: aioredis.Redis, names: Names, tmp_path: Path,
) -> None:
    view = await env.register_view(redis_client, names, ray_head)
    head = view[str(ray_head.node_id)]
    w1, w2 = (view[str(n.node_id)] for n in two_workers)
    upload_id, want = await env.random_upload(redis_client, names, tmp_path / "data/uploads/payload.bin",
                                              64 * MiB)
    events: list[dict] = []
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(names.transfer_events)

    cases = [("unicast", [w1.id]), ("multicast", [w1.id, w2.id]), ("broadcast", [head.id, w1.id, w2.id])]
    for mode, targets in cases:
        rec = await env.queue(redis_client, names, source={"upload_id": upload_id}, targets=targets,
                              file_name=f"{mode}.bin", mode=mode, cluster_id=head.cluster_id)
        rec = await env.wait_record(redis_client, names, rec.id, env.done)
        assert rec.state == "completed", rec.model_dump()
        assert rec.error is None and rec.sha256 == want and rec.bytes_total == 64 * MiB
        assert rec.started_at and rec.finished_at and rec.worker == transfer_worker.instance
        assert [d.node_id for d in rec.destinations] == targets
        for d in rec.destinations:
            expected = transfer_worker.settings.inbox_root() / d.node_id / f"{mode}.bin"
            assert d.state == "completed" and d.path == str(expected) and d.sha256 == want
            assert d.bytes_done == 64 * MiB
            assert env.sha256_file(expected) == want  # the bytes on disk, not just the report
            assert env.temp_files(expected.parent) == []

    quiet = 0
    while quiet < 3:  # read until the channel has been quiet for a while (None also marks a subscribe ack)
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if msg is None:
            quiet += 1
        else:
            quiet = 0
            events.append(codec.unpack(msg["data"]))
    await pubsub.aclose()
    kinds = [e["type"] for e in events]
    assert kinds.count("transfer-started") == 3
    # per destination (1 + 2 + 3) plus one for each whole transfer
    assert kinds.count("transfer-completed") == 6 + 3
    whole = [e for e in events if e["type"] == "transfer-completed" and e["payload"]["node_id"] is None]
    assert all(e["payload"]["sha256"] == want for e in whole)
    for e in events:
        if e["type"] == "transfer-progress":
            p = e["payload"]
            assert 0 <= p["bytes_done"] <= p["bytes_total"] == 64 * MiB and p["rate"] >= 0


async def test_generated_source_and_existing_file(
    ray_head: local_ray.RayNode, two_workers: list[local_ray.RayNode], transfer_worker: TransferWorker,
    redis_client: aioredis.Redis, names: Names,
) -> None:
    """A generated source lands with its exact size; the same name again fails with "exists" and leaves
    the first copy untouched; with overwrite it is replaced."""
    view = await env.register_view(redis_client, names, ray_head)
    w1 = view[str(two_workers[0].node_id)]
    source = {"generate": {"size": "3MiB", "content": "pattern"}}
    first = await env.queue(redis_client, names, source=source, targets=[w1.id], file_name="gen.bin",
                            mode="unicast")
    first = await env.wait_record(redis_client, names, first.id, env.done)
    assert first.state == "completed", first.model_dump()
    path = Path(str(first.destinations[0].path))
    assert env.size_of(path) == 3 * MiB and env.sha256_file(path) == first.sha256
    # the generated temp source is gone
    assert list((transfer_worker.settings.data_dir / "tmp").glob("*")) == []

    again = await env.queue(redis_client, names, source={"generate": {"size": "1MiB"}}, targets=[w1.id],
                            file_name="gen.bin", mode="unicast")
    again = await env.wait_record(redis_client, names, again.id, env.done)
    assert again.state == "failed" and "exists" in str(again.destinations[0].error)
    assert env.sha256_file(path) == first.sha256 and env.temp_files(path.parent) == []

    forced = await env.queue(redis_client, names, source={"generate": {"size": "1MiB"}}, targets=[w1.id],
                             file_name="gen.bin", mode="unicast", overwrite=True)
    forced = await env.wait_record(redis_client, names, forced.id, env.done)
    assert forced.state == "completed" and env.size_of(path) == MiB
    assert env.sha256_file(path) == forced.sha256
