"""The merged node view in Redis: apply discovery's events to it, rebuild it, read it.

Layout (all under the namespace; see `Names`): ``view_clusters`` and ``view_nodes`` hold
``codec.encode_model`` of each `ClusterInfo` / `NodeInfo` by id; ``view_meta`` holds ``epoch``,
``version``, ``source`` and ``seq`` (the last discovery event the view includes); ``view_log`` is a
capped stream with one entry per version (id ``<version>-0``, field ``data``); every change is also
published on ``view_events``. Both writers are Lua scripts (`scripts`), so replicas cannot collide.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis
from castray.node_registry import scripts
from castray.node_registry.scripts import EPOCH_PLACEHOLDER, INT_PLACEHOLDER, Template
from castray.shared import codec
from castray.shared.events import (
    ClusterFoundEvent,
    ClusterInfo,
    ClusterLostEvent,
    ClusterRemovedEvent,
    Event,
    NodeChangedEvent,
    NodeInfo,
    ViewChanged,
    ViewChangedEvent,
    ViewReset,
    ViewResetEvent,
)
from castray.shared.names import Names

# Envelope source of view-changed / view-reset; their envelope seq is the view version, so the log,
# the channel and the envelope agree on one gap-free sequence per epoch whichever replica wrote it.
VIEW_SOURCE = "node-registry"

ApplyOutcome = Literal["applied", "duplicate", "resync", "ignored"]
ResyncOutcome = Literal["unchanged", "rebuilt", "created"]


@dataclass(frozen=True, slots=True)
class ApplyResult:
    outcome: ApplyOutcome
    version: int | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ResyncResult:
    outcome: ResyncOutcome
    version: int
    epoch: str
    source: str
    seq: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The view as one consistent read: meta plus every record."""

    epoch: str | None
    version: int
    source: str
    seq: int
    clusters: dict[str, ClusterInfo]
    nodes: dict[str, NodeInfo]


@dataclass(frozen=True, slots=True)
class _Change:
    """What one discovery event does to the view."""

    kind: Literal["cluster", "node"]
    change: str
    id: str
    record: ClusterInfo | NodeInfo | None
    changed: dict[str, Any]


def new_epoch() -> str:
    return uuid.uuid4().hex[:16]


def change_of(event: Event) -> _Change | None:
    """The view change a discovery event stands for (None: not a change of the view)."""
    if isinstance(event, ClusterFoundEvent | ClusterLostEvent | ClusterRemovedEvent):
        change = event.type.removeprefix("cluster-")
        cluster = event.payload.cluster
        return _Change("cluster", change, cluster.id, None if change == "removed" else cluster, {})
    if isinstance(event, NodeChangedEvent):
        p = event.payload
        return _Change("node", p.change, p.node.id, None if p.change == "removed" else p.node,
                       {k: v.model_dump(mode="json") for k, v in p.changed.items()})
    return None


class MergedView:
    """The view's writer and reader over one Redis client."""

    def __init__(self, redis: aioredis.Redis, names: Names, *, log_maxlen: int = 10_000) -> None:
        self.redis = redis
        self.names = names
        self.log_maxlen = log_maxlen
        self._apply = redis.register_script(scripts.APPLY)
        self._resync = redis.register_script(scripts.RESYNC)

    async def apply(self, event: Event) -> ApplyResult:
        """Apply one discovery event in one script call; a duplicate is a no-op, a gap asks for resync."""
        change = change_of(event)
        if change is None:
            return ApplyResult("ignored")
        n = self.names
        target = n.view_clusters if change.kind == "cluster" else n.view_nodes
        record = b"" if change.record is None else codec.encode_model(change.record)
        tpl = Template.of(ViewChangedEvent(
            source=VIEW_SOURCE, seq=INT_PLACEHOLDER, time=time.time(),
            payload=ViewChanged(
                epoch=EPOCH_PLACEHOLDER, version=INT_PLACEHOLDER, kind=change.kind, change=change.change,
                id=change.id, record=None if change.record is None else change.record.model_dump(mode="json"),
                changed=change.changed,
            ),
        ))
        out = await self._apply(
            keys=[n.view_meta, target, n.view_log],
            args=[event.source, event.seq, change.id, record, *tpl.args(), self.log_maxlen, n.view_events],
        )
        status = _text(out[0])
        if status == "resync":
            return ApplyResult("resync", reason=_text(out[1]))
        return ApplyResult("applied" if status == "applied" else "duplicate", version=int(out[1]))

    async def resync(self) -> ResyncResult:
        """Make the view equal to discovery's state, atomically; clients are told only if it changed."""
        n = self.names
        tpl = Template.of(ViewResetEvent(
            source=VIEW_SOURCE, seq=INT_PLACEHOLDER, time=time.time(),
            payload=ViewReset(epoch=EPOCH_PLACEHOLDER, version=INT_PLACEHOLDER),
        ))
        out = await self._resync(
            keys=[n.view_meta, n.view_clusters, n.view_nodes, n.view_log,
                  n.discovery_meta, n.discovery_clusters, n.discovery_nodes],
            args=[new_epoch(), *tpl.args(), self.log_maxlen, n.view_events],
        )
        return ResyncResult(_text(out[0]), int(out[1]), _text(out[2]), _text(out[3]),  # type: ignore[arg-type]
                            int(out[4]))


async def read_snapshot(redis: aioredis.Redis, names: Names) -> Snapshot:
    """The whole view in one MULTI, so records and version always belong together."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hgetall(names.view_meta)
        pipe.hgetall(names.view_clusters)
        pipe.hgetall(names.view_nodes)
        meta, clusters, nodes = await pipe.execute()
    return Snapshot(
        epoch=_text(meta[b"epoch"]) if b"epoch" in meta else None,
        version=int(meta.get(b"version", 0)),
        source=_text(meta.get(b"source", b"")),
        seq=int(meta.get(b"seq", 0)),
        clusters={_text(k): codec.decode_model(v, ClusterInfo) for k, v in clusters.items()},
        nodes={_text(k): codec.decode_model(v, NodeInfo) for k, v in nodes.items()},
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
