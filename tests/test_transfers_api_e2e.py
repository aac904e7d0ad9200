"""End to end through the gateway: upload over HTTP, queue with POST /api/transfers (and the original's
create-and-transfer and manual endpoints), a real transfer worker on the session Ray head runs them, and
GET /api/transfers/{id} reports what landed on disk."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from castray import local_ray
from castray.shared.names import Names
from castray.transfer.worker import TransferWorker
from tests.support import transfer_env as env
from tests.support.gateway_files import gateway
from tests.support.waiting import wait_for

MiB = 1024 * 1024


async def finished(client: TestClient, transfer_id: str, timeout: float = 120.0) -> dict[str, Any]:
    """The transfer as GET shows it once it is completed, failed or cancelled."""
    async def ended() -> dict[str, Any] | None:
        body = dict(await (await client.get(f"/api/transfers/{transfer_id}")).json())
        return body if body["state"] in ("completed", "failed", "cancelled") else None

    return dict(await wait_for(ended, f"transfer {transfer_id} to finish", deadline=timeout, interval=0.2))


async def test_upload_then_transfer_through_the_gateway(
        ray_head: local_ray.RayNode, transfer_worker: TransferWorker, namespace: str, names: Names,
        tmp_path: Path, redis_client: aioredis.Redis) -> None:
    view = await env.register_view(redis_client, names, ray_head)
    head = view[str(ray_head.node_id)]
    payload = os.urandom(5 * MiB + 3)
    inbox = transfer_worker.settings.inbox_root() / head.id
    async with gateway(namespace, tmp_path / "data") as client:
        form = aiohttp.FormData()
        form.add_field("file", payload, filename="payload.bin")
        up = await (await client.post("/api/upload", data=form)).json()
        resp = await client.post("/api/transfers", json={"source": {"upload_id": up["upload_id"]},
                                                         "mode": "unicast", "targets": [head.id]})
        assert resp.status == 202, await resp.text()
        done = await finished(client, (await resp.json())["id"])
        assert done["state"] == "completed", done
        dest = done["destinations"][0]
        assert dest["path"] == str(inbox / "payload.bin") and dest["sha256"] == up["sha256"]
        assert env.sha256_file(dest["path"]) == up["sha256"]
        assert env.size_of(dest["path"]) == len(payload)

        # the original's generator: a file created and sent from the head
        resp = await client.post("/api/file-generator/create-and-transfer", json={
            "size": "1MB", "content_type": "pattern", "sender_id": head.id, "recipients": [head.id]})
        body = await resp.json()
        assert resp.status == 200, body
        done = await finished(client, body["transfer_id"])
        assert done["state"] == "completed", done
        landed = Path(done["destinations"][0]["path"])
        assert landed.name == body["file_info"]["file_name"]
        assert env.sha256_file(landed) == body["file_info"]["sha256"]

        # the original's manual transfer of that same generated file, renamed nowhere: it exists now
        resp = await client.post("/api/file-transfers/manual", json={
            "sender_id": head.id, "file_name": body["file_info"]["file_name"], "recipients": [head.id]})
        manual = await resp.json()
        assert resp.status == 200, manual
        again = await finished(client, manual["transfer_id"])
        assert again["state"] == "failed" and "exists" in str(again["destinations"][0]["error"])
        stats = await (await client.get("/api/file-transfers/status")).json()
    head_stats = stats[head.id]["file_transfer_stats"]
    # as destination: 2 completed, 1 failed; as sender (named, or the source node the worker picked):
    # the same again
    assert (head_stats["successful_transfers"], head_stats["failed_transfers"]) == (4, 2)
    assert env.temp_files(inbox) == []
