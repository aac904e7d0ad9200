"""The original CastRay's file surface, answered as the original answered it (issue 17): one test per row
of the reference's endpoint table that is about files (``/api/upload``, ``/api/file-transfers/*``,
``/api/file-generator/*``), plus the paths and keys the original page (``static/enhanced_ui.html``)
uses: top-level ``filename``/``formatted_size``, ``…/download/<name>``, ``…/delete/<name>``, the demo
files, and ``message`` in errors. The manual send of the demo file ``config.json`` runs for real: once
with a transfer worker on the session's Ray head, once through ``castray up`` beside that head, as the
original page would (its selects, then POST), and the copy on disk is checked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from castray import local_ray
from castray.client import AsyncClient, Unavailable
from castray.shared.names import Names
from castray.transfer.worker import TransferWorker
from tests.support import transfer_env as env
from tests.support.acceptance import Up, request, running_up
from tests.support.gateway_files import STANDARD_VIEW, files_under, gateway, seed_view, stored_record
from tests.support.waiting import wait_for

GEN = "/api/file-generator"
MANUAL = "/api/file-transfers/manual"
# The original's demo files, byte for byte (ray_casting.NodeScheduler._create_demo_files).
CONFIG_JSON = b'{\n  "server": "localhost",\n  "port": 8080,\n  "timeout": 30\n}'
DATA_TXT = "这是一个测试文件\n包含多行数据\n用于演示文件传输功能".encode()
REPORT_MD = "# 系统报告\n\n## 状态\n- 系统运行正常\n- 所有节点在线".encode()
FILE_INFO = {"file_path", "file_name", "requested_size", "actual_size", "content_type", "md5_hash", "created",
             "includes_metadata", "download_url", "size_formatted", "created_time"}


@pytest.fixture
async def view(redis_client: aioredis.Redis, names: Names) -> None:
    await seed_view(redis_client, names, STANDARD_VIEW)


async def ok(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    body = dict(await resp.json())
    assert resp.status == 200, body
    assert body["success"] is True
    return body


async def refused(resp: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    """An error in the original's shape: ``success`` false and the text in ``message`` (and ``error``)."""
    body = dict(await resp.json())
    assert resp.status == status, body
    assert body["success"] is False and body["message"] and body["message"] == body["error"]
    return body


async def created(client: TestClient, **req: Any) -> dict[str, Any]:
    return await ok(await client.post(f"{GEN}/create", json={"size": 100, **req}))


# --- one test per row of the reference's table ---------------------------------------------------------
async def test_upload_answers_success_message_file_path_file_size(namespace: str, tmp_path: Path) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        form = aiohttp.FormData()
        form.add_field("file", b"x" * 42, filename="notes.txt")
        body = await ok(await client.post("/api/upload", data=form))
        bad = await refused(await client.post("/api/upload", data=b"{}",
                                              headers={"Content-Type": "text/plain"}), 400)
    assert body["file_size"] == 42 and body["message"] and body["file_path"].endswith("/notes.txt")
    assert "multipart" in bad["message"]


async def test_file_transfers_status_has_the_original_counters_per_node(namespace: str, tmp_path: Path,
                                                                       view: None) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        resp = await client.get("/api/file-transfers/status")
        body = await resp.json()
    assert resp.status == 200 and set(body) >= {n.id for n in STANDARD_VIEW}
    for entry in body.values():
        assert set(entry) >= {"file_transfer_stats", "active_transfers", "auto_transfer_enabled",
                              "auto_transfer_queue"}
        assert set(entry["file_transfer_stats"]) >= {"total_transfers", "successful_transfers",
                                                     "failed_transfers", "bytes_transferred"}


