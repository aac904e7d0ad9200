"""The merged node view in Redis, read: the one reader every process uses, and its `Snapshot`.

The node registry writes the view (``castray.node_registry.view``, with Lua scripts so replicas cannot
collide); everyone else only reads it through `ViewReader`: the gateway (REST, ``/ws``, transfer
requests), the transfer service (planning) and the tests. Layout, all names from `Names`:

- ``view_clusters`` / ``view_nodes``: hash id -> ``codec.encode`` of a `ClusterInfo` / `NodeInfo`.
- ``view_meta``: hash ``epoch`` (16 hex chars; new only when the view is built from nothing, e.g. Redis
  lost its data), ``version`` (+1 per change, and +1 per rebuild), ``source`` and ``seq`` (the last
  discovery event the view includes).
- ``view_log``: stream, one entry per version, id ``<version>-0``, field ``data``: ``codec.encode`` of a
  view-changed event, or of a view-reset at a version where the view was rebuilt (a replay stops there:
  take a snapshot). Capped (MAXLEN ~ ``CASTRAY_LOG_MAXLEN``); deleted when the epoch changes.
- ``view_events``: the same events, published. Their envelope ``source`` is ``"node-registry"`` and
  ``seq`` the payload's ``version``, whichever registry replica wrote them.

Discovery's event types are forwarded, not folded. A view-changed event carries what the discovery event
it applied said of the view: its ``type`` (cluster-found, cluster-lost, cluster-removed, node-changed),
``change``, the record under discovery's own key (``cluster`` or ``node``; none once removed) and a node's
``changed`` fields, plus the record's ``id`` and the view's ``epoch`` and ``version``
(`castray.shared.events.ViewDelta`; a lost cluster's ``reason`` is not kept, its record's ``error`` says
it). Why: these type names and keys are what ``/ws`` clients (our page, scripts, the tests) read, so the
gateway sends a delta as it is. Folding them into a kind and a change, as the view once did, made the
gateway unfold them again: one thing in two shapes, converted back and forth. The envelope stays one
type, view-changed, because the view is one numbered sequence: one log, one channel and one gap check per
epoch, whatever changed.

Every read is one MULTI where several keys must agree (a snapshot's records and version, a replay's meta
and log). An unreadable record is left out with a warning rather than failing every read of the view.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis.asyncio as aioredis
from pydantic import BaseModel

from castray.shared import codec
from castray.shared.errors import EventDecodeError
from castray.shared.events import ClusterInfo, NodeInfo, ViewChanged, ViewChangedEvent
from castray.shared.names import Names

log = logging.getLogger(__name__)
R = TypeVar("R", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class ViewMeta:
    """Which view a reader saw: ``epoch`` changes on every rebuild, ``version`` on every change;
    ``source`` and ``seq`` name the last discovery event it includes."""

    epoch: str = ""
    version: int = 0
    source: str = ""
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The whole view at one version."""

    meta: ViewMeta
    clusters: dict[str, ClusterInfo] = field(default_factory=dict)
    nodes: dict[str, NodeInfo] = field(default_factory=dict)

    @property
    def epoch(self) -> str:
        return self.meta.epoch

    @property
    def version(self) -> int:
        return self.meta.version

    @property
    def seq(self) -> int:
        return self.meta.seq

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
        return sorted(out, key=node_order)

    def cluster_list(self) -> list[ClusterInfo]:
        """Clusters in the order they were first seen."""
        return sorted(self.clusters.values(), key=lambda c: (c.first_seen, c.id))

    def nodes_of(self, cluster_id: str) -> list[NodeInfo]:
        return self.node_list(cluster=cluster_id)


def node_order(n: NodeInfo) -> tuple[str, bool, str, str]:
    """The order nodes are listed in: by cluster, its head first, then by name (and id, to break ties)."""
    return (n.cluster_id, not n.is_head, n.name, n.id)


def _int(fields: dict[str, str], name: str) -> int:
    try:
        return int(fields.get(name) or 0)
    except ValueError:
        log.warning("view meta has a bad %s %r", name, fields.get(name))
        return 0


def parse_meta(raw: dict[Any, Any] | None) -> ViewMeta:
    """The meta hash as a `ViewMeta`; an absent or garbled one is the empty view (version 0)."""
    fields = {str(codec.as_text(k)): str(codec.as_text(v)) for k, v in (raw or {}).items()}
    return ViewMeta(epoch=fields.get("epoch", ""), version=_int(fields, "version"),
                    source=fields.get("source", ""), seq=_int(fields, "seq"))


def _decoded(key: bytes | str, raw: bytes | str, cls: type[R]) -> R | None:
    try:
        return codec.decode_model(raw, cls)
    except EventDecodeError as e:
        log.warning("skipping bad %s record %r: %s", cls.__name__, codec.as_text(key), e)
        return None


def _records(raw: dict[Any, Any] | None, cls: type[R]) -> dict[str, R]:
    decoded = ((str(codec.as_text(k)), _decoded(k, v, cls)) for k, v in (raw or {}).items())
    return {k: record for k, record in decoded if record is not None}


class ViewReader:
    """Reads the view; never writes it (the registry owns it)."""

    def __init__(self, redis: aioredis.Redis, names: Names) -> None:
        self.redis = redis
        self.names = names

    async def snapshot(self) -> Snapshot:
        """Clusters, nodes and meta read in one transaction, so records and version belong together."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.names.view_meta)
            pipe.hgetall(self.names.view_clusters)
            pipe.hgetall(self.names.view_nodes)
            meta, clusters, nodes = await pipe.execute()
        return Snapshot(parse_meta(meta), _records(clusters, ClusterInfo), _records(nodes, NodeInfo))

    async def meta(self) -> ViewMeta:
        return parse_meta(await self.redis.hgetall(self.names.view_meta))

    async def nodes(self, ids: list[str] | None = None) -> dict[str, NodeInfo]:
        """The view's nodes by id: all of them, or those among ``ids`` (missing ones are absent)."""
        if ids is None:
            return _records(await self.redis.hgetall(self.names.view_nodes), NodeInfo)
        if not ids:
            return {}
        values = await self.redis.hmget(self.names.view_nodes, ids)
        return _records({k: v for k, v in zip(ids, values, strict=True) if v is not None}, NodeInfo)

    async def node(self, node_id: str) -> NodeInfo | None:
        return (await self.nodes([node_id])).get(node_id)

    async def cluster(self, cluster_id: str) -> ClusterInfo | None:
        raw = await self.redis.hget(self.names.view_clusters, cluster_id)
        return None if raw is None else _decoded(cluster_id, raw, ClusterInfo)

    async def replay(
        self, epoch: str, since: int, *, limit: int
    ) -> tuple[ViewMeta, list[ViewChanged]] | None:
        """Every delta after ``since`` in ``epoch``, or None when they cannot all be replayed.

        They cannot when the epoch changed, the log was trimmed past ``since + 1``, more than ``limit``
        are missing, or the log and meta disagree; the caller then takes a snapshot instead.
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


def _decode_log(entries: Iterable[tuple[Any, dict[Any, Any]]]) -> Iterator[ViewChanged]:
    for entry_id, fields in entries:
        data = fields.get(b"data") or fields.get("data")
        try:
            event = codec.decode(data or b"")
        except EventDecodeError as e:
            log.warning("bad view log entry %s: %s", codec.as_text(entry_id), e)
            return  # a hole: stop here, so the caller sees the versions do not line up
        if not isinstance(event, ViewChangedEvent):
            return  # a view-reset (the registry rebuilt the view): only a snapshot will do
        yield event.payload
