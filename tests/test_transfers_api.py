"""POST/GET/DELETE /api/transfers against a hand-written view: validation, the record, the stream entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from castray.shared import codec
from castray.shared.names import Names
from castray.shared.transfers import QueuedTransfer, UploadSource
from tests.support.gateway_files import (
    STANDARD_VIEW,
    gateway,
    node,
    seed_view,
    stored_record,
    stream_entries,
)


async def make_upload(client: TestClient, content: bytes = b"payload", name: str = "data.bin"
                      ) -> dict[str, Any]:
    form = aiohttp.FormData()
    form.add_field("file", content, filename=name)
    resp = await client.post("/api/upload", data=form)
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


@pytest.fixture
async def view(redis_client: aioredis.Redis, names: Names) -> None:
    await seed_view(redis_client, names, STANDARD_VIEW)


async def test_good_unicast_is_queued_with_record_and_stream_entry(
        namespace: str, names: Names, tmp_path: Path, redis_client: aioredis.Redis, view: None) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        up = await make_upload(client, b"x" * 1000, "report.pdf")
        resp = await client.post("/api/transfers", json={"source": {"upload_id": up["upload_id"]},
                                                         "mode": "unicast", "targets": ["c1-w1"]})
        body = await resp.json()
        assert resp.status == 202, body
        tid = body["id"]
        assert body["targets"] == ["c1-w1"]
        got = await client.get(f"/api/transfers/{tid}")
        shown = await got.json()
    assert got.status == 200
    record = await stored_record(redis_client, names, tid)
    assert shown == record.model_dump(mode="json")
    assert record.state == "queued" and record.mode == "unicast"
    assert record.source == UploadSource(upload_id=up["upload_id"])
    assert record.cluster_id == "c1" and record.source_node_id is None
    assert record.file_name == "report.pdf"
    assert record.bytes_total == 1000 and record.sha256 == up["sha256"]
    assert [(d.node_id, d.state) for d in record.destinations] == [("c1-w1", "pending")]
    assert await redis_client.zscore(names.transfer_index, tid) == pytest.approx(record.created_at)
    entries = await stream_entries(redis_client, names)
    assert len(entries) == 1
    assert QueuedTransfer.model_validate(entries[0]) == QueuedTransfer(id=record.id)


async def test_upload_whose_file_is_gone_is_404(namespace: str, names: Names, tmp_path: Path,
                                                redis_client: aioredis.Redis, view: None) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        up = await make_upload(client)
        (tmp_path / "data" / up["file_path"]).unlink()  # noqa: ASYNC240 - a test removing it
        resp = await client.post("/api/transfers", json={"source": {"upload_id": up["upload_id"]},
                                                         "mode": "unicast", "targets": ["c1-w1"]})
        body = await resp.json()
    assert resp.status == 404 and "gone" in body["error"]
    assert await redis_client.exists(names.transfer_requests) == 0


async def test_broadcast_targets_every_alive_node_of_the_cluster(
        namespace: str, names: Names, tmp_path: Path, redis_client: aioredis.Redis, view: None) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        # node source: its cluster decides; dead nodes and other clusters are left out
        resp = await client.post("/api/transfers", json={
            "source": {"node_id": "c1-head", "path": "data/in.bin"}, "mode": "broadcast"})
        body = await resp.json()
        assert resp.status == 202, body
        assert body["targets"] == ["c1-head", "c1-w1", "c1-w2"]
        record = await stored_record(redis_client, names, body["id"])
        assert record.source_node_id == "c1-head" and record.file_name == "in.bin"
        # an upload is on no node: with two clusters, a target names the cluster
        up = await make_upload(client)
        resp = await client.post("/api/transfers", json={"source": {"upload_id": up["upload_id"]},
                                                         "mode": "broadcast"})
        assert resp.status == 400
        assert "cluster" in (await resp.json())["error"]
        resp = await client.post("/api/transfers", json={"source": {"upload_id": up["upload_id"]},
                                                         "mode": "broadcast", "targets": ["c2-head"]})
        assert resp.status == 202
        assert (await resp.json())["targets"] == ["c2-head"]


async def test_multicast_may_span_clusters(namespace: str, names: Names, tmp_path: Path,
                                           redis_client: aioredis.Redis, view: None) -> None:
    """The worker relays to nodes outside the source's cluster: the gateway queues them all."""
    async with gateway(namespace, tmp_path / "data") as client:
        resp = await client.post("/api/transfers", json=req(mode="multicast", targets=["c1-w1", "c2-head"]))
        body = await resp.json()
        assert resp.status == 202, body
    record = await stored_record(redis_client, names, body["id"])
    assert record.cluster_id == "c1" and record.source_node_id == "c1-head"
    assert [d.node_id for d in record.destinations] == ["c1-w1", "c2-head"]