async def test_auto_toggle_answers_success_message_enabled(namespace: str, tmp_path: Path,
                                                           view: None) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        off = await ok(await client.post("/api/file-transfers/auto/toggle",
                                         json={"node_id": "c1-w1", "enabled": False}))
        on = await refused(await client.post("/api/file-transfers/auto/toggle", json={"node_id": "c1-w1"}),
                           409)
        unknown = await refused(await client.post("/api/file-transfers/auto/toggle",
                                                  json={"node_id": "ghost", "enabled": False}), 404)
        stats = await (await client.get("/api/file-transfers/status")).json()
    assert off["enabled"] is False and off["message"]
    assert on["enabled"] is False and "do not exist" in on["message"]  # deliberate: there are none here
    assert "ghost" in unknown["message"] and stats["c1-w1"]["auto_transfer_enabled"] is False


async def test_manual_sends_the_demo_file_config_json_for_real(
        ray_head: local_ray.RayNode, transfer_worker: TransferWorker, namespace: str, names: Names,
        tmp_path: Path, redis_client: aioredis.Redis) -> None:
    nodes = await env.register_view(redis_client, names, ray_head)
    head = nodes[str(ray_head.node_id)]
    async with gateway(namespace, tmp_path / "data") as client:
        # what the page posts: its sender and recipients selects, and the demo select's value
        body = await ok(await client.post(MANUAL, json={"sender_id": head.id, "file_name": "config.json",
                                                        "recipients": [head.id]}))
        assert body["message"] and body["results"] == [
            {"recipient": head.id, "success": True, "message": body["results"][0]["message"],
             "transfer_id": body["transfer_id"]}]
        done = await _finished(client, body["transfer_id"])
        unknown = await refused(await client.post(MANUAL, json={"sender_id": "ghost",
                                                                "recipients": [head.id]}), 404)
        nobody = await refused(await client.post(MANUAL, json={"sender_id": head.id, "recipients": []}), 400)
        stats = await (await client.get("/api/file-transfers/status")).json()
    assert done["state"] == "completed", done
    landed = Path(done["destinations"][0]["path"])
    assert landed.name == "config.json" and env.sha256_file(landed) == hashlib.sha256(CONFIG_JSON).hexdigest()
    assert stats[head.id]["file_transfer_stats"]["successful_transfers"] >= 1
    assert "ghost" in unknown["message"] and nobody["message"]
    demo = tmp_path / "data" / "demo_files"
    assert (demo / "data.txt").read_bytes() == DATA_TXT and (demo / "report.md").read_bytes() == REPORT_MD


async def test_presets_answer_sizes_in_bytes_and_formatted(namespace: str, tmp_path: Path) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        body = await ok(await client.get(f"{GEN}/presets"))
    assert list(body["presets"]) == ["tiny", "small", "medium", "large", "huge", "massive"]
    assert body["presets"]["large"] == {"size_bytes": 1024**2, "size_formatted": "1.00 MB",
                                        "description": "Large file (1 MB)"}
    assert {"text", "random", "pattern"} <= set(body["content_types"])


async def test_info_answers_the_limit_units_types_and_examples(namespace: str, tmp_path: Path) -> None:
    async with gateway(namespace, tmp_path / "data", max_generate_bytes=1024**3) as client:
        body = await ok(await client.get(f"{GEN}/info"))
    assert body["max_file_size"] == 1073741824 and body["max_file_size_formatted"] == "1.00 GB"
    assert {"B", "KB", "MB", "GB"} <= set(body["supported_units"])
    assert body["content_types"] and body["examples"]


async def test_create_answers_file_info_and_the_pages_top_level_fields(namespace: str,
                                                                       tmp_path: Path) -> None:
    async with gateway(namespace, tmp_path / "data", max_generate_bytes=1536) as client:
        # what the page posts: {size, content_type}; it reads data.filename and data.formatted_size
        body = await ok(await client.post(f"{GEN}/create", json={"size": "1.5KB", "content_type": "pattern",
                                                                  "include_metadata": True}))
        over = await refused(await client.post(f"{GEN}/create", json={"size": "2KB"}), 400)
    info = body["file_info"]
    assert set(info) >= FILE_INFO
    assert info["file_name"].startswith("sample_1.5KB_pattern_") and info["file_name"].endswith(".txt")
    assert body["filename"] == info["file_name"]
    assert body["formatted_size"] == "1.50 KB" == info["size_formatted"]
    assert body["actual_size"] == 1536 == info["actual_size"] == info["requested_size"]
    assert body["message"] and "limit" in over["message"]


