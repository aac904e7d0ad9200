"""What the gateway's transfer features read and write in Redis: uploads and transfers (the view's nodes
are read with the app's `castray.shared.view.ViewReader`).

Shared by the transfer, file-generator and legacy endpoints; every way of asking for a transfer is
validated and queued the same way by ``transfer_intake`` (`accept`, then `enqueue`), which reads uploads
here.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import redis.asyncio as aioredis
from pydantic import BaseModel
from redis.exceptions import WatchError

from castray.gateway.errors import ApiError
from castray.shared import codec
from castray.shared.errors import EventDecodeError
from castray.shared.names import Names
from castray.shared.transfers import FINAL_STATES, TransferRecord, UploadOrigin, UploadRecord


# --- uploads (and generated files registered like uploads) -----------------------------------------
async def save_upload(redis: aioredis.Redis, names: Names, *, path: Path, file_name: str, file_size: int,
                      sha256: str, upload_id: str | None = None, origin: UploadOrigin = "upload",
                      data_dir: Path | None = None) -> UploadRecord:
    """Record a stored file at ``names.upload(id)`` so that a transfer can use it as its source. The
    record holds its path relative to ``data_dir`` (no server path in an answer; the transfer service
    reads it beneath its own data directory); without ``data_dir``, the absolute ``path``."""
    upload = UploadRecord(upload_id=upload_id or uuid.uuid4().hex, file_name=file_name,
                          file_size=file_size, sha256=sha256, path=_stored_path(path, data_dir),
                          created_at=time.time(), origin=origin)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(names.upload(upload.upload_id), codec.encode(upload))
        pipe.zadd(names.upload_index, {upload.upload_id: upload.created_at})
        await pipe.execute()
    return upload


def _stored_path(path: Path, data_dir: Path | None) -> str:
    if data_dir is not None:
        for root in (data_dir.absolute(), data_dir.resolve()):
            if path.is_relative_to(root):
                return path.relative_to(root).as_posix()
    return str(path)


def upload_file(data_dir: Path, upload: UploadRecord) -> Path:
    """Where an upload's file is on this machine (its record's path is relative to the data directory)."""
    return data_dir.absolute() / upload.path  # an absolute record path (an older record) stays as it is


async def list_uploads(redis: aioredis.Redis, names: Names, *, limit: int, offset: int
                       ) -> tuple[list[UploadRecord], int]:
    """Newest first: ``limit`` upload records from ``offset``, and how many there are in all."""
    return await _newest_first(redis, names.upload_index, names.upload, UploadRecord, limit, offset)


async def forget_upload(redis: aioredis.Redis, names: Names, upload_id: str) -> bool:
    """Remove the record of an upload (not its file); False if there was none."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(names.upload(upload_id))
        pipe.zrem(names.upload_index, upload_id)
        deleted, _ = await pipe.execute()
    return bool(deleted)


async def get_upload(redis: aioredis.Redis, names: Names, upload_id: str) -> UploadRecord | None:
    raw = await redis.get(names.upload(upload_id))
    if raw is None:
        return None
    try:
        return codec.decode_model(raw, UploadRecord)
    except EventDecodeError:
        return None


# --- transfer records ------------------------------------------------------------------------------
async def get_transfer(redis: aioredis.Redis, names: Names, transfer_id: str) -> TransferRecord | None:
    """The stored record (None if there is none; a 500 naming it if it does not decode)."""
    raw = await redis.get(names.transfer(transfer_id))
    return None if raw is None else _transfer(transfer_id, raw)


def _transfer(transfer_id: str, raw: bytes | str) -> TransferRecord:
    """A stored record that no model reads is a server fault, said as such (not a missing transfer); the
    transfer worker gives its request up (`castray.transfer.worker`) and retention removes it."""
    try:
        return codec.decode_model(raw, TransferRecord)
    except EventDecodeError as e:
        raise ApiError(500, f"the record of transfer {transfer_id} is unreadable: {e}",
                       code="unreadable_record") from None


async def list_transfers(redis: aioredis.Redis, names: Names, *, limit: int, offset: int
                         ) -> tuple[list[TransferRecord], int]:
    """Newest first: ``limit`` records from ``offset``, and how many there are in all."""
    return await _newest_first(redis, names.transfer_index, names.transfer, TransferRecord, limit, offset)


M = TypeVar("M", bound=BaseModel)


async def _newest_first(redis: aioredis.Redis, index: str, key: Callable[[str], str], model: type[M],
                        limit: int, offset: int) -> tuple[list[M], int]:
    """A page of the records an index (sorted set: id -> time) orders, newest first, and the index's size.
    Records deleted or unreadable meanwhile are left out."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrevrange(index, offset, offset + limit - 1)
        pipe.zcard(index)
        ids, total = await pipe.execute()
    if not ids:
        return [], int(total)
    raws = await redis.mget([key(str(codec.as_text(i))) for i in ids])
    records: list[M] = []
    for raw in raws:
        if raw is None:
            continue
        try:
            records.append(codec.decode_model(raw, model))
        except EventDecodeError:
            continue
    return records, int(total)


async def request_cancel(redis: aioredis.Redis, names: Names, transfer_id: str) -> TransferRecord:
    """Mark a transfer for cancellation (cancelled at once if still queued); optimistic, retried.

    404 unknown, 409 already finished.
    """
    key = names.transfer(transfer_id)
    for _ in range(20):
        async with redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(key)
                raw = await pipe.get(key)
                if raw is None:
                    raise ApiError(404, f"no transfer {transfer_id!r}")
                record = _transfer(transfer_id, raw)
                if record.state in FINAL_STATES:
                    raise ApiError(409, f"transfer {transfer_id} is already {record.state}",
                                   state=record.state)
                record.cancel_requested = True
                if record.state == "queued":
                    _cancel_queued(record)
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.set(key, codec.encode(record))
                await pipe.execute()
                return record
            except WatchError:
                continue  # the worker wrote the record meanwhile: read it again
    raise ApiError(409, f"transfer {transfer_id} is changing too fast to cancel; try again")


def _cancel_queued(record: TransferRecord) -> None:
    now = time.time()
    record.state = "cancelled"
    record.finished_at = now
    for dest in record.destinations:
        if dest.state in ("pending", "running"):
            dest.state = "cancelled"
