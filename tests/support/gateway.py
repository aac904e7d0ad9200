"""Helpers for the gateway tests: a writer of the view in the registry's layout, a gateway around the
real `create_app`, and WebSocket helpers that wait for a condition (never for a fixed time).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from pydantic import TypeAdapter

from castray.shared import codec
from castray.shared.events import (
    ClusterInfo,
    FieldChange,
    NodeInfo,
    ViewChanged,
    ViewChangedEvent,
    ViewReset,
    ViewResetEvent,
)
from castray.shared.names import Names

DEADLINE = 15.0
DELTA: TypeAdapter[ViewChanged] = TypeAdapter(ViewChanged)


def cluster(
    cid: str = "c1",
    *,
    port: int = 8265,
    found_by: str = "external",
    state: str = "alive",
    first_seen: float = 1.0,
) -> ClusterInfo:
    return ClusterInfo(
        id=cid,
        name=f"ray-{cid}",
        dashboard_url=f"http://127.0.0.1:{port}",
        gcs_address=f"127.0.0.1:{port + 100}",
        session_name=f"session_{cid}",
        ray_version="2.60.0",
        found_by=found_by,
        addresses=[f"127.0.0.1:{port}"],
        sources=["scan"],
        state=state,
        first_seen=first_seen,
        last_seen=first_seen,
    )


def node(
    nid: str,
    cid: str = "c1",
    *,
    state: str = "ALIVE",
    head: bool = False,
    external: bool = True,
    cpu: float = 2.0,
) -> NodeInfo:
    return NodeInfo(
        id=f"{cid}-{nid}",
        ray_node_id=nid * 8,
        cluster_id=cid,
        name=f"{cid}-{nid}",
        ip="127.0.0.1",
        hostname="host",
        is_head=head,
        state=state,
        resources={"CPU": cpu},
        external=external,
        first_seen=1.0,
        last_seen=1.0,
    )


class ViewWriter:
    """Writes the view as the registry does: records, meta, a log entry ``<version>-0`` and a publish,
    in one MULTI. ``publish=False`` simulates a message lost on the way to the gateway."""

    def __init__(self, redis: aioredis.Redis, names: Names, *, epoch: str | None = None) -> None:
        self.redis = redis
        self.names = names
        self.epoch = epoch or uuid.uuid4().hex[:16]
        self.version = 0
        self.sent: dict[int, bytes] = {}  # version -> the encoded event, to publish again

    async def reset(
        self,
        *,
        epoch: str | None = None,
        clusters: list[ClusterInfo] | None = None,
        nodes: list[NodeInfo] | None = None,
    ) -> None:
        """Rebuild the view from nothing (a new epoch when given) and publish view-reset."""
        n = self.names
        if epoch is not None:
            self.epoch, self.version = epoch, 0
            await self.redis.delete(n.view_log)
        self.version += 1
        event = ViewResetEvent(
            source="node-registry",
            seq=self.version,
            time=time.time(),
            payload=ViewReset(epoch=self.epoch, version=self.version),
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(n.view_clusters, n.view_nodes)
            for c in clusters or []:
                pipe.hset(n.view_clusters, c.id, codec.encode(c))
            for nd in nodes or []:
                pipe.hset(n.view_nodes, nd.id, codec.encode(nd))
            pipe.hset(
                n.view_meta, mapping={"epoch": self.epoch, "version": self.version, "source": "d", "seq": 0}
            )
            self.sent[self.version] = codec.encode(event)
            pipe.xadd(n.view_log, {"data": self.sent[self.version]}, id=f"{self.version}-0")
            pipe.publish(n.view_events, codec.encode(event))
            await pipe.execute()

    async def change(
        self,
        kind: str,
        change: str,
        rid: str,
        record: ClusterInfo | NodeInfo | None,
        *,
        changed: dict[str, FieldChange] | None = None,
        publish: bool = True,
    ) -> int:
        n = self.names
        self.version += 1
        event = ViewChangedEvent(
            source="node-registry",
            seq=self.version,
            time=time.time(),
            payload=DELTA.validate_python({
                "epoch": self.epoch,
                "version": self.version,
                "type": "node-changed" if kind == "node" else f"cluster-{change}",
                "change": change,
                "id": rid,
                kind: record,
                "changed": changed or {},
            }),
        )
        target = n.view_clusters if kind == "cluster" else n.view_nodes
        async with self.redis.pipeline(transaction=True) as pipe:
            if record is None:
                pipe.hdel(target, rid)
            else:
                pipe.hset(target, rid, codec.encode(record))
            pipe.hset(
                n.view_meta,
                mapping={"epoch": self.epoch, "version": self.version, "source": "d", "seq": self.version},
            )
            self.sent[self.version] = codec.encode(event)
            pipe.xadd(n.view_log, {"data": self.sent[self.version]}, id=f"{self.version}-0")
            if publish:
                pipe.publish(n.view_events, codec.encode(event))
            await pipe.execute()
        return self.version

    async def republish(self, version: int) -> None:
        """Publish an already written version again (a late or duplicated delivery)."""
        await self.redis.publish(self.names.view_events, self.sent[version])

    async def found(self, c: ClusterInfo, **kw: Any) -> int:
        return await self.change("cluster", "found", c.id, c, **kw)

    async def lost(self, c: ClusterInfo, **kw: Any) -> int:
        return await self.change("cluster", "lost", c.id, c.model_copy(update={"state": "lost"}), **kw)

    async def removed(self, c: ClusterInfo, **kw: Any) -> int:
        return await self.change("cluster", "removed", c.id, None, **kw)

    async def node(self, nd: NodeInfo, change: str = "added", **kw: Any) -> int:
        return await self.change("node", change, nd.id, None if change == "removed" else nd, **kw)


async def recv(ws: aiohttp.ClientWebSocketResponse, *, deadline: float = DEADLINE) -> dict[str, Any]:
    msg = await ws.receive(timeout=deadline)
    assert msg.type == aiohttp.WSMsgType.TEXT, f"expected a text frame, got {msg.type} {msg.data!r}"
    return json.loads(msg.data)  # type: ignore[no-any-return]


async def recv_until(
    ws: aiohttp.ClientWebSocketResponse,
    pred: Callable[[dict[str, Any]], bool],
    *,
    deadline: float = DEADLINE,
    skip: tuple[str, ...] = (),
) -> tuple[dict[str, Any], list[dict]]:
    """The first message matching ``pred`` and every message before it (minus types in ``skip``)."""
    end = time.monotonic() + deadline
    seen: list[dict[str, Any]] = []
    while True:
        left = end - time.monotonic()
        if left <= 0:
            pytest.fail(f"no matching message within {deadline} s; saw types {[m.get('type') for m in seen]}")
        msg = await recv(ws, deadline=left)
        if pred(msg):
            return msg, seen
        if msg.get("type") not in skip:
            seen.append(msg)


def of_type(*types: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m.get("type") in types
