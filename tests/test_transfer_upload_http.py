"""A transfer service that does not share the gateway's data directory (``CASTRAY_GATEWAY_URL`` set) streams
an upload from the gateway (``GET /api/uploads/<id>/content``) with the gateway's token. A wrong token, or
an upload deleted meanwhile, fails the transfer with the gateway's reason. Real gateway on a real port, real
transfer worker and driver, the session's real Ray head."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

from castray import local_ray
from castray.shared.names import Names
from castray.shared.transfers import TransferRecord
from tests.support import transfer_env as env
from tests.support.gateway_files import gateway

MiB = 1024 * 1024
TOKEN = "s3cret-token-0123456789"


async def test_an_upload_is_streamed_from_the_gateway(ray_head: local_ray.RayNode,
                                                     redis_client: aioredis.Redis, names: Names,
                                                     namespace: str, tmp_path: Path) -> None:
    view = await env.register_view(redis_client, names, ray_head)
    head = view[str(ray_head.node_id)]
    payload = os.urandom(5 * MiB + 123)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with gateway(namespace, tmp_path / "gateway", api_token=TOKEN) as client:
        form = aiohttp.FormData()
        form.add_field("file", payload, filename="over-http.bin")
        resp = await client.post("/api/upload", data=form, headers=auth)
        upload = await resp.json()
        assert resp.status == 200, upload
        base = str(client.make_url("/")).rstrip("/")

        async def send(worker_dir: str, token: str, file_name: str) -> TransferRecord:
            async with env.running_worker(namespace, tmp_path / worker_dir, redis_client, gateway_url=base,
                                          api_token=token) as worker:
                rec = await env.queue(redis_client, names, source={"upload_id": upload["upload_id"]},
                                      targets=[head.id], file_name=file_name, mode="unicast",
                                      cluster_id=head.cluster_id)
                rec = await env.wait_record(redis_client, names, rec.id, env.done)
                assert rec.worker == worker.instance
                return rec

        rec = await send("worker", TOKEN, "copy.bin")
        assert rec.state == "completed", rec.model_dump()
        [dest] = rec.destinations
        assert dest.sha256 == upload["sha256"] and dest.path
        assert dest.path.startswith(str(tmp_path / "worker"))  # the worker's inbox, not the gateway's dir
        assert env.sha256_file(dest.path) == upload["sha256"]

        # The worker really reads it over HTTP: with a wrong token the gateway refuses it.
        rec = await send("refused", "wrong-token", "refused.bin")
        assert rec.state == "failed" and rec.error and "HTTP 401" in rec.error, rec.model_dump()

        resp = await client.delete(f"/api/uploads/{upload['upload_id']}", headers=auth)
        assert resp.status == 200
        rec = await send("deleted", TOKEN, "deleted.bin")
        assert rec.state == "failed" and rec.error, rec.model_dump()
