"""The original's file generator (/api/file-generator/*) and /api/file-transfers/*: shapes, real files,
real queued transfers, and 4xx (never 500) for bad input."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from castray.shared import codec, filegen
from castray.shared.names import Names
from castray.shared.sizes import PRESETS
from castray.shared.transfers import TransferRecord
from tests.support.gateway_files import STANDARD_VIEW, files_under, gateway, seed_view, stored_record
from tests.support.waiting import wait_for

GEN = "/api/file-generator"


@pytest.fixture
async def view(redis_client: aioredis.Redis, names: Names) -> None:
    await seed_view(redis_client, names, STANDARD_VIEW)


async def test_presets_and_info(namespace: str, tmp_path: Path) -> None:
    async with gateway(namespace, tmp_path / "data", max_generate_bytes=2 * 1024**3) as client:
        presets = await (await client.get(f"{GEN}/presets")).json()
        info = await (await client.get(f"{GEN}/info")).json()
    assert presets["success"] is True
    assert set(presets["presets"]) == set(PRESETS)
    assert presets["presets"]["medium"] == {"size_bytes": 102400, "size_formatted": "100.00 KB",
                                            "description": "Medium file (100 KB)"}
    assert set(presets["content_types"]) == {"random", "text", "pattern"}
    assert info["success"] is True and info["max_file_size"] == 2 * 1024**3
    assert info["max_file_size_formatted"] == "2.00 GB"
    assert "MB" in info["supported_units"] and info["examples"]


@pytest.mark.parametrize("content", ["text", "random", "pattern"])
async def test_create_writes_exactly_the_size(namespace: str, tmp_path: Path, content: str) -> None:
    data_dir = tmp_path / "data"
    async with gateway(namespace, data_dir) as client:
        resp = await client.post(f"{GEN}/create", json={"size": "1.5KB", "content_type": content})
        body = await resp.json()
        assert resp.status == 200, body
        info = body["file_info"]
        download = await client.get(info["download_url"])
        downloaded = await download.read()
    assert info["file_path"] == f"generated/{info['file_name']}"  # relative: no server path in answers
    path = data_dir / info["file_path"]
    assert info["file_name"].startswith(f"sample_1.5KB_{content}_") and info["file_name"].endswith(".txt")
    data = path.read_bytes()  # noqa: ASYNC240 - a test reading its result
    assert len(data) == 1536 == info["actual_size"] == info["requested_size"]
    assert info["sha256"] == hashlib.sha256(data).hexdigest()
    assert info["size_formatted"] == "1.50 KB" and info["content_type"] == content
    assert download.status == 200 and downloaded == data
    if content == "pattern":
        assert data == (filegen.PATTERN_UNIT * 2)[:1536]
    if content == "text":
        assert data.startswith(b"Line 00000001: ")


async def test_create_names_follow_the_original_rules(namespace: str, tmp_path: Path) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        async def create(name: str) -> dict[str, Any]:
            resp = await client.post(f"{GEN}/create", json={"size": 10, "file_name": name})
            body = await resp.json()
            assert resp.status == 200, body
            return dict(body["file_info"])

        assert (await create("my file!.bin"))["file_name"] == "myfile.bin"
        assert (await create("../../../etc/passwd"))["file_name"] == "etcpasswd.txt"
        first, second = await create("same.dat"), await create("same.dat")
        assert first["file_name"] == "same.dat"
        assert second["file_name"] != "same.dat" and second["file_name"].startswith("same_")
        listing = await (await client.get(f"{GEN}/files")).json()
    assert listing["total_count"] == 4 == len(files_under(tmp_path / "data" / "generated"))
    assert listing["total_size"] == 40
    assert {f["file_name"] for f in listing["files"]} == {"myfile.bin", "etcpasswd.txt", "same.dat",
                                                          second["file_name"]}
    assert all(f["file_size"] == 10 and f["download_url"] for f in listing["files"])


@pytest.mark.parametrize("body", [
    {"size": "0"}, {"size": "2KB"}, {"size": "-5KB"}, {"size": "lots"}, {"size": "1 parsec"}, {"size": "inf"},
    {"size": "1KB", "content_type": "poetry"}, {"size": [1]}, "not an object",
])
async def test_create_errors_are_400(namespace: str, tmp_path: Path, body: Any) -> None:
    async with gateway(namespace, tmp_path / "data", max_generate_bytes=1024) as client:
        resp = await client.post(f"{GEN}/create", json=body)
        answer = await resp.json()
        assert resp.status == 400, answer
        assert answer["success"] is False and answer["error"]
        resp = await client.post(f"{GEN}/create", data=b"{broken",
                                 headers={"Content-Type": "application/json"})
        assert resp.status == 400
    assert files_under(tmp_path) == []


async def test_create_preset(namespace: str, tmp_path: Path) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        resp = await client.post(f"{GEN}/create-preset", json={"preset": "small", "content_type": "pattern"})
        body = await resp.json()
        assert resp.status == 200, body
        bad = await client.post(f"{GEN}/create-preset", json={"preset": "galactic"})
        bad_body = await bad.json()
    assert body["preset_name"] == "small" == body["file_info"]["preset_name"]
    assert body["file_info"]["actual_size"] == 10 * 1024
    assert body["file_info"]["file_name"].startswith("preset_small_10.00KB_pattern_")
    assert bad.status == 400 and "galactic" in bad_body["error"]


async def test_delete_files(namespace: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    secret = data_dir / "secret.txt"
    secret.parent.mkdir(parents=True)
    secret.write_text("keep me")
    async with gateway(namespace, data_dir) as client:
        resp = await client.post(f"{GEN}/create", json={"size": 100, "file_name": "gone.bin"})
        created = await resp.json()
        name = created["file_info"]["file_name"]
        resp = await client.delete(f"{GEN}/files/{name}")
        body = await resp.json()
        assert resp.status == 200, body
        assert body["deleted_size"] == 100 and body["deleted_size_formatted"] == "100 B"
        assert (await client.delete(f"{GEN}/files/{name}")).status == 404
        assert (await client.delete(f"{GEN}/files/never.txt")).status == 404
        for hostile in ("..%2Fsecret.txt", "%2E%2E", "..", "%2E%2E%2Fsecret.txt", "a%00b"):
            resp = await client.delete(f"{GEN}/files/{hostile}")
            assert resp.status in (400, 404), (hostile, resp.status)
            resp = await client.get(f"{GEN}/files/{hostile}")
            assert resp.status in (400, 404), (hostile, resp.status)
    assert secret.read_text() == "keep me"


async def test_create_and_transfer_queues_a_real_transfer(namespace: str, names: Names, tmp_path: Path,
                                                          redis_client: aioredis.Redis, view: None) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        resp = await client.post(f"{GEN}/create-and-transfer", json={
            "size": "2KB", "content_type": "random", "sender_id": "c1-head",
            "recipients": ["c1-w1", "c1-w2", "ghost", "c2-head", "c1-dead"]})
        body = await resp.json()
    assert resp.status == 200, body
    summary = body["transfer_summary"]
    counts = (summary["total_recipients"], summary["successful_transfers"], summary["failed_transfers"])
    assert counts == (5, 2, 3)
    failed = {r["recipient"]: r["message"] for r in summary["transfer_results"] if not r["success"]}
    assert set(failed) == {"ghost", "c2-head", "c1-dead"} and "cluster" in failed["c2-head"]
    record = await stored_record(redis_client, names, body["transfer_id"])
    assert record.mode == "multicast" and [d.node_id for d in record.destinations] == ["c1-w1", "c1-w2"]
    assert record.sender_id == "c1-head" and record.cluster_id == "c1"
    assert record.bytes_total == 2048 and record.sha256 == body["file_info"]["sha256"]
    upload = codec.unpack(await redis_client.get(names.upload(record.source.model_dump()["upload_id"])))  # type: ignore[arg-type]
    assert upload["path"] == body["file_info"]["file_path"]  # relative to the data directory
    assert Path(upload["path"]).name.startswith("transfer_2KB_random_")


@pytest.mark.parametrize(("body", "status"), [
    ({"size": "1KB", "sender_id": "ghost", "recipients": ["c1-w1"]}, 404),
    ({"size": "1KB", "sender_id": "c1-head", "recipients": []}, 400),
    ({"size": "1KB", "sender_id": "c1-head", "recipients": ["ghost", "c2-head"]}, 400),
    ({"size": "0", "sender_id": "c1-head", "recipients": ["c1-w1"]}, 400),
])
async def test_create_and_transfer_errors(namespace: str, names: Names, tmp_path: Path,
                                          redis_client: aioredis.Redis, view: None, body: Any,
                                          status: int) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        resp = await client.post(f"{GEN}/create-and-transfer", json=body)
        answer = await resp.json()
    assert resp.status == status, answer
    assert files_under(tmp_path) == []  # validated before any file is generated
    assert await redis_client.exists(names.transfer_requests) == 0


async def test_manual_transfer_and_status(namespace: str, names: Names, tmp_path: Path,
                                          redis_client: aioredis.Redis, view: None) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        await client.post(f"{GEN}/create", json={"size": 300, "file_name": "demo_file.txt"})
        resp = await client.post("/api/file-transfers/manual", json={
            "sender_id": "c1-head", "file_name": "demo_file.txt", "recipients": ["c1-w1", "ghost"]})
        body = await resp.json()
        assert resp.status == 200, body
        outcome = [(r["recipient"], r["success"]) for r in body["results"]]
        assert outcome == [("c1-w1", True), ("ghost", False)]
        record = await stored_record(redis_client, names, body["transfer_id"])
        assert record.mode == "unicast" and record.file_name == "demo_file.txt" and record.bytes_total == 300

        errors = [
            ({"sender_id": "ghost", "recipients": ["c1-w1"]}, 404),
            ({"sender_id": "c1-head", "recipients": []}, 400),
            ({"sender_id": "c1-head", "recipients": ["ghost"]}, 400),
            ({"sender_id": "c1-head", "file_name": "missing.txt", "recipients": ["c1-w1"]}, 404),
            ({"sender_id": "c1-head", "file_name": "../secret", "recipients": ["c1-w1"]}, 400),
            ({"sender_id": "c1-head", "file_name": "/etc/passwd", "recipients": ["c1-w1"]}, 400),
            ({"recipients": ["c1-w1"]}, 400),
        ]
        for req, status in errors:
            resp = await client.post("/api/file-transfers/manual", json=req)
            assert resp.status == status, (req, await resp.text())

        # the worker's progress shows in the statistics
        record.state = "completed"
        record.destinations[0].state = "completed"
        record.destinations[0].bytes_done = 300
        await redis_client.set(names.transfer(record.id), codec.encode(record))
        stats = await (await client.get("/api/file-transfers/status")).json()
    assert set(stats) >= {n.id for n in STANDARD_VIEW}
    w1 = stats["c1-w1"]["file_transfer_stats"]
    assert (w1["total_transfers"], w1["successful_transfers"], w1["bytes_transferred"]) == (1, 1, 300)
    head = stats["c1-head"]
    assert head["file_transfer_stats"]["successful_transfers"] == 1 and head["active_transfers"] == 0
    assert stats["c1-w2"]["file_transfer_stats"]["total_transfers"] == 0
    assert head["auto_transfer_enabled"] is False and head["auto_transfer_queue"] == 0
    assert TransferRecord.model_validate(record.model_dump())  # the record stays a valid contract row


async def test_generation_does_not_block_the_gateway(namespace: str, tmp_path: Path) -> None:
    """While a large file is generated, other requests are answered (it runs in a thread)."""
    folder = tmp_path / "data" / "generated"
    async with gateway(namespace, tmp_path / "data") as client:
        creating = asyncio.ensure_future(client.post(f"{GEN}/create", json={
            "size": "256MiB", "content_type": "text", "file_name": "big.txt"}))
        reserved = folder / "big.txt"  # the name is reserved (empty) before the content is generated
        await wait_for(reserved.exists, "the file's name reserved", deadline=60, interval=0.01)
        assert (await client.get(f"{GEN}/presets")).status == 200
        size_when_answered = reserved.stat().st_size  # noqa: ASYNC240 - the point of the test
        resp = await creating
        body = await resp.json()
    assert resp.status == 200, body
    assert body["file_info"]["actual_size"] == 256 * 1024**2
    # the content replaces the reservation only when complete: still empty means answered meanwhile
    assert size_when_answered == 0
