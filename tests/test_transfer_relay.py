"""Transfers between nodes of two Ray clusters: the session's head (cluster A) and a head of this module
with a worker (cluster B). Ray moves data only inside a cluster; the transfer worker relays through its
machine (`castray.transfer.job`). Every copy is checked on disk, and the relay copy is gone afterwards."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from castray import local_ray
from castray.gateway.transfer_store import request_cancel
from castray.shared import codec
from castray.shared.events import ClusterInfo, NodeInfo
from castray.shared.names import Names
from castray.transfer.worker import TransferWorker
from tests.support import transfer_env as env
from tests.support.ray_nodes import start_worker

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def cluster_b() -> Iterator[list[local_ray.RayNode]]:
    """A second cluster: a head and one worker, stopped (by pid) after the module."""
    nodes: list[local_ray.RayNode] = []
    try:
        nodes.append(local_ray.start_head(tempfile.mkdtemp(prefix="castray-ray-b-"), num_cpus=1,
                                          object_store_memory=200 * MiB))
        nodes.append(start_worker(nodes[0], object_store_memory=200 * MiB))
        yield nodes
    finally:
        for node in reversed(nodes):
            node.stop()


async def _two_views(redis: aioredis.Redis, names: Names, a: local_ray.RayNode,
                     b: list[local_ray.RayNode]) -> tuple[NodeInfo, NodeInfo, NodeInfo]:
    view_a = await env.register_view(redis, names, a)
    view_b = await env.register_view(redis, names, b[0])
    return view_a[str(a.node_id)], view_b[str(b[0].node_id)], view_b[str(b[1].node_id)]


def _relay_leftovers(transfer_worker: TransferWorker) -> list[Path]:
    relay = transfer_worker.settings.data_dir.absolute() / "relay"
    return sorted(relay.iterdir()) if relay.exists() else []


async def test_multicast_across_two_clusters_verified_everywhere(
    ray_head: local_ray.RayNode, cluster_b: list[local_ray.RayNode], transfer_worker: TransferWorker,
    redis_client: aioredis.Redis, names: Names, tmp_path: Path,
) -> None:
    a_head, b_head, b_worker = await _two_views(redis_client, names, ray_head, cluster_b)
    assert a_head.cluster_id != b_head.cluster_id
    # Relay copies a dead replica left here: one untouched for two hours goes, a fresh one stays.
    relay = transfer_worker.settings.data_dir.absolute() / "relay"
    for name, age in (("0dead-1", 7200), ("0busy-1", 5)):
        (relay / name).mkdir(parents=True)
        (relay / name / "x.bin").write_bytes(b"x")
        for path in (relay / name / "x.bin", relay / name):
            os.utime(path, (time.time() - age, time.time() - age))
    upload_id, want = await env.random_upload(redis_client, names, tmp_path / "data/uploads/across.bin",
                                              48 * MiB + 4097)
    targets = [a_head.id, b_head.id, b_worker.id]
    rec = await env.queue(redis_client, names, source={"upload_id": upload_id}, targets=targets,
                          file_name="across.bin", mode="multicast", cluster_id=a_head.cluster_id)
    rec = await env.wait_record(redis_client, names, rec.id, env.done, timeout=180)
    assert rec.state == "completed" and rec.error is None, [d.error for d in rec.destinations]
    assert rec.sha256 == want and [d.node_id for d in rec.destinations] == targets
    for d in rec.destinations:
        expected = transfer_worker.settings.inbox_root() / d.node_id / "across.bin"
        assert d.state == "completed" and d.path == str(expected) and d.sha256 == want
        assert d.bytes_done == 48 * MiB + 4097
        assert env.sha256_file(expected) == want
        assert env.temp_files(expected.parent) == []
    assert _relay_leftovers(transfer_worker) == [relay / "0busy-1"]


async def test_a_node_file_of_cluster_b_to_cluster_a_only(
    ray_head: local_ray.RayNode, cluster_b: list[local_ray.RayNode], transfer_worker: TransferWorker,
    redis_client: aioredis.Redis, names: Names,
) -> None:
    """Every destination outside the source's cluster: the source's cluster only makes the relay copy."""
    a_head, _, b_worker = await _two_views(redis_client, names, ray_head, cluster_b)
    files_root = transfer_worker.settings.files_root_dir()
    files_root.mkdir(parents=True)
    (files_root / "from-b.bin").write_bytes(os.urandom(20 * MiB))
    want = env.sha256_file(files_root / "from-b.bin")
    rec = await env.queue(redis_client, names, source={"node_id": b_worker.id, "path": "from-b.bin"},
                          targets=[a_head.id], file_name="from-b.bin", mode="unicast",
                          cluster_id=b_worker.cluster_id)
    rec = await env.wait_record(redis_client, names, rec.id, env.done, timeout=180)
    assert rec.state == "completed", [d.error for d in rec.destinations]
    (dest,) = rec.destinations
    assert dest.sha256 == want and env.sha256_file(dest.path) == want
    assert _relay_leftovers(transfer_worker) == []


async def test_an_unreachable_other_cluster_fails_only_its_nodes(
    ray_head: local_ray.RayNode, namespace: str, redis_client: aioredis.Redis, names: Names, tmp_path: Path,
) -> None:
    async with env.running_worker(namespace, tmp_path, redis_client, driver_start_timeout=10) as worker:
        await _unreachable_other_cluster(ray_head, worker, redis_client, names, tmp_path)


async def _unreachable_other_cluster(ray_head: local_ray.RayNode, transfer_worker: TransferWorker,
                                     redis_client: aioredis.Redis, names: Names, tmp_path: Path) -> None:
    view = await env.register_view(redis_client, names, ray_head)
    a_head = view[str(ray_head.node_id)]
    # A cluster whose GCS no longer answers (its address is a closed port on this machine).
    gone = ClusterInfo(id="cgone", name="gone", gcs_address=f"127.0.0.1:{local_ray.free_port()}")
    ghost = NodeInfo(id="cgone-ghost", ray_node_id="f" * 56, cluster_id="cgone", name="ghost", state="ALIVE")
    await redis_client.hset(names.view_clusters, gone.id, codec.encode(gone))
    await redis_client.hset(names.view_nodes, ghost.id, codec.encode(ghost))
    upload_id, want = await env.random_upload(redis_client, names, tmp_path / "data/uploads/half.bin",
                                              3 * MiB)
    rec = await env.queue(redis_client, names, source={"upload_id": upload_id}, targets=[a_head.id, ghost.id],
                          file_name="half.bin", mode="multicast", cluster_id=a_head.cluster_id)
    rec = await env.wait_record(redis_client, names, rec.id, env.done, timeout=120)
    by_node = {d.node_id: d for d in rec.destinations}
    assert rec.state == "completed" and by_node[a_head.id].state == "completed"
    assert by_node[ghost.id].state == "failed" and "127.0.0.1" in (by_node[ghost.id].error or "")
    assert "ghost" not in (by_node[a_head.id].error or "")
    assert env.sha256_file(by_node[a_head.id].path or "") == want
    assert _relay_leftovers(transfer_worker) == []


async def test_cancel_during_the_source_leg_cancels_every_cluster(
    ray_head: local_ray.RayNode, cluster_b: list[local_ray.RayNode], namespace: str,
    redis_client: aioredis.Redis, names: Names, tmp_path: Path,
) -> None:
    """Cancelled while cluster A is still copying: A's and B's destinations end cancelled (not failed),
    and neither a copy, a temp file nor the relay copy is left."""
    # 1 MiB chunks at 8 MiB/s: progress shows within a second, and the source leg takes 8 s.
    async with env.running_worker(namespace, tmp_path, redis_client, rate_limit=8 * MiB,
                                  chunk_bytes=MiB) as worker:
        a_head, _, b_worker = await _two_views(redis_client, names, ray_head, cluster_b)
        upload_id, _ = await env.random_upload(redis_client, names, tmp_path / "data/uploads/slow.bin",
                                               64 * MiB)
        rec = await env.queue(redis_client, names, source={"upload_id": upload_id},
                              targets=[a_head.id, b_worker.id], file_name="slow.bin", mode="multicast",
                              cluster_id=a_head.cluster_id)
        await env.wait_record(redis_client, names, rec.id,
                              lambda r: r.destinations[0].bytes_done > 0, timeout=120)
        await request_cancel(redis_client, names, rec.id)  # as DELETE /api/transfers/{id} does
        final = await env.wait_record(redis_client, names, rec.id, env.done, timeout=60)
        assert final.state == "cancelled", [(d.state, d.bytes_done, d.error) for d in final.destinations]
        assert [d.state for d in final.destinations] == ["cancelled", "cancelled"]
        for node in (a_head, b_worker):
            inbox = worker.settings.inbox_root() / node.id
            assert not (inbox / "slow.bin").exists() and env.temp_files(inbox) == []
        assert _relay_leftovers(worker) == []


async def test_cancel_during_the_relay_leg(
    ray_head: local_ray.RayNode, cluster_b: list[local_ray.RayNode], namespace: str,
    redis_client: aioredis.Redis, names: Names, tmp_path: Path,
) -> None:
    """Cancelled once cluster B has started sending the relay copy on: cancelled, not failed."""
    async with env.running_worker(namespace, tmp_path, redis_client, rate_limit=8 * MiB,
                                  chunk_bytes=MiB) as worker:
        a_head, _, b_worker = await _two_views(redis_client, names, ray_head, cluster_b)
        upload_id, _ = await env.random_upload(redis_client, names, tmp_path / "data/uploads/later.bin",
                                               32 * MiB)
        rec = await env.queue(redis_client, names, source={"upload_id": upload_id}, targets=[b_worker.id],
                              file_name="later.bin", mode="unicast", cluster_id=a_head.cluster_id)
        # B's destination is pending while A makes the relay copy, and running once B sends it.
        await env.wait_record(redis_client, names, rec.id,
                              lambda r: r.destinations[0].state == "running", timeout=120)
        await request_cancel(redis_client, names, rec.id)
        final = await env.wait_record(redis_client, names, rec.id, env.done, timeout=60)
        (dest,) = final.destinations
        assert final.state == "cancelled" and dest.state == "cancelled", (dest.state, dest.error)
        inbox = worker.settings.inbox_root() / b_worker.id
        assert not (inbox / "later.bin").exists() and env.temp_files(inbox) == []
        assert _relay_leftovers(worker) == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A data directory whose relay folder is a 32 MiB tmpfs (root only), unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    data = tmp_path / "small"
    small = data / "relay"
    small.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(small)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield data
    finally:
        subprocess.run(["umount", "-l", str(small)], capture_output=True)


async def test_no_room_for_the_relay_fails_the_other_clusters_nodes_at_once(
    ray_head: local_ray.RayNode, cluster_b: list[local_ray.RayNode], small_disk: Path,
    redis_client: aioredis.Redis, names: Names, namespace: str, tmp_path: Path,
) -> None:
    a_head, b_head, _ = await _two_views(redis_client, names, ray_head, cluster_b)
    upload = small_disk / "uploads" / "big.bin"  # the data directory's own disk; its relay folder is small
    # 24 MiB would fit on the 32 MiB disk, but not with the headroom a relay leaves free.
    upload_id, want = await env.random_upload(redis_client, names, upload, 24 * MiB)
    async with env.running_worker(namespace, tmp_path / "worker", redis_client,
                                  data_dir=small_disk) as worker:
        rec = await env.queue(redis_client, names, source={"upload_id": upload_id},
                              targets=[a_head.id, b_head.id], file_name="big.bin", mode="multicast",
                              cluster_id=a_head.cluster_id)
        rec = await env.wait_record(redis_client, names, rec.id, env.done, timeout=180)
    by_node = {d.node_id: d for d in rec.destinations}
    assert by_node[a_head.id].state == "completed" and by_node[a_head.id].sha256 == want  # its own cluster
    failed = by_node[b_head.id]
    assert failed.state == "failed" and failed.error and "no room for the relay copy" in failed.error, failed
    assert "needed" in failed.error and "free" in failed.error
    assert rec.state == "completed" and rec.error and b_head.id in rec.error  # done, with one failure
    assert env.sha256_file(worker.settings.inbox_root() / a_head.id / "big.bin") == want
    assert _relay_leftovers(worker) == []  # nothing was written to the full disk
