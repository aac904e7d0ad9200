"""The original CastRay's ``/api/file-transfers/*``, working: manual transfers become real transfers,
and the per-node statistics are counted from the transfer records.

A manual transfer names its file as the original page does: one of the original's demo files
(``config.json``, ``data.txt``, ``report.md``, written under ``<data dir>/demo_files`` on first use), a
``create-demo`` file, a generated file or an upload (`generated_files.find_file`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from castray.gateway import generated_files as gf
from castray.gateway import keys
from castray.gateway import transfer_store as store
from castray.gateway.errors import ApiError, parse_body
from castray.gateway.files_api import disk, queue_file
from castray.gateway.openapi import doc
from castray.gateway.original import files as of
from castray.gateway.original.errors import speaks_original
from castray.gateway.transfer_intake import resolve_recipients
from castray.shared.api import AutoToggle, ManualTransfer
from castray.shared.digest import file_digest
from castray.shared.safe_names import safe_file_name

TAG = "files"
STATS_WINDOW = 1000  # newest transfers counted in the statistics


@speaks_original
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
    size, sha256 = await asyncio.to_thread(file_digest, path)
    record = await queue_file(app, path, name, size, sha256, people.valid, sender_id=body.sender_id)
    return web.json_response(of.manual_sent(name, record.id, people.valid, people.failed))


@speaks_original
@doc("Per-node transfer statistics (from the newest transfer records)", tag=TAG)
async def status(request: web.Request) -> web.Response:
    redis, names = request.app[keys.REDIS], request.app[keys.NAMES]
    nodes = await request.app[keys.VIEW].nodes()
    records, _ = await store.list_transfers(redis, names, limit=STATS_WINDOW, offset=0)
    return web.json_response(of.node_stats(list(nodes), records))


@speaks_original
@doc("The original's automatic demo transfers, which this CastRay does not have (nothing is sent unless "
     "asked): 'enabled': false is what every node already is; 'enabled': true is refused with the reason",
     tag=TAG, body=AutoToggle, responses={400: "Not a JSON object, or a field of the wrong type",
                                          404: "No node_id, or an unknown node",
                                          409: "Automatic transfers do not exist here"})
async def auto_toggle(request: web.Request) -> web.Response:
    body = await parse_body(request, AutoToggle)
    node = await request.app[keys.VIEW].node(body.node_id)
    if node is None:
        raise ApiError(404, f"unknown node {body.node_id!r}" if body.node_id else "give a node_id",
                       code="unknown_node")
    if body.enabled:
        raise of.auto_refusal()
    return web.json_response(of.auto_toggled(node.id, enabled=False))


def setup(app: web.Application) -> None:
    app.router.add_post("/api/file-transfers/manual", manual)
    app.router.add_get("/api/file-transfers/status", status)
    app.router.add_post("/api/file-transfers/auto/toggle", auto_toggle)
