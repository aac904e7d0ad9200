"""Files the gateway stores: streamed uploads (``POST /api/upload``) and the original CastRay's file
generator (``/api/file-generator/*``), whose files land in ``<data dir>/generated`` (``create-demo``'s in
``<data dir>/demo_files``, beside the original's demo files). The generator answers in the original's
shapes, which ``original.files`` builds.

Uploads are streamed part by part to disk (hashing on the way, writes in a thread), never held whole in
memory, and limited by ``max_upload_bytes`` here: aiohttp's ``client_max_size`` only bounds bodies read
whole, which this route never does. Generation runs in a thread too.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import BadHttpMessage

from castray.gateway import generated_files as gf
from castray.gateway import keys
from castray.gateway import transfer_store as store
from castray.gateway.errors import ApiError, parse_body
from castray.gateway.openapi import doc
from castray.gateway.original import files as of
from castray.gateway.original.errors import speaks_original
from castray.gateway.storage import BUDGET, Budget, Share
from castray.gateway.transfer_intake import accept, enqueue, generate_size, resolve_recipients
from castray.shared import filegen
from castray.shared.api import CreateAndTransfer, CreateDemo, CreateFile, CreatePreset
from castray.shared.safe_names import inside, safe_file_name
from castray.shared.sizes import PRESETS, format_size
from castray.shared.transfers import TransferRequest, UploadRecord, UploadSource

T = TypeVar("T")
# Generating up to a GiB keeps a thread busy for seconds: a few at a time, so that the default
# executor stays free for everything else (upload writes, file listings).
GENERATING = web.AppKey("generating", asyncio.Semaphore)
MAX_GENERATING = 2
TAG = "files"
GEN = of.GEN
WRITE_CHUNK = 1024 * 1024  # bytes gathered before one write in the thread
MULTIPART_SLACK = 64 * 1024  # headers and boundaries around the file in a multipart body
FULL = "Over the storage quota, or below the free-space floor (with the numbers)"


# --- uploads -------------------------------------------------------------------------------------
@speaks_original
@doc("Upload a file (multipart field 'file'), streamed to storage; use its upload_id as a transfer source",
     tag=TAG, response_model=of.UploadAnswer, files=("file",),
     responses={400: "Not multipart, no 'file' field, or an unusable file name",
                413: "Over max_upload_bytes",
                507: FULL})
async def upload(request: web.Request) -> web.Response:
    settings = request.app[keys.SETTINGS]
    cap = settings.max_upload_bytes
    if request.content_length is not None and request.content_length > cap + MULTIPART_SLACK:
        raise ApiError(413, f"upload is larger than the limit of {format_size(cap)}", max_size=cap)
    if not request.content_type.startswith("multipart/"):
        raise ApiError(400, "send multipart/form-data with the file in a field named 'file'")
    part = await _file_part(request)
    try:
        name = safe_file_name(part.filename or "")
    except ValueError as e:
        raise ApiError(400, f"unusable file name: {e}", code="bad_file_name") from e
    upload_id = uuid.uuid4().hex
    folder = inside(Path(settings.data_dir) / gf.UPLOADS, upload_id)
    async with request.app[BUDGET].hold() as share:
        if request.content_length is not None:  # refuse at once what cannot fit (headers not counted)
            await share.budget.check(max(0, request.content_length - MULTIPART_SLACK))
        sink = await disk(gf.UploadFile, folder)
        record = await _store(request, part, sink, share, name, upload_id)
    return web.json_response(of.uploaded(record).model_dump())


async def _store(request: web.Request, part: BodyPartReader, sink: gf.UploadFile, share: Share, name: str,
                 upload_id: str) -> UploadRecord:
    """Stream the part into ``sink`` and record it; nothing stays behind if that fails."""
    try:
        try:
            await _stream(part, sink, request.app[keys.SETTINGS].max_upload_bytes, share)
        except ValueError as e:  # aiohttp's word for a body that breaks off or loses its boundary
            raise ApiError(400, f"malformed multipart body: {e}") from e
        # aiohttp ends a part quietly at the end of the body; a complete one is followed by its
        # boundary, which the reader pushed back into the stream: none left means the body broke off.
        if request.content.at_eof():
            raise ApiError(400, "the upload ended before the file did (no closing multipart boundary)",
                           code="truncated_upload")
        path = await disk(sink.finish, name)
        app = request.app
        record = await store.save_upload(app[keys.REDIS], app[keys.NAMES], path=path, file_name=name,
                                         data_dir=Path(app[keys.SETTINGS].data_dir), file_size=sink.size,
                                         sha256=sink.digest.hexdigest(), upload_id=upload_id)
    except BaseException:  # nothing stays behind: not the file, not its folder
        await asyncio.to_thread(sink.discard)
        raise
    return record


async def _file_part(request: web.Request) -> BodyPartReader:
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if isinstance(part, BodyPartReader) and part.name == "file":
                return part
            await part.release()
    # What aiohttp raises on a malformed body; BadHttpMessage: a part's header it refuses (a control
    # character in a field name, say).
    except (ValueError, AssertionError, KeyError, BadHttpMessage) as e:
        raise ApiError(400, f"malformed multipart body: {e}") from e
    raise ApiError(400, "no multipart field named 'file'")


async def _stream(part: BodyPartReader, sink: gf.UploadFile, cap: int, share: Share) -> None:
    """Write the part to ``sink``, each piece taken from the storage budget before it is written."""
    buffer, size = bytearray(), 0
    while chunk := await part.read_chunk(WRITE_CHUNK):
        size += len(chunk)
        if size > cap:
            raise ApiError(413, f"upload is larger than the limit of {format_size(cap)}", max_size=cap)
        buffer += chunk
        if len(buffer) >= WRITE_CHUNK:
            await share.grow(len(buffer))
            await disk(sink.write, bytes(buffer))
            buffer.clear()
    if buffer:
        await share.grow(len(buffer))
        await disk(sink.write, bytes(buffer))


async def disk(func: Callable[..., T], *args: Any) -> T:
    """``func(*args)`` in a thread; a full or failing disk is a clear 507, not an internal error."""
    try:
        return await asyncio.to_thread(func, *args)
    except OSError as e:
        raise ApiError(507, f"the gateway could not write the file: {e.strerror or e}",
                       code="storage_error") from e


# --- the file generator ----------------------------------------------------------------------------
def _folder(app: web.Application, name: str = gf.GENERATED) -> Path:
    return Path(app[keys.SETTINGS].data_dir) / name


async def _create(app: web.Application, size: int, content: filegen.Content, name: str,
                  folder: str = gf.GENERATED) -> of.Created:
    async with app[BUDGET].hold(size):  # 507 before anything is written
        try:
            path = await disk(gf.reserve, _folder(app, folder), name)
        except ValueError as e:
            raise ApiError(400, f"unusable file name: {e}", code="bad_file_name") from e
        async with app[GENERATING]:
            sha256 = await disk(gf.generate, path, size, content)
    st = await asyncio.to_thread(path.stat)
    return of.Created(folder=folder, file_name=path.name, requested_size=size, actual_size=st.st_size,
                      content_type=content, sha256=sha256, created_time=gf.iso(st.st_mtime),
                      download_url=of.download_url(path.name))


def _name(requested: str, default: str) -> str:
    try:
        return gf.generator_name(requested, default)
    except ValueError as e:
        raise ApiError(400, f"unusable file name: {e}", code="bad_file_name") from e


@speaks_original
@doc("The generator's presets (tiny .. massive) and content types", tag=TAG, store=False)
async def presets(request: web.Request) -> web.Response:
    return web.json_response(of.presets(list(filegen.CONTENT_TYPES)))


@speaks_original
@doc("The generator's limits, units and examples", tag=TAG, store=False)
async def info(request: web.Request) -> web.Response:
    cap = request.app[keys.SETTINGS].max_generate_bytes
    return web.json_response(of.info(cap, list(filegen.CONTENT_TYPES)))


@speaks_original
@doc("Generate a file of an exact size", tag=TAG, body=CreateFile,
     responses={400: "Bad size (0, over the limit, not a size), content type or file name", 507: FULL},
     store=False)
async def create(request: web.Request) -> web.Response:
    body = await parse_body(request, CreateFile)
    size = generate_size(request.app, body.size)
    name = _name(body.file_name, f"sample_{_tag(body.size)}_{body.content_type}_{gf.stamp()}.txt")
    return web.json_response(of.created(await _create(request.app, size, body.content_type, name)))


@speaks_original
@doc("Generate a file of a preset size", tag=TAG, body=CreatePreset,
     responses={400: "Unknown preset", 507: FULL}, store=False)
async def create_preset(request: web.Request) -> web.Response:
    body = await parse_body(request, CreatePreset)
    if body.preset not in PRESETS:
        raise ApiError(400, f"unknown preset {body.preset!r} (use one of {', '.join(PRESETS)})",
                       code="unknown_preset")
    size = generate_size(request.app, PRESETS[body.preset][0])
    size_tag = format_size(size).replace(" ", "")
    default = f"preset_{body.preset}_{size_tag}_{body.content_type}_{gf.stamp()}.txt"
    made = await _create(request.app, size, body.content_type, _name(body.file_name, default))
    return web.json_response(of.created(made, preset_name=body.preset))


@speaks_original
@doc("Generate a file in demo_files/ (the original page's custom demo file), to send by name with "
     "/api/file-transfers/manual", tag=TAG, body=CreateDemo,
     responses={400: "Bad size (0, over the generator's limit, not a size) or content type", 507: FULL},
     store=False)
async def create_demo(request: web.Request) -> web.Response:
    app = request.app
    body = await parse_body(request, CreateDemo)
    size = generate_size(app, body.size)
    await disk(of.write_demo_files, _folder(app, gf.DEMO))
    hhmmss = gf.stamp().rsplit("_", 1)[1]
    name = _name(f"custom_test_{_tag(body.size)}_{hhmmss}.bin", "custom_test.bin")
    return web.json_response(of.demo_created(await _create(app, size, body.content_type, name, gf.DEMO)))


@speaks_original
@doc("Generate a file and queue a real transfer of it from the sender's cluster to the recipients", tag=TAG,
     body=CreateAndTransfer, responses={400: "Bad size or no valid recipients", 404: "Unknown sender",
                                                 507: FULL})
async def create_and_transfer(request: web.Request) -> web.Response:
    app = request.app
    body = await parse_body(request, CreateAndTransfer)
    size = generate_size(app, body.size)
    name = _name(body.file_name, f"transfer_{_tag(body.size)}_{body.content_type}_{gf.stamp()}.txt")
    people = await resolve_recipients(app, body.sender_id, body.recipients)  # before any disk work
    made = await _create(app, size, body.content_type, name)
    record = await queue_file(app, _folder(app) / made.file_name, made.file_name, size, made.sha256,
                              people.valid, sender_id=body.sender_id)
    return web.json_response(of.created_and_queued(made, record.id, people.valid, people.failed))


async def queue_file(app: web.Application, path: Path, file_name: str, size: int, sha256: str,
                     targets: list[str], *, sender_id: str | None) -> Any:
    """Register a stored file like an upload and queue its transfer to ``targets`` (one transfer)."""
    upload = await store.save_upload(app[keys.REDIS], app[keys.NAMES], path=path, file_name=file_name,
                                     data_dir=Path(app[keys.SETTINGS].data_dir),
                                     file_size=size, sha256=sha256, origin="generated")
    req = TransferRequest(source=UploadSource(upload_id=upload.upload_id),
                          mode="unicast" if len(targets) == 1 else "multicast", targets=targets)
    record = await accept(app, req, sender_id=sender_id)
    await enqueue(app, record)
    return record


@speaks_original
@doc("Files in the generator's folder", tag=TAG, store=False)
async def list_files(request: web.Request) -> web.Response:
    entries = await asyncio.to_thread(gf.list_folder, _folder(request.app))
    return web.json_response(of.listing(entries))


def _generated_path(request: web.Request) -> Path:
    raw = request.match_info["name"]
    try:
        name = safe_file_name(raw)
        if name != raw or name.startswith("."):
            raise ValueError("give a plain file name (no folders, not hidden)")
        path = inside(_folder(request.app), name)
    except ValueError as e:
        raise ApiError(400, f"unusable file name: {e}", code="bad_file_name") from e
    return path


@speaks_original
@doc("Download a generated file", tag=TAG, responses={400: "Unusable name", 404: "No such file"}, store=False)
async def download(request: web.Request) -> web.StreamResponse:
    path = _generated_path(request)
    if not await asyncio.to_thread(path.is_file):
        raise ApiError(404, f"no generated file {path.name!r}")
    return web.FileResponse(path, headers={"Content-Disposition": f'attachment; filename="{path.name}"'})


@speaks_original
@doc("Delete a generated file", tag=TAG, responses={400: "Unusable name", 404: "No such file"}, store=False)
async def delete_file(request: web.Request) -> web.Response:
    path = _generated_path(request)
    try:
        size = await asyncio.to_thread(_unlink, path)
    except FileNotFoundError as e:
        raise ApiError(404, f"no generated file {path.name!r}") from e
    return web.json_response(of.deleted(path.name, size))


def _unlink(path: Path) -> int:
    if path.is_symlink() or not path.is_file():
        raise FileNotFoundError(path)
    size = path.stat().st_size
    path.unlink()
    return size


def _tag(size: str | int) -> str:
    """The size as the user wrote it, fit for a file name."""
    return gf.generator_name(str(size), "size").removesuffix(".txt")[:32]


def setup(app: web.Application) -> None:
    settings = app[keys.SETTINGS]
    app[GENERATING] = asyncio.Semaphore(MAX_GENERATING)
    app[BUDGET] = Budget(Path(settings.data_dir), quota=settings.storage_quota_bytes,
                         floor=settings.storage_min_free_bytes)
    app.router.add_post("/api/upload", upload)
    app.router.add_get(f"{GEN}/presets", presets)
    app.router.add_get(f"{GEN}/info", info)
    app.router.add_post(f"{GEN}/create", create)
    app.router.add_post(f"{GEN}/create-preset", create_preset)
    app.router.add_post(f"{GEN}/create-and-transfer", create_and_transfer)
    app.router.add_post(f"{GEN}/create-demo", create_demo)
    app.router.add_get(f"{GEN}/files", list_files)
    # The original's delete path is …/files/<name>; its page downloads from …/download/<name> and deletes
    # with …/delete/<name>: all answer.
    for prefix in ("files", "download"):
        app.router.add_get(f"{GEN}/{prefix}/{{name}}", download)
    for prefix in ("files", "delete"):
        app.router.add_delete(f"{GEN}/{prefix}/{{name}}", delete_file)
