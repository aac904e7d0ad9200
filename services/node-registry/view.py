"""The merged node view in Redis, written: apply discovery's events to it, rebuild it.

The layout, and why a view-changed event forwards the discovery event it applied, are in
`castray.shared.view`, which also holds the one reader. Both writers here are Lua scripts (`scripts`),
so replicas cannot collide.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from castray.node_registry import scripts
from castray.node_registry.scripts import EPOCH_BYTES, EPOCH_PLACEHOLDER, INT_BYTES, INT_PLACEHOLDER, Template
from castray.shared import codec
from castray.shared.events import (
    ClusterFoundEvent,
    ClusterInfo,
    ClusterLostEvent,
    ClusterRemovedEvent,
    Event,
    NodeChangedEvent,
    NodeInfo,
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
class ViewChange:
    """What one discovery event does to the view: the delta's fields (`castray.shared.events.ViewDelta`)
    but the view's epoch and version, which only the script knows."""

    type: Literal["node-changed", "cluster-found", "cluster-lost", "cluster-removed"]
    change: str
    id: str
    record: ClusterInfo | NodeInfo | None
    changed: dict[str, Any]

    @property
    def kind(self) -> Literal["cluster", "node"]:
        return "node" if self.type == "node-changed" else "cluster"


def view_changed_template(change: ViewChange, record: dict[str, Any] | None) -> tuple[bytes, int, int, int]:
    """``codec.encode`` of the view-changed event for ``change``, with placeholders, and their offsets.

    Built as plain data in the models' field order (the same bytes the models give, tested), because
    this runs for every event and pydantic would triple its cost.
    """
    head = codec.pack({"source": VIEW_SOURCE, "seq": INT_PLACEHOLDER, "time": time.time(),
                       "type": "view-changed"})
    payload = codec.pack({"epoch": EPOCH_PLACEHOLDER, "version": INT_PLACEHOLDER, "type": change.type,
                          "change": change.change, "id": change.id, change.kind: record,
                          "changed": change.changed})
    # A 5-entry map: the 4 head entries (re-headed) plus "payload"; offsets are fixed by construction.
    data = b"\x85" + head[1:] + codec.pack("payload") + payload
    seq_at = data.index(INT_BYTES)
    epoch_at = len(data) - len(payload) + 1 + len(codec.pack("epoch"))
    version_at = epoch_at + len(EPOCH_BYTES) + len(codec.pack("version"))
    return data, seq_at, epoch_at, version_at


def _apply_result(reply: Any) -> ApplyResult:
    status = codec.as_text(reply[0])
    if status == "resync":
        return ApplyResult("resync", reason=str(codec.as_text(reply[1])))
    return ApplyResult("applied" if status == "applied" else "duplicate", version=int(reply[1]))


def new_epoch() -> str:
    return uuid.uuid4().hex[:16]


def change_of(event: Event) -> ViewChange | None:
    """The view change a discovery event stands for (None: not a change of the view)."""
    if isinstance(event, ClusterFoundEvent | ClusterLostEvent | ClusterRemovedEvent):
        change = event.type.removeprefix("cluster-")
        cluster = event.payload.cluster
        return ViewChange(event.type, change, cluster.id, None if change == "removed" else cluster, {})
    if isinstance(event, NodeChangedEvent):
        p = event.payload
        return ViewChange(event.type, p.change, p.node.id, None if p.change == "removed" else p.node,
                          {k: v.model_dump(mode="json") for k, v in p.changed.items()})
    return None


class MergedView:
    """The view's writer over one Redis client (its one reader is `castray.shared.view.ViewReader`)."""

    def __init__(self, redis: aioredis.Redis, names: Names, *, log_maxlen: int = 10_000) -> None:
        self.redis = redis
        self.names = names
        self.log_maxlen = log_maxlen
        self._apply = redis.register_script(scripts.APPLY)
        self._resync = redis.register_script(scripts.RESYNC)

    async def apply(self, event: Event) -> ApplyResult:
        """Apply one discovery event in one script call; a duplicate is a no-op, a gap asks for resync."""
        [result] = await self.apply_many([event])
        return result

    async def apply_many(self, events: list[Event]) -> list[ApplyResult]:
        """Apply events in order, one script call each, all sent in one round trip.

        Each call checks its own seq, so batching changes nothing but speed: after a call that asks for
        a resync, the rest of the batch can only be refused too (gaps) or skipped (duplicates).
        """
        changes = [change_of(event) for event in events]
        args = [self._apply_args(e, c) for e, c in zip(events, changes, strict=True) if c is not None]
        replies = iter(await self._run_apply(args) if args else [])
        return [ApplyResult("ignored") if c is None else _apply_result(next(replies)) for c in changes]

    def _apply_args(self, event: Event, change: ViewChange) -> list[Any]:
        n = self.names
        target = n.view_clusters if change.kind == "cluster" else n.view_nodes
        record = None if change.record is None else change.record.model_dump(mode="json")
        tpl = Template(*view_changed_template(change, record))
        return [3, n.view_meta, target, n.view_log,
                event.source, event.seq, change.id, b"" if record is None else codec.pack(record),
                *tpl.args(), self.log_maxlen, n.view_events]

    async def _run_apply(self, args: list[list[Any]]) -> list[Any]:
        # Plain EVALSHA (redis-py's script objects would add a SCRIPT EXISTS round trip to a pipeline).
        for attempt in (1, 2):
            replies = await self._send_apply(args)
            if not any(isinstance(r, NoScriptError) for r in replies) or attempt == 2:
                break
            # Redis restarted (scripts are not kept): load and send all again; what ran is now a duplicate.
            await self.redis.script_load(scripts.APPLY)
        for r in replies:
            if isinstance(r, Exception):
                raise r
        return replies

    async def _send_apply(self, args: list[list[Any]]) -> list[Any]:
        if len(args) == 1:  # the usual case when keeping up; a pipeline would only add overhead
            try:
                return [await self.redis.evalsha(self._apply.sha, *args[0])]
            except NoScriptError as e:
                return [e]
        async with self.redis.pipeline(transaction=False) as pipe:
            for a in args:
                pipe.evalsha(self._apply.sha, *a)
            return list(await pipe.execute(raise_on_error=False))

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
        outcome, _, epoch, source, _ = (str(codec.as_text(v)) for v in out)
        return ResyncResult(outcome, int(out[1]), epoch, source, int(out[4]))  # type: ignore[arg-type]
