"""``/api/uploads``: the files stored as transfer sources (uploads, and generated files registered like
them): list them, read one, fetch its bytes, delete one.

``GET /api/uploads/{id}/content`` serves the file itself (with ``Range``): a transfer worker that does not
share the gateway's data directory (``CASTRAY_GATEWAY_URL`` set) reads uploads from here.

Deleting an upload removes its record and its folder ``<data dir>/uploads/<upload_id>/``; a generated
file's record is removed, and the file stays in the generator's folder (``/api/file-generator/files``
deletes it). A transfer already reading the file finishes (the open file outlives its name); a transfer
still queued then fails with "source file not found".
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

from aiohttp import web

from castray.gateway import generated_files as gf
from castray.gateway import keys
from castray.gateway import transfer_store as store
from castray.gateway.errors import ApiError
from castray.gateway.openapi import doc
from castray.gateway.transfers_api import PAGE_QUERY, page_params
from castray.shared.api import UploadDeleted, UploadList
from castray.shared.sizes import format_size
from castray.shared.transfers import UploadRecord

TAG = "files"
UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")


@doc("Stored uploads and generated files usable as transfer sources, newest first", tag=TAG,
     response_model=UploadList, query=PAGE_QUERY, responses={400: "Bad limit or offset"})
async def list_uploads(request: web.Request) -> web.Response:
    limit, offset = page_params(request)
    records, total = await store.list_uploads(request.app[keys.REDIS], request.app[keys.NAMES],
                                              limit=limit, offset=offset)
    body = UploadList(uploads=records, total=total, limit=limit, offset=offset)
    return web.json_response(body.model_dump())


async def _record(request: web.Request) -> UploadRecord:
    upload_id = request.match_info["upload_id"]
    if not UPLOAD_ID.match(upload_id):
        raise ApiError(400, "an upload id is 32 hex digits", code="bad_upload_id")
    record = await store.get_upload(request.app[keys.REDIS], request.app[keys.NAMES], upload_id)
    if record is None:
        raise ApiError(404, f"no upload {upload_id}")
    return record


@doc("One upload's record", tag=TAG, response_model=UploadRecord,
     responses={400: "Not an upload id", 404: "Unknown upload"})
async def get_upload(request: web.Request) -> web.Response:
    return web.json_response((await _record(request)).model_dump())


@doc("The stored file's bytes (Range requests allowed): how a transfer worker on another machine reads it",
     tag=TAG, responses={400: "Not an upload id", 404: "Unknown upload, or its file is gone"})
async def upload_content(request: web.Request) -> web.StreamResponse:
    record = await _record(request)
    data_dir = Path(request.app[keys.SETTINGS].data_dir)
    path = await asyncio.to_thread(_servable, data_dir, store.upload_file(data_dir, record))
    if path is None:
        raise ApiError(404, f"the file of upload {record.upload_id} is gone")
    return web.FileResponse(path, headers={"Content-Type": "application/octet-stream",
                                           "X-Content-SHA256": record.sha256})


def _servable(data_dir: Path, path: Path) -> Path | None:
    """``path`` if it is a regular file inside the data directory (a record never sends us elsewhere)."""
    try:
        resolved = path.resolve(strict=True)
        resolved.relative_to(data_dir.resolve())
    except (OSError, ValueError):
        return None
    return resolved if resolved.is_file() else None


@doc("Delete an upload: its record and its stored file (a generated file's record only)", tag=TAG,
     response_model=UploadDeleted, responses={400: "Not an upload id", 404: "Unknown upload"})
async def delete_upload(request: web.Request) -> web.Response:
    record = await _record(request)
    app = request.app
    size = 0
    if record.origin == "upload":
        folder = Path(app[keys.SETTINGS].data_dir) / gf.UPLOADS / record.upload_id
        size = await asyncio.to_thread(_remove_folder, folder)
    if not await store.forget_upload(app[keys.REDIS], app[keys.NAMES], record.upload_id):
        raise ApiError(404, f"no upload {record.upload_id}")  # another request deleted it meanwhile
    return web.json_response(UploadDeleted(
        upload_id=record.upload_id, deleted_size=size,
        message=f"deleted {record.file_name} ({format_size(size)})").model_dump())


def _remove_folder(folder: Path) -> int:
    """Remove an upload's own folder (never a symlink out of it); the bytes its files held."""
    if folder.is_symlink() or not folder.is_dir():
        return 0
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and not p.is_symlink())
    shutil.rmtree(folder)
    return size


def setup(app: web.Application) -> None:
    app.router.add_get("/api/uploads", list_uploads)
    app.router.add_get("/api/uploads/{upload_id}", get_upload)
    app.router.add_get("/api/uploads/{upload_id}/content", upload_content)
    app.router.add_delete("/api/uploads/{upload_id}", delete_upload)
