"""POST /api/upload: streamed to disk with the right sha256, hostile names, oversize uploads."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from castray.shared import codec
from castray.shared.names import Names
from tests.support.gateway_files import files_under, gateway

BOUNDARY = "castray-test-boundary"


def raw_multipart(disposition: str, data: bytes, field_first: bytes = b"") -> bytes:
    """A multipart body written by hand, so that any Content-Disposition (even a hostile one) is sent."""
    parts = []
    if field_first:
        parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="note"\r\n\r\n'.encode()
                     + field_first + b"\r\n")
    parts.append(f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
                 "Content-Type: application/octet-stream\r\n\r\n".encode("utf-8", "surrogateescape")
                 + data + b"\r\n")
    parts.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(parts)


HEADERS = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


async def upload_keys(redis: aioredis.Redis, names: Names) -> list[bytes]:
    return [k async for k in redis.scan_iter(match=names.upload("*"))]


async def test_upload_streams_to_disk_with_correct_sha256(namespace: str, names: Names, tmp_path: Path,
                                                          redis_client: aioredis.Redis) -> None:
    payload = os.urandom(24 * 1024 * 1024 + 12345)
    src = tmp_path / "source.bin"
    src.write_bytes(payload)
    data_dir = tmp_path / "data"
    async with gateway(namespace, data_dir) as client:
        form = aiohttp.FormData()
        with src.open("rb") as f:  # aiohttp reads it in chunks
            form.add_field("file", f, filename="source.bin")
            resp = await client.post("/api/upload", data=form)
            body = await resp.json()
    assert resp.status == 200, body
    assert body["success"] is True
    assert body["file_name"] == "source.bin"
    assert body["file_size"] == len(payload)
    assert body["sha256"] == hashlib.sha256(payload).hexdigest()
    assert len(body["upload_id"]) == 32
    assert body["file_path"] == f"uploads/{body['upload_id']}/source.bin"  # relative: no server path
    stored = (data_dir / body["file_path"]).resolve()
    assert stored.read_bytes() == payload  # noqa: ASYNC240 - a test reading its result
    assert files_under(data_dir / "uploads") == [stored]  # no temporary file left
    record = codec.unpack(await redis_client.get(names.upload(body["upload_id"])))
    assert record["path"] == body["file_path"]
    assert record["sha256"] == body["sha256"] and record["file_size"] == len(payload)
    assert record["file_name"] == "source.bin" and record["created_at"] > 0


async def test_upload_never_holds_the_file_in_memory(namespace: str, tmp_path: Path) -> None:
    size = 48 * 1024 * 1024

    async def body() -> AsyncIterator[bytes]:  # chunked: the server cannot know the size in advance
        yield (f"--{BOUNDARY}\r\n"
               'Content-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n').encode()
        block = b"\xab" * (1024 * 1024)
        for _ in range(size // len(block)):
            yield block
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    async with gateway(namespace, tmp_path / "data") as client:
        tracemalloc.start()
        try:
            resp = await client.post("/api/upload", data=body(), headers=HEADERS)
            answer = await resp.json()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert resp.status == 200, answer
    assert answer["file_size"] == size
    assert answer["sha256"] == hashlib.sha256(b"\xab" * size).hexdigest()
    # client and server together stay far below the file's size
    assert peak < size // 4, f"peak traced memory {peak} bytes for a {size} byte upload"


@pytest.mark.parametrize(("disposition", "stored_name"), [
    ('form-data; name="file"; filename="../../x"', "x"),
    ('form-data; name="file"; filename="/etc/passwd"', "passwd"),
    # quoted-pair escapes: the name received is ..\..\win.txt
    ('form-data; name="file"; filename="..\\\\..\\\\win.txt"', "win.txt"),
    ("form-data; name=\"file\"; filename*=utf-8''..%2F..%2F..%2Fescaped.txt", "escaped.txt"),
])
async def test_hostile_names_stay_inside(namespace: str, tmp_path: Path, disposition: str,
                                         stored_name: str) -> None:
    data_dir = tmp_path / "data"
    async with gateway(namespace, data_dir) as client:
        resp = await client.post("/api/upload", data=raw_multipart(disposition, b"hello"), headers=HEADERS)
        body = await resp.json()
    assert resp.status == 200, body
    assert body["file_name"] == stored_name
    files = files_under(tmp_path)
    assert files == [(data_dir / "uploads" / body["upload_id"] / stored_name).resolve()]
    assert files[0].read_bytes() == b"hello"


@pytest.mark.parametrize("disposition", [
    'form-data; name="file"; filename=""',
    'form-data; name="file"; filename=".."',
    'form-data; name="file"; filename="../.."',
    'form-data; name="file"; filename="' + "a" * 300 + '"',
    "form-data; name=\"file\"; filename*=utf-8''a%00b.txt",
    "form-data; name=\"file\"; filename*=utf-8''a%0Ab.txt",
    'form-data; name="file"',  # no file name at all
    'form-data; name="other"; filename="x.txt"',  # no field named file
])
async def test_unusable_names_are_400_and_nothing_stored(
        namespace: str, names: Names, tmp_path: Path, redis_client: aioredis.Redis, disposition: str) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        resp = await client.post("/api/upload", data=raw_multipart(disposition, b"data"), headers=HEADERS)
        body = await resp.json()
    assert resp.status == 400, body
    assert body["success"] is False and body["error"]
    assert files_under(tmp_path) == []
    assert await upload_keys(redis_client, names) == []


@pytest.mark.parametrize("disposition", [
    'form-data; name="note\x1a"',  # a control character aiohttp's parser refuses (schemathesis found it)
    'form-data; name="file\x12"; filename="x.txt"',
])
async def test_a_part_header_with_control_characters_is_400_not_500(
        namespace: str, names: Names, tmp_path: Path, redis_client: aioredis.Redis, disposition: str) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        resp = await client.post("/api/upload", data=raw_multipart(disposition, b"data"), headers=HEADERS)
        body = await resp.json()
    assert resp.status == 400, body
    assert "malformed multipart body" in body["error"]
    assert files_under(tmp_path) == []
    assert await upload_keys(redis_client, names) == []


async def test_not_multipart_is_400(namespace: str, tmp_path: Path) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        resp = await client.post("/api/upload", json={"file": "x"})
        assert resp.status == 400
        resp = await client.post("/api/upload", data=b"--nope\r\ngarbage", headers=HEADERS)
        assert resp.status == 400
    assert files_under(tmp_path) == []


async def test_oversize_upload_is_413_and_nothing_stored(namespace: str, names: Names, tmp_path: Path,
                                                         redis_client: aioredis.Redis) -> None:
    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: caught while streaming
        yield raw_multipart('form-data; name="file"; filename="big.bin"', b"z" * 300_000)

    async with gateway(namespace, tmp_path / "data", max_upload_bytes=100_000) as client:
        # Known length over the limit: refused before reading.
        big = raw_multipart('form-data; name="file"; filename="big.bin"', b"z" * 300_000)
        resp = await client.post("/api/upload", headers=HEADERS, data=big)
        assert resp.status == 413, await resp.text()
        resp = await client.post("/api/upload", data=chunked(), headers=HEADERS)
        body = await resp.json()
        assert resp.status == 413, body
        assert "limit" in body["error"]
        # Exactly at the limit is fine.
        at_limit = raw_multipart('form-data; name="file"; filename="ok.bin"', b"z" * 100_000)
        resp = await client.post("/api/upload", headers=HEADERS, data=at_limit)
        ok = await resp.json()
        assert resp.status == 200, ok
    assert files_under(tmp_path / "data") == [tmp_path / "data" / ok["file_path"]]
    assert await upload_keys(redis_client, names) == [names.upload(ok["upload_id"]).encode()]


async def test_storage_failure_is_507_not_500(namespace: str, names: Names, tmp_path: Path,
                                              redis_client: aioredis.Redis) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "uploads").write_text("not a folder")  # every write under it fails
    (data_dir / "generated").write_text("not a folder")
    async with gateway(namespace, data_dir) as client:
        resp = await client.post("/api/upload", headers=HEADERS,
                                 data=raw_multipart('form-data; name="file"; filename="a.bin"', b"abc"))
        body = await resp.json()
        assert resp.status == 507, body
        assert "could not write" in body["error"]
        resp = await client.post("/api/file-generator/create", json={"size": 10})
        assert resp.status == 507, await resp.text()
    assert await upload_keys(redis_client, names) == []


WHOLE = raw_multipart('form-data; name="file"; filename="cut.bin"', b"q" * 200_000)


@pytest.mark.parametrize("cut", [150_000, len(WHOLE) - len(f"--{BOUNDARY}--\r\n")])
async def test_truncated_body_is_4xx_and_nothing_stored(namespace: str, names: Names, tmp_path: Path,
                                                        redis_client: aioredis.Redis, cut: int) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        resp = await client.post("/api/upload", data=WHOLE[:cut], headers=HEADERS)  # no closing boundary
        body = await resp.json()
    assert 400 <= resp.status < 500, body
    assert files_under(tmp_path) == []
    assert await upload_keys(redis_client, names) == []
