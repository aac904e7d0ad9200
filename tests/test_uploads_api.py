"""/api/uploads: list the stored transfer sources, read one, delete one (its file goes with it; a generated
file's record goes, the file stays with the generator). Real gateway, real Redis, real files."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from castray.shared.names import Names
from tests.support.gateway_files import STANDARD_VIEW, gateway, seed_view


async def _upload(client: TestClient, name: str, data: bytes) -> dict[str, object]:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=name)
    resp = await client.post("/api/upload", data=form)
    body: dict[str, object] = await resp.json()
    assert resp.status == 200, body
    return body


async def _exists(path: Path) -> bool:
    return await asyncio.to_thread(path.exists)


async def test_uploads_are_listed_read_and_deleted_with_their_files(
        namespace: str, names: Names, tmp_path: Path, redis_client: aioredis.Redis) -> None:
    data_dir = tmp_path / "data"
    async with gateway(namespace, data_dir) as client:
        first = await _upload(client, "first.bin", os.urandom(1000))
        data = os.urandom(2000)
        second = await _upload(client, "second.bin", data)

        # Its bytes, whole or a range of them (how a transfer worker on another machine reads it).
        content = f"/api/uploads/{second['upload_id']}/content"
        resp = await client.get(content)
        assert resp.status == 200 and await resp.read() == data
        assert resp.headers["X-Content-SHA256"] == second["sha256"]
        resp = await client.get(content, headers={"Range": "bytes=10-19"})
        assert resp.status == 206 and await resp.read() == data[10:20]

        resp = await client.get("/api/uploads")
        listing = await resp.json()
        assert resp.status == 200 and listing["total"] == 2
        assert [u["upload_id"] for u in listing["uploads"]] == [second["upload_id"], first["upload_id"]]
        assert [u["file_size"] for u in listing["uploads"]] == [2000, 1000]
        assert {u["origin"] for u in listing["uploads"]} == {"upload"}
        page = await (await client.get("/api/uploads", params={"limit": "1", "offset": "1"})).json()
        assert [u["upload_id"] for u in page["uploads"]] == [first["upload_id"]] and page["total"] == 2

        one = await (await client.get(f"/api/uploads/{first['upload_id']}")).json()
        assert one["file_name"] == "first.bin" and one["sha256"] == first["sha256"]

        assert not first["file_path"].startswith("/") and not one["path"].startswith("/")
        stored = tmp_path / "data" / str(first["file_path"])
        assert await _exists(stored)
        resp = await client.delete(f"/api/uploads/{first['upload_id']}")
        gone = await resp.json()
        assert resp.status == 200 and gone["deleted_size"] == 1000, gone
        assert not await _exists(stored) and not await _exists(stored.parent)
        assert await _exists(tmp_path / "data" / str(second["file_path"]))  # the other upload is untouched
        assert (await client.get(f"/api/uploads/{first['upload_id']}")).status == 404
        assert (await client.get(f"/api/uploads/{first['upload_id']}/content")).status == 404
        assert (await client.delete(f"/api/uploads/{first['upload_id']}")).status == 404
        listing = await (await client.get("/api/uploads")).json()
        assert [u["upload_id"] for u in listing["uploads"]] == [second["upload_id"]] and listing["total"] == 1

        # A transfer can no longer name it.
        await seed_view(redis_client, names, STANDARD_VIEW)
        resp = await client.post("/api/transfers", json={"source": {"upload_id": first["upload_id"]},
                                                         "mode": "unicast", "targets": ["c1-w1"]})
        assert resp.status == 404, await resp.text()


async def test_bad_ids_and_pages_are_400(namespace: str, tmp_path: Path) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        for path in ("/api/uploads/..%2F..%2Fetc", "/api/uploads/XYZ", "/api/uploads/" + "a" * 33):
            for method in ("GET", "DELETE"):
                resp = await client.request(method, path)
                assert resp.status in (400, 404), (method, path, resp.status)
                assert (await resp.json())["error"]
        assert (await client.get("/api/uploads/" + "0" * 31 + "g")).status == 400
        assert (await client.get("/api/uploads/" + "0" * 32)).status == 404
        assert (await client.get("/api/uploads", params={"limit": "0"})).status == 400
        assert (await client.get("/api/uploads", params={"offset": "-1"})).status == 400


async def test_deleting_a_generated_files_record_keeps_the_file(
        namespace: str, names: Names, tmp_path: Path, redis_client: aioredis.Redis) -> None:
    await seed_view(redis_client, names, STANDARD_VIEW)
    async with gateway(namespace, tmp_path / "data") as client:
        resp = await client.post("/api/file-generator/create-and-transfer",
                                 json={"size": "2KB", "content_type": "random", "recipients": ["c1-w1"]})
        body = await resp.json()
        assert resp.status == 200, body
        path = tmp_path / "data" / body["file_info"]["file_path"]
        [record] = (await (await client.get("/api/uploads")).json())["uploads"]
        assert record["origin"] == "generated" and record["path"] == body["file_info"]["file_path"]
        resp = await client.delete(f"/api/uploads/{record['upload_id']}")
        assert resp.status == 200 and (await resp.json())["deleted_size"] == 0
        assert await _exists(path)
        assert (await (await client.get("/api/uploads")).json())["total"] == 0
