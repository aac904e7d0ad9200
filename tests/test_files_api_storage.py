"""The storage quota and free-space floor of uploads and generated files: 507 with the numbers, and
nothing partial left behind (a streamed upload that crosses the quota midway is stopped and removed)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import redis.asyncio as aioredis

from castray.gateway.storage import stored_bytes
from castray.shared.names import Names
from tests.support.gateway_files import files_under, gateway

MiB = 1024 * 1024
BOUNDARY = "castray-storage-boundary"
HEADERS = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


async def _chunked_upload(name: str, size: int) -> AsyncIterator[bytes]:
    """A multipart body sent chunked (no Content-Length): the gateway learns its size only as it reads."""
    yield (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
           "Content-Type: application/octet-stream\r\n\r\n").encode()
    for _ in range(size // (256 * 1024)):
        yield b"u" * (256 * 1024)
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


async def _upload_keys(redis: aioredis.Redis, names: Names) -> list[bytes]:
    return [k async for k in redis.scan_iter(match=names.upload("*"))]


async def test_the_quota_refuses_with_its_numbers_and_leaves_nothing_partial(
    namespace: str, names: Names, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    data_dir = tmp_path / "data"
    quota = 1536 * 1024  # 1.5 MiB
    async with gateway(namespace, data_dir, storage_quota_bytes=quota, storage_min_free_bytes=0) as client:
        resp = await client.post("/api/file-generator/create", json={"size": 200_000, "file_name": "a.bin"})
        assert resp.status == 200, await resp.text()
        first = files_under(data_dir)

        resp = await client.post("/api/file-generator/create", json={"size": MiB + 400_000})
        body = await resp.json()
        assert resp.status == 507, body
        assert body["code"] == "storage_quota_exceeded"
        assert (body["quota"], body["used"], body["needed"]) == (quota, 200_000, MiB + 400_000)
        assert files_under(data_dir) == first

        # Streamed without a length: the first MiB fits and is written, the second would cross the quota.
        resp = await client.post("/api/upload", headers=HEADERS, data=_chunked_upload("big.bin", 3 * MiB))
        body = await resp.json()
        assert resp.status == 507, body
        assert body["code"] == "storage_quota_exceeded"
        assert 200_000 + MiB <= body["used"] <= quota < body["used"] + body["needed"]  # refused midway,
        # after a first MiB of it was written
        assert files_under(data_dir) == first  # the partial file and its folder are gone
        assert list((data_dir / "uploads").iterdir()) == []

        # With a Content-Length that cannot fit, refused before anything is written.
        raw = b"".join([chunk async for chunk in _chunked_upload("len.bin", 2 * MiB)])
        resp = await client.post("/api/upload", headers=HEADERS, data=raw)
        body = await resp.json()
        assert resp.status == 507 and body["code"] == "storage_quota_exceeded", body
        assert files_under(data_dir) == first

        # What still fits is stored.
        resp = await client.post("/api/upload", headers=HEADERS, data=_chunked_upload("ok.bin", MiB))
        assert resp.status == 200, await resp.text()
    assert len(files_under(data_dir)) == 2
    assert len(await _upload_keys(redis_client, names)) == 1


async def test_the_free_space_floor_refuses_with_its_numbers(
    namespace: str, names: Names, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    data_dir = tmp_path / "data"
    floor = shutil.disk_usage(tmp_path).free + 1024**4  # a floor above what this disk has free
    async with gateway(namespace, data_dir, storage_min_free_bytes=floor) as client:
        resp = await client.post("/api/file-generator/create", json={"size": 1000})
        body = await resp.json()
        assert resp.status == 507, body
        assert body["code"] == "storage_floor_reached"
        assert body["floor"] == floor and body["needed"] == 1000 and 0 < body["free"] < floor
        resp = await client.post("/api/upload", headers=HEADERS, data=_chunked_upload("f.bin", MiB))
        body = await resp.json()
        assert resp.status == 507 and body["code"] == "storage_floor_reached", body
    assert files_under(data_dir) == []
    assert await _upload_keys(redis_client, names) == []


def test_a_file_whose_name_starts_with_a_dot_counts_against_the_quota(tmp_path: Path) -> None:
    """Only the writers' own temp files (.<name>.part) are left out of the used bytes: an upload named
    '.x' would otherwise sit outside the quota."""
    folder = tmp_path / "uploads" / "u1"
    folder.mkdir(parents=True)
    (folder / ".x").write_bytes(b"a" * 1000)
    (folder / ".x.part").write_bytes(b"b" * 50)  # in flight
    assert stored_bytes(tmp_path) == 1000