async def test_create_preset_answers_file_info_and_preset_name(namespace: str, tmp_path: Path) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        body = await ok(await client.post(f"{GEN}/create-preset", json={"preset": "tiny"}))
        unknown = await refused(await client.post(f"{GEN}/create-preset", json={"preset": "galactic"}), 400)
    assert body["preset_name"] == "tiny" == body["file_info"]["preset_name"]
    assert set(body["file_info"]) >= FILE_INFO
    assert body["file_info"]["file_name"].startswith("preset_tiny_1.00KB_text_")
    assert body["filename"] == body["file_info"]["file_name"] and body["formatted_size"] == "1.00 KB"
    assert "galactic" in unknown["message"]


async def test_create_and_transfer_answers_file_info_and_transfer_summary(
        namespace: str, names: Names, tmp_path: Path, redis_client: aioredis.Redis, view: None) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        body = await ok(await client.post(f"{GEN}/create-and-transfer", json={
            "size": "1KB", "content_type": "text", "include_metadata": True, "sender_id": "c1-head",
            "recipients": ["c1-w1", "ghost"]}))
        unknown = await refused(await client.post(f"{GEN}/create-and-transfer", json={
            "size": "1KB", "sender_id": "ghost", "recipients": ["c1-w1"]}), 404)
    summary = body["transfer_summary"]
    counts = (summary["total_recipients"], summary["successful_transfers"], summary["failed_transfers"])
    assert counts == (2, 1, 1)
    assert [(r["recipient"], r["success"]) for r in summary["transfer_results"]] == [("c1-w1", True),
                                                                                     ("ghost", False)]
    assert set(body["file_info"]) >= FILE_INFO and body["filename"] == body["file_info"]["file_name"]
    record = await stored_record(redis_client, names, body["transfer_id"])
    assert record.sender_id == "c1-head" and [d.node_id for d in record.destinations] == ["c1-w1"]
    assert "ghost" in unknown["message"]


async def test_files_lists_with_the_original_keys_and_the_pages_filename(namespace: str,
                                                                         tmp_path: Path) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        made = await created(client, file_name="listed.bin")
        body = await ok(await client.get(f"{GEN}/files"))
        fetched = await client.get(body["files"][0]["download_url"])
        content = await fetched.read()
    assert body["total_count"] == 1 and body["total_size"] == 100 and body["total_size_formatted"] == "100 B"
    entry = body["files"][0]
    assert entry["file_name"] == entry["filename"] == made["filename"] == "listed.bin"
    assert entry["file_size"] == 100 and entry["size_formatted"] == entry["formatted_size"] == "100 B"
    assert entry["created_time"] and entry["modified_time"] and entry["is_generated"] is False
    assert fetched.status == 200 and len(content) == 100


async def test_delete_files_name_answers_the_deleted_size(namespace: str, tmp_path: Path) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        await created(client, file_name="gone.dat")
        body = await ok(await client.delete(f"{GEN}/files/gone.dat"))
        again = await refused(await client.delete(f"{GEN}/files/gone.dat"), 404)
    assert body["deleted_size"] == 100 and body["deleted_size_formatted"] == "100 B" and body["message"]
    assert "gone.dat" in again["message"]


