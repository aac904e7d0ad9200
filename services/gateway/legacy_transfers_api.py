"""The original CastRay's ``/api/file-transfers/*``, working: manual transfers become real transfers,
and the per-node statistics are counted from the transfer records.

A manual transfer names its file as the original page does: one of the original's demo files
(``config.json``, ``data.txt``, ``report.md``, written under ``<data dir>/demo_files`` on first use), a
``create-demo`` file, a generated file or an upload (`generated_files.find_file`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from castray.gateway import generated_files as gf
from castray.gateway import keys
from castray.gateway import original_files as of
from castray.gateway import transfer_store as store
from castray.gateway.errors import ApiError, parse_body
from castray.gateway.files_api import disk, queue_file
from castray.gateway.openapi import doc
from castray.gateway.transfer_plan import resolve_recipients
from castray.shared.safe_names import safe_file_name
from castray.shared.transfers import TransferRecord

TAG = "files"
STATS_WINDOW = 1000  # newest transfers counted in the statistics


class ManualTransfer(BaseModel):
    model_config = ConfigDict(extra="ignore")
    sender_id: str = Field(min_length=1, max_length=200)
    file_name: str = Field(default="demo_file.txt", max_length=1000)
    recipients: list[str] = Field(default_factory=list, max_length=10_000)


@of.speaks_original
@doc("Send a demo, generated or uploaded file (by name) from a node's cluster to recipients (queues a "
     "transfer)", tag=TAG, body=ManualTransfer,
     responses={400: "No valid recipients or an unusable name", 404: "Unknown sender or file"})
async def manual(request: web.Request) -> web.Response:
    app = request.app
    body = await parse_body(request, ManualTransfer)
    try:
        name = safe_file_name(body.file_name)
        if name != body.file_name.strip():
            raise ValueError("give a plain file name (no folders)")
    except ValueError as e:
        raise ApiError(400, f"unusable file name: {e}", code="bad_file_name") from e
    people = await resolve_recipients(app, body.sender_id, body.recipients)
    data_dir = Path(app[keys.SETTINGS].data_dir)
    await disk(of.write_demo_files, data_dir / gf.DEMO)
    path = await asyncio.to_thread(gf.find_file, data_dir, name)
    if path is None:
        raise ApiError(404, f"no demo, generated or uploaded file named {name!r}", code="unknown_file")
    size, sha256 = await asyncio.to_thread(gf.sha256_of, path)
    record = await queue_file(app, path, name, size, sha256, people.valid, sender_id=body.sender_id)
    return web.json_response(of.manual_sent(name, record.id, people.valid, people.failed))


@of.speaks_original
@doc("Per-node transfer statistics (from the newest transfer records)", tag=TAG)
async def status(request: web.Request) -> web.Response:
    redis, names = request.app[keys.REDIS], request.app[keys.NAMES]
    nodes = await store.all_nodes(redis, names)
    records, _ = await store.list_transfers(redis, names, limit=STATS_WINDOW, offset=0)
    return web.json_response(node_stats(list(nodes), records))


def node_stats(node_ids: list[str], records: list[TransferRecord]) -> dict[str, dict[str, Any]]:
    """The original's shape: ``{node_id: {file_transfer_stats, active_transfers, auto_transfer_*}}``.

    A node counts each transfer it receives (one per destination entry) and each it sends (as
    ``sender_id`` or ``source_node_id``); ``bytes_transferred`` counts completed copies' bytes.
    """
    out: dict[str, dict[str, Any]] = {}

    def entry(node_id: str) -> dict[str, Any]:
        if node_id not in out:
            out[node_id] = {"file_transfer_stats": {"total_transfers": 0, "successful_transfers": 0,
                                                    "failed_transfers": 0, "bytes_transferred": 0},
                            "active_transfers": 0, "auto_transfer_enabled": False, "auto_transfer_queue": 0}
        return out[node_id]

    for node_id in node_ids:
        entry(node_id)
    for rec in records:
        for dest in rec.destinations:
            _count(entry(dest.node_id), dest.state, dest.bytes_done if dest.state == "completed" else 0)
        sender = rec.sender_id or rec.source_node_id
        if sender:
            sent = sum(d.bytes_done for d in rec.destinations if d.state == "completed")
            _count(entry(sender), rec.state, sent)
    return out


def _count(e: dict[str, Any], state: str, nbytes: int) -> None:
    stats = e["file_transfer_stats"]
    stats["total_transfers"] += 1
    stats["bytes_transferred"] += nbytes
    if state == "completed":
        stats["successful_transfers"] += 1
    elif state == "failed":
        stats["failed_transfers"] += 1
    elif state in ("queued", "pending", "running"):
        e["active_transfers"] += 1


def setup(app: web.Application) -> None:
    app.router.add_post("/api/file-transfers/manual", manual)
    app.router.add_get("/api/file-transfers/status", status)
