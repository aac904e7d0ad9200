"""An upload is read beside the transfer service (`castray.transfer.sources.HereReader`), not by a node of
the cluster, which may be on another machine. Here the cluster's head runs in a mount namespace of its own,
in which the directory holding the services' data is an empty tmpfs: it sees that directory as a head on
another machine would (not at all), while its worker node and the transfer service share it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from castray import local_ray
from castray.shared.names import Names
from tests.support import transfer_env as env
from tests.support.ray_nodes import start_worker, start_wrapped_head

MiB = 1024 * 1024

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a mount namespace needs root")


@pytest.fixture(scope="module")
def far_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[local_ray.RayNode]]]:
    """(the services' directory, [head that cannot see it, worker that can]); stopped by pid afterwards."""
    shared = tmp_path_factory.mktemp("services")
    wrap = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            f'mount -t tmpfs none "{shared}" && exec "$0" "$@"']
    nodes: list[local_ray.RayNode] = []
    try:
        nodes.append(start_wrapped_head(tempfile.mkdtemp(prefix="castray-ray-far-"), wrap, num_cpus=1,
                                        object_store_memory=200 * MiB))
        nodes.append(start_worker(nodes[0], object_store_memory=200 * MiB))
        yield shared, nodes
    finally:
        for node in reversed(nodes):
            node.stop()


async def test_an_upload_reaches_a_cluster_whose_head_cannot_see_it(
    far_cluster: tuple[Path, list[local_ray.RayNode]], namespace: str, redis_client: aioredis.Redis,
    names: Names,
) -> None:
    shared, (head, worker_node) = far_cluster
    async with env.running_worker(namespace, shared, redis_client) as worker:
        view = await env.register_view(redis_client, names, head)
        far_head, near = view[str(head.node_id)], view[str(worker_node.node_id)]

        # The head really cannot see the services' files: a file of its own there is not found.
        files_root = worker.settings.files_root_dir()
        files_root.mkdir(parents=True)
        (files_root / "mine.bin").write_bytes(b"seen only here")
        rec = await env.queue(redis_client, names, source={"node_id": far_head.id, "path": "mine.bin"},
                              targets=[near.id], file_name="mine.bin", mode="unicast",
                              cluster_id=far_head.cluster_id)
        rec = await env.wait_record(redis_client, names, rec.id, env.done, timeout=120)
        assert rec.state == "failed" and "not found" in (rec.error or ""), rec.error

        # An upload in the same directory reaches the worker, verified.
        src = shared / "data" / "uploads" / "report.bin"
        upload_id, want = await env.random_upload(redis_client, names, src, 20 * MiB + 5)
        rec = await env.queue(redis_client, names, source={"upload_id": upload_id}, targets=[near.id],
                              file_name="report.bin", mode="unicast", cluster_id=far_head.cluster_id)
        rec = await env.wait_record(redis_client, names, rec.id, env.done, timeout=120)
        assert rec.state == "completed", [d.error for d in rec.destinations]
        (dest,) = rec.destinations
        assert dest.sha256 == want and env.sha256_file(dest.path or "") == want
        assert rec.source_node_id in (far_head.id, near.id)  # the node the driver is attached to
