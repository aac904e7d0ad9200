"""A transfer to a cluster that is in the node view waits, within ``ready_timeout``, for what its plan needs
and the view does not have yet, and says so in its record (``waiting_for``); it never fails at once.

The first test reproduces issue 11's failure end to end: real discovery and registry watch the session's
Ray head through `DashboardProxy`, which keeps the head's dashboard as it answers in the first seconds
after start (no GCS part in the summary yet), so the cluster and its ALIVE nodes are in the view without a
GCS address. A broadcast sent through the real gateway then waits, and completes once discovery has read
the address. The others write the view themselves (as the registry does, with its events).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from castray import local_ray
from castray.gateway.transfer_store import request_cancel
from castray.shared.events import ClusterInfo, NodeInfo
from castray.shared.names import Names
from castray.shared.view import ViewReader
from castray.transfer.worker import TransferWorker
from tests.support import transfer_env as env
from tests.support.dashboard_proxy import DashboardProxy
from tests.support.gateway import ViewWriter
from tests.support.gateway_files import gateway
from tests.support.live_view import live_view, view_clusters, view_nodes
from tests.support.waiting import wait_for

MiB = 1024 * 1024
DEADLINE = 120.0  # a busy 2-core machine: we wait for conditions, never assert on time


async def _record(client: TestClient, transfer_id: str) -> dict[str, Any]:
    resp = await client.get(f"/api/transfers/{transfer_id}")
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def _finished(client: TestClient, transfer_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        body = await _record(client, transfer_id)
        return body if body["state"] in ("completed", "failed", "cancelled") else None
    return dict(await wait_for(done, deadline=DEADLINE, what=f"transfer {transfer_id} to finish"))


async def test_broadcast_sent_before_discovery_knows_the_gcs_waits_then_completes(
        ray_head: local_ray.RayNode, transfer_worker: TransferWorker, namespace: str, redis_url: str,
        names: Names, redis_client: aioredis.Redis, tmp_path: Path) -> None:
    dashboard = DashboardProxy(ray_head.dashboard_url)
    async with dashboard.running(), live_view(namespace, redis_url, [dashboard.url]), \
            gateway(namespace, tmp_path / "gateway") as client:
        async def in_view_without_gcs() -> ClusterInfo | None:
            nodes = await view_nodes(redis_client, names)
            head = nodes.get(str(ray_head.node_id))
            clusters = await view_clusters(redis_client, names)
            if head is None or head.state != "ALIVE" or head.cluster_id not in clusters:
                return None
            return clusters[head.cluster_id]
        cluster = await wait_for(in_view_without_gcs, deadline=DEADLINE, what="the head ALIVE in the view")
        assert cluster.gcs_address is None  # what discovery sees in a head's first seconds

        upload_id, want = await env.random_upload(redis_client, names, tmp_path / "data/up/payload.bin",
                                                  3 * MiB + 7)
        resp = await client.post("/api/transfers", json={"source": {"upload_id": upload_id},
                                                         "mode": "broadcast"})
        assert resp.status == 202, await resp.text()
        queued = await resp.json()
        assert queued["targets"], queued

        async def waiting() -> dict[str, Any] | None:
            body = await _record(client, queued["id"])
            assert body["state"] not in ("failed", "completed"), body
            return body if body["waiting_for"] else None
        shown = await wait_for(waiting, deadline=DEADLINE, what="the record to say what it waits for")
        assert shown["state"] == "running"
        assert f"the GCS address of cluster {cluster.name}" in shown["waiting_for"]

        dashboard.withhold_gcs = False  # the head agent's first report: the summary names the GCS
        done = await _finished(client, queued["id"])
        assert done["state"] == "completed" and done["error"] is None, done
        assert done["waiting_for"] is None and done["sha256"] == want
        for dest in done["destinations"]:
            expected = transfer_worker.settings.inbox_root() / dest["node_id"] / "payload.bin"
            assert dest["state"] == "completed" and dest["path"] == str(expected), dest
            assert env.sha256_file(expected) == want
        learned = (await view_clusters(redis_client, names))[cluster.id].gcs_address
        assert learned is not None and learned.endswith(f":{ray_head.gcs_port}")


async def _view_without_gcs(redis: aioredis.Redis, names: Names, head: local_ray.RayNode
                            ) -> tuple[ViewWriter, ClusterInfo, NodeInfo]:
    """The head's cluster in the view as discovery first finds it: nodes ALIVE, no GCS address."""
    writer = ViewWriter(redis, names)
    nodes = await env.register_view(redis, names, head)
    found = await ViewReader(redis, names).cluster(nodes[str(head.node_id)].cluster_id)
    assert found is not None
    cluster = found.model_copy(update={"gcs_address": None})
    await writer.found(cluster)
    return writer, cluster, nodes[str(head.node_id)]


