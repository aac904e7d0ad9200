"""Helpers for the gateway's transfer, file and message tests: the real app around a test namespace,
and a hand-written view (NodeInfo rows in ``names.view_nodes``) to validate requests against."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from castray.gateway import keys
from castray.gateway.app import create_app
from castray.gateway.settings import GatewaySettings
from castray.shared import codec
from castray.shared.events import NodeInfo
from castray.shared.names import Names
from castray.shared.transfers import TransferRecord

REDIS_URL = "redis://127.0.0.1:6379/0"


@asynccontextmanager
async def gateway(namespace: str, data_dir: Path, redis_url: str = REDIS_URL, **overrides: Any
                  ) -> AsyncIterator[TestClient]:
    """A test client around ``create_app`` with this namespace and data dir (served on 127.0.0.1)."""
    settings = GatewaySettings(namespace=namespace, data_dir=data_dir, redis_url=redis_url, **overrides)
    app = create_app(settings)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        await _ready(app)
        yield client


async def _ready(app: web.Application) -> None:
    """Wait until the gateway's event listener is subscribed (stopping it mid-subscribe can hang)."""
    hub = app.get(getattr(keys, "HUB", None)) if hasattr(keys, "HUB") else None
    subscribed = getattr(hub, "subscribed", None)
    if isinstance(subscribed, asyncio.Event):
        await asyncio.wait_for(subscribed.wait(), timeout=30)


def node(node_id: str, cluster: str = "c1", *, state: str = "ALIVE", head: bool = False) -> NodeInfo:
    return NodeInfo(id=node_id, ray_node_id=f"ray-{node_id}", cluster_id=cluster, name=node_id,
                    ip="127.0.0.1", is_head=head, state=state)  # type: ignore[arg-type]


async def seed_view(redis: aioredis.Redis, names: Names, nodes: list[NodeInfo]) -> None:
    """Write ``nodes`` into the view as the registry would (one hash field per node id)."""
    await redis.hset(names.view_nodes, mapping={n.id: codec.encode(n) for n in nodes})


STANDARD_VIEW = [node("c1-head", head=True), node("c1-w1"), node("c1-w2"), node("c1-dead", state="DEAD"),
                 node("c2-head", "c2", head=True)]


async def stored_record(redis: aioredis.Redis, names: Names, transfer_id: str) -> TransferRecord:
    raw = await redis.get(names.transfer(transfer_id))
    assert raw is not None, f"no record for {transfer_id}"
    return codec.decode_model(raw, TransferRecord)


async def stream_entries(redis: aioredis.Redis, names: Names) -> list[dict[str, Any]]:
    """Every request on the transfer stream, decoded."""
    entries = await redis.xrange(names.transfer_requests)
    return [codec.unpack(fields[b"data"]) for _, fields in entries]


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
