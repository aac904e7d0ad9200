"""Hostile names never leave the inbox, hostile source paths never leave the files root, and a cancelled
transfer leaves nothing behind (session head only)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from castray import local_ray
from castray.shared import codec
from castray.shared.names import Names
from castray.transfer.worker import TransferWorker
from tests.support import transfer_env as env

MiB = 1024 * 1024


async def _worker(namespace: str, root: Path, redis: aioredis.Redis,
                  **kw: object) -> AsyncIterator[TransferWorker]:
    w = TransferWorker(settings=env.settings_for(namespace, root, **kw), redis=redis)
    task = asyncio.create_task(w.run())
    yield w
    await w.close()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def worker(namespace: str, tmp_path: Path,
                 redis_client: aioredis.Redis) -> AsyncIterator[TransferWorker]:
    async for w in _worker(namespace, tmp_path, redis_client):
        yield w


@pytest.fixture
async def slow_worker(namespace: str, tmp_path: Path,
                      redis_client: aioredis.Redis) -> AsyncIterator[TransferWorker]:
    async for w in _worker(namespace, tmp_path, redis_client, rate_limit=4 * MiB, chunk_bytes=MiB):
        yield w


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


async def test_hostile_names_stay_in_the_inbox(
    ray_head: local_ray.RayNode, worker: TransferWorker, redis_client: aioredis.Redis, names: Names,
    tmp_path: Path,
) -> None:
    view = await env.register_view(redis_client, names, ray_head)
    head = view[str(ray_head.node_id)]
    gen = {"generate": {"size": 1024, "content": "text"}}
    landing = {"../../x": "x", "/tmp/castray-abs-name": "castray-abs-name", "..\\..\\win.txt": "win.txt",
               "a/b/../../c": "c"}
    refused = ["a\x00b", "y" * 300, "", "..", ".castray-abc-0.part", "con.txt"]
    queued = {}
    for name in [*landing, *refused]:
        rec = await env.queue(redis_client, names, source=gen, targets=[head.id], file_name=name,
                              mode="unicast")
        queued[name] = rec.id
    files_root = worker.settings.files_root_dir()
    (files_root / "ok").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("outside the files root")
    for path in ["../secret.txt", str(tmp_path / "secret.txt"), "ok/../../secret.txt"]:
        rec = await env.queue(redis_client, names, source={"node_id": head.id, "path": path},
                              targets=[head.id], file_name="stolen.txt", mode="unicast")
        queued[f"source:{path}"] = rec.id

    inbox = worker.settings.inbox_root() / head.id
    for name, tid in queued.items():
        rec = await env.wait_record(redis_client, names, tid, env.done)
        if name in landing:
            assert rec.state == "completed", (name, rec.model_dump())
            assert rec.destinations[0].path == str(inbox / landing[name])
        else:
            assert rec.state == "failed", (name, rec.model_dump())
            why = str(rec.destinations[0].error)
            assert ("unusable file name" in why) if name in refused else ("bad source path" in why), why
    # Every file the transfers wrote is in the node's inbox, under the expected names.
    written = [p for p in _files(tmp_path) if p.name != "secret.txt"]
    assert written == sorted(inbox / n for n in landing.values())
    assert not env.exists(tmp_path / "x") and not env.exists("/tmp/castray-abs-name")


async def test_cancel_mid_transfer_leaves_nothing(
    ray_head: local_ray.RayNode, slow_worker: TransferWorker, redis_client: aioredis.Redis, names: Names,
) -> None:
    view = await env.register_view(redis_client, names, ray_head)
    head = view[str(ray_head.node_id)]
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(names.transfer_events)
    rec = await env.queue(redis_client, names, source={"generate": {"size": "64MiB", "content": "pattern"}},
                          targets=[head.id], file_name="big.bin", mode="unicast")
    await env.wait_record(redis_client, names, rec.id,
                          lambda r: r.state == "running" and r.destinations[0].bytes_done > 0)
    # As the gateway cancels: read, set the flag, write back.
    current = await env.read(redis_client, names, rec.id)
    current.cancel_requested = True
    await redis_client.set(names.transfer(rec.id), codec.encode(current))

    final = await env.wait_record(redis_client, names, rec.id, env.done, timeout=60)
    assert final.state == "cancelled" and final.destinations[0].state == "cancelled"
    assert final.destinations[0].bytes_done < 64 * MiB
    inbox = slow_worker.settings.inbox_root() / head.id
    assert not (inbox / "big.bin").exists() and env.temp_files(inbox) == []
    assert list((slow_worker.settings.data_dir / "tmp").glob("*")) == []  # generated source removed
    kinds: list[str] = []
    deadline = asyncio.get_running_loop().time() + 10
    while "transfer-cancelled" not in kinds and asyncio.get_running_loop().time() < deadline:
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if msg is not None:
            kinds.append(codec.unpack(msg["data"])["type"])
    await pubsub.aclose()
    assert "transfer-started" in kinds and "transfer-cancelled" in kinds and "transfer-completed" not in kinds