async def test_create_demo_answers_flat_and_the_file_is_sendable_by_name(
        namespace: str, names: Names, tmp_path: Path, redis_client: aioredis.Redis, view: None) -> None:
    data_dir = tmp_path / "data"
    async with gateway(namespace, data_dir, max_generate_bytes=64 * 1024) as client:
        # what the page posts, and reads back: data.filename and data.formatted_size
        body = await ok(await client.post(f"{GEN}/create-demo", json={"size": "5KB",
                                                                       "content_type": "random"}))
        sent = await ok(await client.post(MANUAL, json={"sender_id": "c1-head", "file_name": body["filename"],
                                                        "recipients": ["c1-w1"]}))
        over = await refused(await client.post(f"{GEN}/create-demo", json={"size": "1GB"}), 400)
        listing = await ok(await client.get(f"{GEN}/files"))
    assert body["filename"].startswith("custom_test_5KB_") and body["filename"].endswith(".bin")
    assert body["actual_size"] == 5120 and body["formatted_size"] == "5.00 KB"
    assert body["content_type"] == "random" and body["path"] == f"demo_files/{body['filename']}"
    assert (data_dir / body["path"]).stat().st_size == 5120
    assert (data_dir / "demo_files" / "config.json").read_bytes() == CONFIG_JSON  # written on first use
    record = await stored_record(redis_client, names, sent["transfer_id"])
    assert record.file_name == body["filename"] and record.bytes_total == 5120
    assert "limit" in over["message"]
    assert listing["total_count"] == 0  # the list is the generator's folder, as the original's was


# --- the paths and keys of the original page -------------------------------------------------------------
async def test_the_pages_download_path_serves_the_file(namespace: str, tmp_path: Path) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        made = await created(client, size="2KB")
        resp = await client.get(f"{GEN}/download/{made['filename']}")
        content = await resp.read()
        missing = await refused(await client.get(f"{GEN}/download/never.txt"), 404)
    assert resp.status == 200 and len(content) == 2048
    assert made["filename"] in resp.headers["Content-Disposition"]
    assert "never.txt" in missing["message"]


async def test_the_pages_delete_path_deletes_the_file(namespace: str, tmp_path: Path) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        made = await created(client)
        body = await ok(await client.delete(f"{GEN}/delete/{made['filename']}"))
        again = await refused(await client.delete(f"{GEN}/delete/{made['filename']}"), 404)
    assert body["deleted_size"] == 100 and again["message"]
    assert files_under(tmp_path / "data" / "generated") == []


@pytest.mark.parametrize("hostile", ["..%2Fsecret.txt", "%2E%2E", "..", "%2E%2E%2Fsecret.txt", "a%00b",
                                     ".hidden", "%2Fetc%2Fpasswd", "..%5Csecret.txt"])
async def test_hostile_names_are_refused_on_every_download_and_delete_path(namespace: str, tmp_path: Path,
                                                                          hostile: str) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "generated").mkdir(parents=True)
    secret = data_dir / "secret.txt"
    secret.write_text("keep me")
    async with gateway(namespace, data_dir) as client:
        paths = (("GET", "files"), ("GET", "download"), ("DELETE", "files"), ("DELETE", "delete"))
        for method, prefix in paths:
            resp = await client.request(method, f"{GEN}/{prefix}/{hostile}")
            assert resp.status in (400, 404), (method, prefix, resp.status)
            assert b"keep me" not in await resp.read()
    assert secret.read_text() == "keep me"


async def test_manual_refuses_names_that_leave_the_demo_folder(namespace: str, tmp_path: Path,
                                                                view: None) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "secret.txt").write_text("keep me")
    async with gateway(namespace, data_dir) as client:
        for name in ("../secret.txt", "/etc/passwd", "demo_files/../secret.txt", "..", "a\x00b"):
            resp = await client.post(MANUAL, json={"sender_id": "c1-head", "file_name": name,
                                                   "recipients": ["c1-w1"]})
            await refused(resp, 400)
        missing = await refused(await client.post(MANUAL, json={
            "sender_id": "c1-head", "file_name": "secret.txt", "recipients": ["c1-w1"]}), 404)
    assert "secret.txt" in missing["message"]