async def test_generate_source(namespace: str, names: Names, tmp_path: Path, redis_client: aioredis.Redis,
                               view: None) -> None:
    async with gateway(namespace, tmp_path / "data", max_generate_bytes=64 * 1024**2) as client:
        resp = await client.post("/api/transfers", json={
            "source": {"generate": {"size": "1.5MiB", "content": "pattern"}}, "mode": "multicast",
            "targets": ["c1-w1", "c1-w2", "c1-w1"], "file_name": "../../g.bin"})
        body = await resp.json()
        assert resp.status == 202, body
        record = await stored_record(redis_client, names, body["id"])
        assert record.bytes_total == 1536 * 1024
        assert [d.node_id for d in record.destinations] == ["c1-w1", "c1-w2"]  # duplicates dropped
        assert record.file_name == "g.bin"
        for size in ("65MiB", "0", "-1", "12 parsecs", "", "inf", 65 * 1024**2 + 1):
            resp = await client.post("/api/transfers", json={
                "source": {"generate": {"size": size}}, "mode": "unicast", "targets": ["c1-w1"]})
            assert resp.status == 400, size
    assert len(await stream_entries(redis_client, names)) == 1


HEAD_FILE = {"node_id": "c1-head", "path": "a"}


def req(source: Any = None, mode: str = "unicast", targets: list[str] | None = None, **extra: Any) -> Any:
    return {"source": HEAD_FILE if source is None else source, "mode": mode,
            "targets": ["c1-w1"] if targets is None else targets, **extra}


BAD_REQUESTS: list[tuple[Any, int, str]] = [
    (req({"upload_id": "0" * 32}), 404, "upload"),
    (req({"node_id": "nope", "path": "a"}), 404, "nope"),
    (req(targets=["ghost"]), 404, "ghost"),
    (req(mode="teleport"), 400, "mode"),
    (req(targets=[]), 400, "exactly one"),
    (req(targets=["c1-w1", "c1-w2"]), 400, "exactly one"),
    (req(mode="multicast", targets=[]), 400, "at least one"),
    (req(mode="broadcast", targets=["c2-head"]), 400, "cluster"),  # broadcast: the source's cluster
    (req(targets=["c1-dead"]), 409, "alive"),
    (req({"node_id": "c1-dead", "path": "a"}), 409, "DEAD"),
    (req({"node_id": "c1-head", "path": "../../etc/passwd"}), 400, "files root"),
    (req(file_name=".."), 400, "file name"),
    (req(file_name="a\x00b"), 400, "file name"),
    (req({"upload_id": "../x"}), 400, "source"),
    (req({}), 400, "source"),
    ({"mode": "unicast", "targets": ["c1-w1"]}, 400, "source"),
    ({}, 400, "source"),
    ([1, 2], 400, "object"),
]


@pytest.mark.parametrize(("body", "status", "words"), BAD_REQUESTS)
async def test_bad_requests_are_4xx_and_nothing_queued(namespace: str, names: Names, tmp_path: Path,
                                                       redis_client: aioredis.Redis, view: None, body: Any,
                                                       status: int, words: str) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        resp = await client.post("/api/transfers", json=body)
        answer = await resp.json()
    assert resp.status == status, answer
    assert answer["success"] is False
    assert words.lower() in answer["error"].lower(), answer["error"]
    assert await redis_client.exists(names.transfer_requests, names.transfer_index) == 0


async def test_empty_and_malformed_bodies(namespace: str, names: Names, tmp_path: Path,
                                          redis_client: aioredis.Redis, view: None) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        for data in (b"", b"   ", b"{not json", b"\xff\xfe"):
            resp = await client.post("/api/transfers", data=data,
                                     headers={"Content-Type": "application/json"})
            answer = await resp.json()
            assert resp.status == 400, (data, answer)
            assert answer["error"]
    assert await redis_client.exists(names.transfer_requests) == 0


