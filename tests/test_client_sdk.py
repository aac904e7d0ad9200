"""castray.client against the real thing: ``castray up`` with a real Ray head (every REST operation, an
upload with progress, a transfer followed on /ws, a resumed stream, typed errors), and a gateway with a
token (the bearer header on HTTP and on /ws)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from castray.client import (
    AsyncClient,
    BadRequest,
    Client,
    Conflict,
    GatewayUnreachable,
    NotFound,
    Resumed,
    SnapshotMessage,
    Unauthorized,
)
from castray.client.events import EventStream, LiveEvent
from castray.client.operations import NOT_API, OPERATIONS
from castray.local_ray import free_port
from castray.shared.api import (
    AutoToggle,
    CastMessage,
    CreateAndTransfer,
    CreateDemo,
    CreateFile,
    CreatePreset,
    ManualTransfer,
)
from castray.shared.events import TransferCompleted, TransferProgress, TransferStarted
from castray.shared.transfers import TransferRequest, UploadSource
from tests.support.client_stack import Stack
from tests.support.transfer_env import sha256_file

if TYPE_CHECKING:
    from tests.support.gateway_fixtures import GatewayFactory

pytest_plugins = ("tests.support.gateway_fixtures",)  # make_gateway

MiB = 1024 * 1024


async def _until_done(stream: EventStream, transfer_id: str) -> list[LiveEvent]:
    """Every event up to and including the transfer's own (not a destination's) transfer-completed."""
    seen: list[LiveEvent] = []
    async for event in stream:
        seen.append(event)
        if isinstance(event, TransferCompleted) and (event.transfer_id, event.node_id) == (transfer_id, None):
            return seen
    raise AssertionError(f"the stream ended before the transfer did: {seen}")


async def test_every_operation_upload_with_progress_and_live_events(stack: Stack, tmp_path: Path) -> None:
    head_id = stack.node_ids[0]
    source = tmp_path / "payload.bin"
    await asyncio.to_thread(source.write_bytes, os.urandom(5 * MiB + 7))
    digest, size = await asyncio.to_thread(sha256_file, source), 5 * MiB + 7
    async with AsyncClient(stack.url, token="") as api:
        [cluster] = await api.clusters()
        assert (cluster.node_count, cluster.alive_node_count) == (1, 1)
        detail = await api.cluster(cluster.id)
        assert [n.id for n in detail.nodes] == [head_id]
        assert (await api.node(head_id)).is_head
        assert [n.id for n in await api.nodes(cluster=cluster.id, state="ALIVE")] == [head_id]
        assert await api.nodes(state="DEAD") == []

        progress: list[tuple[int, int]] = []
        upload = await api.upload(source, progress=lambda sent, total: progress.append((sent, total)))
        assert (upload.sha256, upload.file_size, upload.file_name) == (digest, size, source.name)
        assert len(progress) == 6 and progress[-1] == (size, size)
        assert upload.upload_id in [u.upload_id for u in (await api.uploads()).uploads]
        back = await api.download_upload(upload.upload_id, tmp_path / "back.bin")
        assert await asyncio.to_thread(sha256_file, back) == digest
        assert "/api/transfers" in (await api.openapi())["paths"]
        assert "castray_" in await api.metrics()

        async with api.events() as stream:
            first = await anext(stream)
            assert isinstance(first, SnapshotMessage) and [n.id for n in first.nodes] == [head_id]
            queued = await api.create_transfer(TransferRequest(
                source=UploadSource(upload_id=upload.upload_id), mode="unicast", targets=[head_id]))
            assert queued.targets == [head_id]
            seen = await _until_done(stream, queued.id)
            kinds = {type(e) for e in seen if getattr(e, "transfer_id", None) == queued.id}
            assert {TransferStarted, TransferProgress, TransferCompleted} <= kinds
            position = (stream.epoch, stream.version)
        record = await api.wait(queued.id, timeout=60)
        assert record.state == "completed"
        [dest] = record.destinations
        assert dest.sha256 == digest and dest.path == str(stack.inbox / head_id / source.name)
        assert await asyncio.to_thread(sha256_file, dest.path) == digest
        assert queued.id in [t.id for t in (await api.transfers(limit=10)).transfers]

        async with api.events(resume=position) as resumed:
            again = await anext(resumed)
            assert isinstance(again, Resumed) and (again.epoch, again.since) == position

        with pytest.raises(Conflict):
            await api.cancel(queued.id)
        with pytest.raises(NotFound):
            await api.transfer("0" * 32)
        deleted = await api.delete_upload(upload.upload_id)
        assert deleted.deleted_size == size
        with pytest.raises(NotFound):
            await api.get_upload(upload.upload_id)

        found = await api.discover()
        assert cluster.id in [c.id for c in found.discovered_clusters]
        gone = await api.disconnect(cluster.id)
        assert gone.disconnected == [cluster.id]
        assert await api.nodes() == []
        again = await api.connect(cluster.dashboard_url or "")
        assert again.cluster.id == cluster.id and head_id in again.external_nodes


def test_the_sync_client_does_the_same_without_a_loop(stack: Stack) -> None:
    with stack.client() as api:
        [node] = api.nodes()
        assert node.id == stack.node_ids[0]
        events = api.events(topics=("nodes",))
        first = next(events)
        assert isinstance(first, SnapshotMessage) and [n.id for n in first.nodes] == [node.id]
        events.close()
        queued = api.create_transfer(TransferRequest.model_validate(
            {"source": {"generate": {"size": "1MiB"}}, "mode": "broadcast"}))
        assert api.wait(queued.id, timeout=60).state == "completed"


async def test_the_original_castray_endpoints_are_covered_too(stack: Stack, tmp_path: Path) -> None:
    """Messages, the file generator, transfers by file name, the seed's external-cluster shapes and the
    original's refused node edits: each an SDK method taking the gateway's own request model."""
    head_id = stack.node_ids[0]
    async with AsyncClient(stack.url, token="") as api:
        info = await api.external_info()
        assert info["is_connected"] is True and head_id in info["external_nodes"]
        listed = await api.external_nodes()
        assert listed["count"] == 1 and [n["id"] for n in listed["external_nodes"]] == [head_id]

        sent = await api.send_message(CastMessage(cast_type="unicast", content="hello", recipients=[head_id]))
        assert (sent.success, sent.recipients_count, sent.failed_recipients) == (True, 1, [])
        [kept] = await api.node_messages(head_id, count=5)
        assert (kept["message_id"], kept["content"]) == (sent.message_id, "hello")

        assert (await api.file_presets()) and (await api.file_generator_info())
        made = await api.create_file(CreateFile(size="64KB", content_type="random", file_name="sdk.bin"))
        assert made["success"] is True, made
        assert "sdk.bin" in [f["file_name"] for f in (await api.generated_files())["files"]]
        back = await api.download_generated("sdk.bin", tmp_path / "sdk.bin")
        assert (await asyncio.to_thread(back.stat)).st_size == 64 * 1024
        assert (await api.create_preset_file(CreatePreset(preset="tiny", file_name="tiny.txt")))["success"]
        demo = await api.create_demo_file(CreateDemo(size="8KB"))
        queued = await api.manual_transfer(ManualTransfer(sender_id=head_id, file_name=demo["filename"],
                                                          recipients=[head_id]))
        assert (await api.wait(queued["transfer_id"], timeout=60)).state == "completed"
        both = await api.create_and_transfer(CreateAndTransfer(size="16KB", sender_id=head_id,
                                                               recipients=[head_id]))
        assert (await api.wait(both["transfer_id"], timeout=60)).state == "completed"
        assert "file_transfer_stats" in (await api.file_transfer_stats())[head_id]
        await api.delete_generated("sdk.bin")
        assert "sdk.bin" not in [f["file_name"] for f in (await api.generated_files())["files"]]

        assert (await api.auto_transfers(AutoToggle(node_id=head_id, enabled=False)))["success"] is True
        with pytest.raises(Conflict):
            await api.auto_transfers(AutoToggle(node_id=head_id, enabled=True))
        with pytest.raises(BadRequest) as refused:
            await api.create_node("test_node_1")
        assert "Ray" in refused.value.message
        with pytest.raises(BadRequest):
            await api.delete_node(head_id)


async def test_the_token_goes_on_http_and_on_the_websocket(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(api_token="s3cret-token-of-this-test")
    url = str(gateway.make_url("")).rstrip("/")
    async with AsyncClient(url, token="") as anonymous:
        with pytest.raises(Unauthorized):
            await anonymous.nodes()
        with pytest.raises(Unauthorized):
            await anext(anonymous.events())
    async with AsyncClient(url, token="wrong") as wrong:
        with pytest.raises(Unauthorized) as refused:
            await wrong.transfers()
        assert refused.value.code == "bad_token"
    os.environ["CASTRAY_API_TOKEN"] = "s3cret-token-of-this-test"
    try:
        api = AsyncClient(url)
    finally:
        del os.environ["CASTRAY_API_TOKEN"]
    async with api, api.events() as stream:
        assert await api.nodes() == []
        assert isinstance(await anext(stream), SnapshotMessage)


async def test_nothing_listening_is_gateway_unreachable() -> None:
    async with AsyncClient(f"http://127.0.0.1:{free_port()}") as api:
        with pytest.raises(GatewayUnreachable):
            await api.status()


async def test_the_stream_reconnects_and_resumes_when_the_gateway_restarts(stack: Stack) -> None:
    async with AsyncClient(stack.url, token="") as api, api.events(topics=("nodes",)) as stream:
        first = await anext(stream)
        assert isinstance(first, SnapshotMessage) and stream.connects == 1
        gateway = stack.up.child("gateway")
        assert gateway is not None
        gateway.kill()  # castray up starts it again after a second
        again = await asyncio.wait_for(anext(stream), 60)
        assert isinstance(again, Resumed) and (again.epoch, again.since) == (first.epoch, first.version)
        assert stream.connects == 2


def test_each_ws_message_parses_to_its_model_and_the_originals_are_skipped() -> None:
    from castray.client.events import parse
    from castray.shared.events import ClusterDelta, NodeDelta, TransferFailed

    node = {"id": "c1-n1", "ray_node_id": "n1", "cluster_id": "c1", "name": "n1"}
    delta = parse({"type": "node-changed", "epoch": "e", "version": 3, "change": "added", "id": "c1-n1",
                   "node": node, "changed": {}})
    assert isinstance(delta, NodeDelta) and delta.node is not None and delta.node.id == "c1-n1"
    gone = parse({"type": "cluster-removed", "epoch": "e", "version": 4, "change": "removed", "id": "c1"})
    assert isinstance(gone, ClusterDelta) and gone.cluster is None
    failed = parse({"type": "transfer-failed", "transfer_id": "t", "node_id": "c1-n1", "error": "disk full",
                    "time": 1.0})
    assert isinstance(failed, TransferFailed) and (failed.node_id, failed.error) == ("c1-n1", "disk full")
    assert parse({"type": "status_update", "data": {}}) is None
    assert parse({"type": "transfer_activity"}) is None
    assert parse({"type": "node-changed", "epoch": "e"}) is None  # not a valid delta: skipped, not raised
    assert parse({"no": "type"}) is None


async def test_every_operation_of_the_gateways_spec_has_its_sdk_method(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway()
    spec = await (await gateway.get("/api/openapi.json")).json()
    listed = {(method, path) for path, ops in spec["paths"].items() for method in ops}
    assert listed - set(OPERATIONS) - set(NOT_API) == set(), "operations without an SDK method"
    assert set(OPERATIONS) - listed == set(), "SDK operations the gateway does not have"
    for name in set(OPERATIONS.values()):
        assert callable(getattr(AsyncClient, name)) and callable(getattr(Client, name)), name
