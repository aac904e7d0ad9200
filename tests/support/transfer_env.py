"""Helpers for the transfer tests: the node view a registry would write, requests as the gateway queues
them, records read back, files hashed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from castray import local_ray
from castray.gateway.transfer_store import save_upload
from castray.shared import codec
from castray.shared.bus import Bus
from castray.shared.digest import file_digest
from castray.shared.events import ClusterInfo, NodeInfo
from castray.shared.names import Names
from castray.shared.sizes import parse_size
from castray.shared.transfers import Destination, GenerateSource, QueuedTransfer, TransferRecord
from castray.transfer.settings import TransferSettings
from castray.transfer.worker import TransferWorker
from tests.support.waiting import wait_for


async def register_view(redis: aioredis.Redis, names: Names, head: local_ray.RayNode) -> dict[str, NodeInfo]:
    """Write the cluster and its nodes into the view hashes; ray node id -> NodeInfo."""
    cluster = ClusterInfo(id=f"c{head.gcs_port}", name=f"local-{head.gcs_port}",
                          dashboard_url=head.dashboard_url, gcs_address=head.gcs_address, found_by="local")
    rows = await asyncio.to_thread(local_ray.list_nodes, head.dashboard_url)
    out: dict[str, NodeInfo] = {}
    await redis.hset(names.view_clusters, cluster.id, codec.encode(cluster))
    for row in rows:
        rid = row["node_id"]
        node = NodeInfo(id=f"{cluster.id}-{rid[:12]}", ray_node_id=rid, cluster_id=cluster.id,
                        name=rid[:8], is_head=bool(row.get("is_head_node")), state=row["state"])
        await redis.hset(names.view_nodes, node.id, codec.encode(node))
        out[rid] = node
    return out


async def queue(redis: aioredis.Redis, names: Names, *, source: dict[str, Any], targets: list[str],
                file_name: str, mode: str = "multicast", overwrite: bool = False,
                cluster_id: str | None = None, **fields: Any) -> TransferRecord:
    """Store, index and queue a transfer exactly as the gateway does (a generated file's size is its
    ``bytes_total``, as the gateway accepted it)."""
    record = TransferRecord(id=uuid.uuid4().hex, mode=mode, source=source, file_name=file_name,  # type: ignore[arg-type]
                            created_at=time.time(), destinations=[Destination(node_id=t) for t in targets],
                            overwrite=overwrite, cluster_id=cluster_id, **fields)
    if isinstance(record.source, GenerateSource) and "bytes_total" not in fields:
        record.bytes_total = parse_size(record.source.generate.size)
    await redis.set(names.transfer(record.id), codec.encode(record))
    await redis.zadd(names.transfer_index, {record.id: record.created_at})
    await Bus(redis, names, source="test").add_work(names.transfer_requests,
                                                    QueuedTransfer(id=record.id).model_dump())
    return record


async def read(redis: aioredis.Redis, names: Names, tid: str) -> TransferRecord:
    raw = await redis.get(names.transfer(tid))
    assert raw is not None
    return codec.decode_model(raw, TransferRecord)


async def wait_record(redis: aioredis.Redis, names: Names, tid: str, pred: Callable[[TransferRecord], bool],
                      timeout: float = 90.0) -> TransferRecord:
    """The record once ``pred`` holds (fails the test with the last record after ``timeout``)."""
    rec = await read(redis, names, tid)

    async def holds() -> bool:
        nonlocal rec
        rec = await read(redis, names, tid)
        return pred(rec)

    try:
        await wait_for(holds, f"transfer {tid}", deadline=timeout, interval=0.1)
    except AssertionError:
        raise AssertionError(f"condition not reached; record: {rec.model_dump()}") from None
    return rec


def done(rec: TransferRecord) -> bool:
    return rec.state in ("completed", "failed", "cancelled")


def sha256_file(path: str | Path) -> str:
    return file_digest(path)[1]


def settings_for(namespace: str, root: Path, **kw: Any) -> TransferSettings:
    data_dir = kw.pop("data_dir", root / "data")
    return TransferSettings(namespace=namespace, data_dir=data_dir, inbox_dir=root / "inbox",
                            files_root=root / "files", claim_idle_ms=kw.pop("claim_idle_ms", 3000),
                            log_level="INFO", **kw)


def absolute(path: str | Path) -> Path:
    return Path(path).absolute()


def exists(path: str | Path) -> bool:
    return Path(path).exists()


def size_of(path: str | Path) -> int:
    return Path(path).stat().st_size


async def add_upload(redis: aioredis.Redis, names: Names, path: Path) -> str:
    """Record ``path`` as an upload, through the gateway's own `save_upload`; returns the upload id."""
    upload = await save_upload(redis, names, path=absolute(path), file_name=path.name,
                               file_size=size_of(path), sha256=sha256_file(path))
    return upload.upload_id


async def random_upload(redis: aioredis.Redis, names: Names, path: Path, size: int) -> tuple[str, str]:
    """Write ``size`` random bytes at ``path`` (its folder made) and record it as an upload;
    (upload id, sha256)."""
    def write() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))

    await asyncio.to_thread(write)
    return await add_upload(redis, names, path), await asyncio.to_thread(sha256_file, path)


def temp_files(directory: Path) -> list[Path]:
    return sorted(directory.rglob(".castray-*")) if directory.exists() else []


@contextlib.asynccontextmanager
async def running_worker(namespace: str, root: Path, redis: aioredis.Redis,
                         **settings: Any) -> AsyncIterator[TransferWorker]:
    """A transfer worker running in this event loop (``settings`` override `settings_for`'s), closed
    afterwards."""
    w = TransferWorker(settings=settings_for(namespace, root, **settings), redis=redis)
    task = asyncio.create_task(w.run())
    try:
        yield w
    finally:
        await w.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
