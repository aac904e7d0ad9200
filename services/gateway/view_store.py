"""Reading the merged node view the registry keeps in Redis.

A snapshot reads both hashes and the meta hash in one MULTI, so its clusters, nodes and version always
belong together. Resume reads the meta and the view log in one MULTI for the same reason.
`setup(app)` puts a `ViewStore` and the process-wide `EventHub` (see ``event_hub``) on the app.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis.asyncio as aioredis
from aiohttp import web
from pydantic import BaseModel

from castray.gateway import keys
from castray.shared import codec
from castray.shared.errors import EventDecodeError
from castray.shared.events import ClusterInfo, NodeInfo, ViewChanged, ViewChangedEvent
from castray.shared.names import Names

log = logging.getLogger(__name__)
R = TypeVar("R", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class ViewMeta:
    """Which view a reader saw: ``epoch`` changes on every rebuild, ``version`` on every change."""

    epoch: str = ""
    version: int = 0


@dataclass(slots=True)
class Snapshot:
    """The whole view at one version."""

    meta: ViewMeta
    clusters: dict[str, ClusterInfo] = field(default_factory=dict)
    nodes: dict[str, NodeInfo] = field(default_factory=dict)

    def node_list(
        self, *, cluster: str | None = None, state: str | None = None, external: bool | None = None
    ) -> list[NodeInfo]:
        """Nodes ordered by cluster then name, optionally filtered (``state`` is case-insensitive)."""
        out = [
            n for n in self.nodes.values()
            if (cluster is None or n.cluster_id == cluster)
            and (state is None or n.state == state.upper())
            and (external is None or n.external == external)
        ]
        return sorted(out, key=lambda n: (n.cluster_id, not n.is_head, n.name, n.id))

    def cluster_list(self) -> list[ClusterInfo]:
        """Clusters in the order they were first seen."""
        return sorted(self.clusters.values(), key=lambda c: (c.first_seen, c.id))

    def nodes_of(self, cluster_id: str) -> list[NodeInfo]:
        return self.node_list(cluster=cluster_id)


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def parse_meta(raw: dict[Any, Any] | None) -> ViewMeta:
    """The meta hash as a `ViewMeta`; an absent or garbled one is the empty view (version 0)."""
    fields = {_text(k): _text(v) for k, v in (raw or {}).items()}
    try:
        version = int(fields.get("version", "0") or 0)
    except ValueError:
        log.warning("view meta has a bad version %r", fields.get("version"))
        version = 0
    return ViewMeta(epoch=fields.get("epoch", ""), version=version)


def _records(raw: dict[Any, Any] | None, cls: type[R]) -> dict[str, R]:
    out: dict[str, R] = {}
    for key, value in (raw or {}).items():
        try:
            out[_text(key)] = codec.decode_model(value, cls)
        except EventDecodeError as e:
            log.warning("skipping bad %s record %r: %s", cls.__name__, _text(key), e)
    return out


class ViewStore:
    """Reads the view; never writes it (the registry owns it)."""

    def __init__(self, redis: aioredis.Redis, names: Names) -> None:
        self.redis = redis
        self.names = names

    async def snapshot(self) -> Snapshot:
        """Clusters, nodes and meta read in one transaction."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.names.view_clusters)
            pipe.hgetall(self.names.view_nodes)
            pipe.hgetall(self.names.view_meta)
            clusters, nodes, meta = await pipe.execute()
        return Snapshot(parse_meta(meta), _records(clusters, ClusterInfo), _records(nodes, NodeInfo))

    async def meta(self) -> ViewMeta:
        return parse_meta(await self.redis.hgetall(self.names.view_meta))

    async def node(self, node_id: str) -> NodeInfo | None:
        raw = await self.redis.hget(self.names.view_nodes, node_id)
        return None if raw is None else next(iter(_records({node_id: raw}, NodeInfo).values()), None)

    async def replay(
        self, epoch: str, since: int, *, limit: int
    ) -> tuple[ViewMeta, list[ViewChanged]] | None:
        """Every delta after ``since`` in ``epoch``, or None when they cannot all be replayed.

        They cannot when the epoch changed, the log was trimmed past ``since + 1``, more than ``limit``
        are missing, or the log and meta disagree; the caller then sends a snapshot instead.
        """
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.names.view_meta)
            pipe.xrange(self.names.view_log, min=f"{since + 1}-0", max="+", count=limit + 1)
            raw_meta, entries = await pipe.execute()
        meta = parse_meta(raw_meta)
        if not epoch or meta.epoch != epoch or since < 0 or since > meta.version:
            return None
        if meta.version - since > limit:
            return None
        deltas = list(_decode_log(entries))
        expected = list(range(since + 1, meta.version + 1))
        if [d.version for d in deltas[: len(expected)]] != expected or any(d.epoch != epoch for d in deltas):
            return None
        return meta, deltas[: len(expected)]


def _decode_log(entries: Iterable[tuple[Any, dict[Any, Any]]]) -> Iterable[ViewChanged]:
    for entry_id, fields in entries:
        data = fields.get(b"data") or fields.get("data")
        try:
            event = codec.decode(data or b"")
        except EventDecodeError as e:
            log.warning("bad view log entry %s: %s", _text(entry_id), e)
            return  # a hole: stop here, so the caller sees the versions do not line up
        if not isinstance(event, ViewChangedEvent):
            return  # a view-reset (the registry rebuilt the view): only a snapshot will do
        yield event.payload


async def _hub_ctx(app: web.Application) -> AsyncIterator[None]:
    from castray.gateway.event_hub import EventHub

    settings = app[keys.SETTINGS]
    store = ViewStore(app[keys.REDIS], app[keys.NAMES])
    app[keys.VIEW] = store
    hub = EventHub(app[keys.BUS], store, status_interval=settings.status_interval)
    app[keys.HUB] = hub
    await hub.start()
    yield
    await hub.close()


def setup(app: web.Application) -> None:
    """Open the view store and start the shared event listener with the app (after Redis)."""
    app.cleanup_ctx.append(_hub_ctx)