async def test_get_list_and_cancel(namespace: str, names: Names, tmp_path: Path, redis_client: aioredis.Redis,
                                   view: None) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        ids = []
        for _ in range(3):
            resp = await client.post("/api/transfers", json={
                "source": {"node_id": "c1-head", "path": "f"}, "mode": "unicast", "targets": ["c1-w1"]})
            ids.append((await resp.json())["id"])
        resp = await client.get("/api/transfers", params={"limit": "2"})
        page = await resp.json()
        assert [t["id"] for t in page["transfers"]] == [ids[2], ids[1]]  # newest first
        assert (page["total"], page["limit"], page["offset"]) == (3, 2, 0)
        page2 = await (await client.get("/api/transfers", params={"limit": "2", "offset": "2"})).json()
        assert [t["id"] for t in page2["transfers"]] == [ids[0]]
        for bad in ({"limit": "0"}, {"limit": "x"}, {"offset": "-1"}, {"limit": "100000"}):
            assert (await client.get("/api/transfers", params=bad)).status == 400
        assert (await client.get("/api/transfers/unknown")).status == 404

        # queued: cancelled at once
        resp = await client.delete(f"/api/transfers/{ids[0]}")
        cancelled = await resp.json()
        assert resp.status == 200
        assert cancelled["state"] == "cancelled" and cancelled["cancel_requested"] is True
        assert [d["state"] for d in cancelled["destinations"]] == ["cancelled"]
        assert (await client.delete(f"/api/transfers/{ids[0]}")).status == 409
        # running: only flagged, the worker stops it
        rec = await stored_record(redis_client, names, ids[1])
        rec.state = "running"
        await redis_client.set(names.transfer(ids[1]), codec.encode(rec))
        flagged = await (await client.delete(f"/api/transfers/{ids[1]}")).json()
        assert flagged["state"] == "running" and flagged["cancel_requested"] is True
        # finished: conflict
        rec = await stored_record(redis_client, names, ids[2])
        rec.state = "completed"
        await redis_client.set(names.transfer(ids[2]), codec.encode(rec))
        resp = await client.delete(f"/api/transfers/{ids[2]}")
        assert resp.status == 409 and "completed" in (await resp.json())["error"]
        assert (await client.delete("/api/transfers/unknown")).status == 404
    assert (await stored_record(redis_client, names, ids[1])).cancel_requested is True
    assert (await stored_record(redis_client, names, ids[2])).cancel_requested is False


async def test_an_unreadable_record_is_a_server_fault_not_a_missing_transfer(
        namespace: str, names: Names, tmp_path: Path, redis_client: aioredis.Redis) -> None:
    await redis_client.set(names.transfer("t-bad"), codec.pack({"id": "t-bad", "source": {"x": 1}}))
    async with gateway(namespace, tmp_path / "data") as client:
        for resp in (await client.get("/api/transfers/t-bad"), await client.delete("/api/transfers/t-bad")):
            body = await resp.json()
            assert resp.status == 500 and body["code"] == "unreadable_record", body
            assert "t-bad" in body["error"] and "unreadable" in body["error"]


async def test_openapi_lists_the_routes(namespace: str, tmp_path: Path) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        spec = await (await client.get("/api/openapi.json")).json()
    paths = spec["paths"]
    wanted = [("/api/transfers", "post"), ("/api/transfers", "get"), ("/api/transfers/{transfer_id}", "get"),
              ("/api/transfers/{transfer_id}", "delete"), ("/api/upload", "post"), ("/api/send", "post"),
              ("/api/nodes/{node_id}/messages", "get"),
              ("/api/file-generator/create", "post"), ("/api/file-generator/files/{name}", "delete"),
              ("/api/file-transfers/manual", "post"), ("/api/file-transfers/status", "get")]
    for path, method in wanted:
        assert method in paths.get(path, {}), (path, method)
    assert "TransferRequest" in spec["components"]["schemas"]


async def test_view_rows_are_read_not_cached(namespace: str, names: Names, tmp_path: Path,
                                             redis_client: aioredis.Redis) -> None:
    """A node that joins the view is a valid target at once (the gateway reads the view per request)."""
    await seed_view(redis_client, names, [node("c1-head", head=True)])
    async with gateway(namespace, tmp_path / "data") as client:
        req = {"source": {"node_id": "c1-head", "path": "f"}, "mode": "unicast", "targets": ["c1-new"]}
        assert (await client.post("/api/transfers", json=req)).status == 404
        await seed_view(redis_client, names, [node("c1-new")])
        assert (await client.post("/api/transfers", json=req)).status == 202