async def test_gives_up_after_ready_timeout_naming_what_it_waited_for(
        ray_head: local_ray.RayNode, namespace: str, names: Names, redis_client: aioredis.Redis,
        tmp_path: Path) -> None:
    _, cluster, head = await _view_without_gcs(redis_client, names, ray_head)
    async with env.running_worker(namespace, tmp_path, redis_client, ready_timeout=2.0):
        rec = await env.queue(redis_client, names, source={"generate": {"size": 1024}}, targets=[head.id],
                              file_name="never.bin", mode="unicast", cluster_id=cluster.id)
        rec = await env.wait_record(redis_client, names, rec.id, env.done, timeout=DEADLINE)
    why = f"gave up after 2 s waiting for the GCS address of cluster {cluster.name}"
    assert rec.state == "failed" and rec.error is not None and rec.error.startswith(why), rec.model_dump()
    assert rec.waiting_for is None
    assert [(d.state, (d.error or "")[:len(why)]) for d in rec.destinations] == [("failed", why)]


async def test_cancelled_while_waiting(ray_head: local_ray.RayNode, transfer_worker: TransferWorker,
                                       names: Names, redis_client: aioredis.Redis) -> None:
    _, cluster, head = await _view_without_gcs(redis_client, names, ray_head)
    rec = await env.queue(redis_client, names, source={"generate": {"size": 1024}}, targets=[head.id],
                          file_name="cancelled.bin", mode="unicast", cluster_id=cluster.id)
    await env.wait_record(redis_client, names, rec.id, lambda r: r.waiting_for is not None, timeout=DEADLINE)
    await request_cancel(redis_client, names, rec.id)
    rec = await env.wait_record(redis_client, names, rec.id, env.done, timeout=DEADLINE)
    assert rec.state == "cancelled" and rec.waiting_for is None, rec.model_dump()
    assert [d.state for d in rec.destinations] == ["cancelled"]


async def test_unreachable_target_is_waited_for_a_dead_one_is_not(
        ray_head: local_ray.RayNode, transfer_worker: TransferWorker, names: Names,
        redis_client: aioredis.Redis, tmp_path: Path) -> None:
    writer, cluster, head = await _view_without_gcs(redis_client, names, ray_head)
    await writer.found(cluster.model_copy(update={"gcs_address": ray_head.gcs_address}))
    lost = head.model_copy(update={"state": "UNREACHABLE"})
    await writer.node(lost, "updated")
    dead = NodeInfo(id=f"{cluster.id}-deadbeef0000", ray_node_id="deadbeef" * 7, cluster_id=cluster.id,
                    name="gone", state="DEAD", state_message="Expected termination: received SIGTERM")
    await writer.node(dead)
    upload_id, want = await env.random_upload(redis_client, names, tmp_path / "data/up/later.bin", 4096)
    rec = await env.queue(redis_client, names, source={"upload_id": upload_id},
                          targets=[head.id, dead.id], file_name="later.bin", mode="multicast",
                          cluster_id=cluster.id)
    waiting = await env.wait_record(redis_client, names, rec.id, lambda r: r.waiting_for is not None,
                                    timeout=DEADLINE)
    assert waiting.waiting_for == f"destination node {head.id} to answer again (it is UNREACHABLE)"
    assert waiting.state == "running"
    await writer.node(head, "updated")  # ALIVE again, announced as the registry does
    rec = await env.wait_record(redis_client, names, rec.id, env.done, timeout=DEADLINE)
    by_id = {d.node_id: d for d in rec.destinations}
    assert rec.state == "completed" and by_id[head.id].state == "completed", rec.model_dump()
    assert by_id[head.id].sha256 == want and env.sha256_file(str(by_id[head.id].path)) == want
    assert by_id[dead.id].state == "failed"
    assert by_id[dead.id].error == (f"destination node {dead.id} is DEAD "
                                    "(Expected termination: received SIGTERM)")