async def test_errors_carry_message_on_the_originals_endpoints_only(namespace: str, tmp_path: Path) -> None:
    async with gateway(namespace, tmp_path / "data") as client:
        original = await refused(await client.post(f"{GEN}/create", data=b"{",
                                                   headers={"Content-Type": "application/json"}), 400)
        resp = await client.post("/api/transfers", data=b"{", headers={"Content-Type": "application/json"})
        ours = await resp.json()
    assert original["code"] and original["status"] == 400
    assert resp.status == 400 and ours["error"] and "message" not in ours  # our own API keeps its shape


async def test_the_security_rules_hold_on_the_originals_file_endpoints(namespace: str,
                                                                       tmp_path: Path) -> None:
    async with gateway(namespace, tmp_path / "data", storage_quota_bytes=4096) as client:
        evil = {"Origin": "https://evil.example"}
        cross = await refused(await client.post(f"{GEN}/create-demo", json={"size": "1KB"},
                                                headers=evil), 403)
        deleting = await client.delete(f"{GEN}/delete/x.txt", headers=evil)
        text = await refused(await client.post(f"{GEN}/create-demo", data=b'{"size": "1KB"}',
                                               headers={"Content-Type": "text/plain"}), 415)
        full = await refused(await client.post(f"{GEN}/create-demo", json={"size": "8KB"}), 507)
    assert cross["code"] == "cross_origin" and deleting.status == 403
    assert "application/json" in text["message"] and "quota" in full["message"]
    assert not [p for p in files_under(tmp_path / "data") if p.name.startswith("custom_test_")]


async def _finished(client: TestClient, transfer_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        body = dict(await (await client.get(f"/api/transfers/{transfer_id}")).json())
        return body if body["state"] in ("completed", "failed", "cancelled") else None

    result: dict[str, Any] = await wait_for(done, deadline=120.0, what=f"transfer {transfer_id} to finish")
    return result


# --- against castray up and a real Ray head ------------------------------------------------------------
@pytest.fixture(scope="module")
def up(ray_head: local_ray.RayNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with running_up(tmp_path_factory.mktemp("original-files"), [ray_head]) as started:
        yield started


async def test_with_castray_up_the_page_sends_config_json_and_makes_a_custom_demo_file(
        ray_head: local_ray.RayNode, up: Up) -> None:
    # The original page's own calls (manual send, custom demo file) on the wire, with their status codes;
    # what the test waits for (the head in the view, the transfer's end) through castray.client.
    async with aiohttp.ClientSession() as http, AsyncClient(up.base, token="") as api:
        async def head_id() -> str | None:
            return next((n.id for n in await api.nodes(state="ALIVE") if n.ray_node_id == ray_head.node_id),
                        None)

        head = await wait_for(head_id, deadline=90.0, what="the head in castray up's view",
                              ignoring=(Unavailable,))
        code, sent = await request(http, "POST", f"{up.base}{MANUAL}", json={
            "sender_id": head, "file_name": "config.json", "recipients": [head]})
        assert code == 200 and sent["success"] is True and sent["message"], sent

        done = await api.wait(sent["transfer_id"], timeout=120.0)
        code, demo = await request(http, "POST", f"{up.base}{GEN}/create-demo", json={
            "size": "100KB", "content_type": "random"})
        assert code == 200 and demo["filename"].startswith("custom_test_100KB_"), demo
        assert demo["formatted_size"] == "100.00 KB"
        code, again = await request(http, "POST", f"{up.base}{MANUAL}", json={
            "sender_id": head, "file_name": demo["filename"], "recipients": [head]})
        assert code == 200 and again["success"] is True, again
        code, gone = await request(http, "POST", f"{up.base}{MANUAL}", json={
            "sender_id": head, "file_name": "missing.json", "recipients": [head]})
    assert done.state == "completed", done
    landed = Path(done.destinations[0].path or "")
    assert landed.name == "config.json" and env.sha256_file(landed) == hashlib.sha256(CONFIG_JSON).hexdigest()
    assert code == 404 and gone["success"] is False and "missing.json" in gone["message"]
