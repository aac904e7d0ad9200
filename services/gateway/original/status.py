"""The original CastRay's status surface: ``GET /api/status``, the WebSocket ``status_update`` and the
per-node transfer counts of ``GET /api/file-transfers/status``, built from our view and transfer records.

Decisions, each where the original's meaning and ours differ:

- ``status_update`` goes to the clients of the ``status`` topic. A client that names no topics (the
  original's page connects to a bare ``/ws``) has every topic; our own page names its topics and so does
  not pay for a whole-view message it never reads. It is sent at once on connect (after the snapshot),
  pushed on change (at most once per ``status_interval``) and every ``STATUS_IDLE_INTERVAL`` seconds (5,
  as the original) on an idle connection. It is built and encoded once per view version and statistics
  change (`StatusCache`), and every client is sent the same bytes.
- ``ray_cluster.available_resources``: the view holds each node's total resources only (Ray's node list
  has no usage), so it is the sum over ALIVE nodes of those totals, and ``available_resources_known`` is
  false to say so.
- Memory: Ray counts ``memory`` and ``object_store_memory`` in bytes; the original page multiplies them by
  1024² to get bytes, so in ``ray_cluster`` they are in MiB, said by ``memory_unit: "MiB"``. Each node's
  ``resources`` (and our own ``/api/nodes``, ``/api/clusters``) keep Ray's bytes.
- Transfer counters (``file_transfer_stats``, ``active_transfers``, and the node card's ``sent_count`` and
  ``received_count``) are counted from the newest `STATS_WINDOW` transfer records of the transfer index,
  not from per-node counters: every way of starting a transfer writes a record, and no second store can
  drift from it. A gateway recounts them when a transfer starts or ends (its hub sees the event), and
  otherwise once its counts are `STATS_MAX_AGE` seconds old. ``sent_count`` counts the transfers a node sent,
  ``received_count`` the copies it received whole (the original counted UDP messages there; its page's
  node card is what reads them).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from castray.gateway import summaries
from castray.gateway import transfer_store as store
from castray.gateway.view_cache import EncodedView, SharedRead, ViewCache
from castray.shared.events import (
    Event,
    NodeInfo,
    TransferCancelledEvent,
    TransferCompletedEvent,
    TransferFailedEvent,
    TransferStartedEvent,
)
from castray.shared.lease import holder_of
from castray.shared.names import Names
from castray.shared.transfers import TransferRecord
from castray.shared.view import Snapshot, ViewMeta

# The original CastRay labelled Ray nodes this way in /api/status; its scripts and page read it.
RAY_NODE_TYPE = "Ray节点"
STATUS_TOPIC = "status"
STATS_WINDOW = 1000  # newest transfer records counted in the statistics
STATS_MAX_AGE = 5.0  # seconds a gateway keeps its counts without a transfer event
STATUS_IDLE_INTERVAL = 5.0  # the original pushed status_update every 5 s
MEMORY_KEYS = ("memory", "object_store_memory")
MIB = 1024 * 1024
ACTIVE = ("queued", "pending", "running")



def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


# --- per-node transfer statistics -------------------------------------------------------------------
def _empty_stats() -> dict[str, Any]:
    return {"file_transfer_stats": {"total_transfers": 0, "successful_transfers": 0, "failed_transfers": 0,
                                    "bytes_transferred": 0},
            "active_transfers": 0, "auto_transfer_enabled": False, "auto_transfer_queue": 0,
            "sent_count": 0, "received_count": 0, "last_activity": 0}


def transfer_stats(node_ids: list[str], records: list[TransferRecord]) -> dict[str, dict[str, Any]]:
    """``{node_id: {file_transfer_stats, active_transfers, auto_transfer_*, sent_count, received_count,
    last_activity}}``: a node counts each copy it receives (one per destination) and each transfer it sends
    (as ``sender_id`` or ``source_node_id``); ``bytes_transferred`` counts completed copies' bytes."""
    out: dict[str, dict[str, Any]] = {node_id: _empty_stats() for node_id in node_ids}
    for rec in records:
        when = rec.finished_at or rec.started_at or rec.created_at
        for dest in rec.destinations:
            e = out.setdefault(dest.node_id, _empty_stats())
            done = dest.state == "completed"
            _count(e, dest.state, dest.bytes_done if done else 0, when)
            e["received_count"] += int(done)
        sender = rec.sender_id or rec.source_node_id
        if sender:
            e = out.setdefault(sender, _empty_stats())
            sent = sum(d.bytes_done for d in rec.destinations if d.state == "completed")
            _count(e, rec.state, sent, when)
            e["sent_count"] += 1
    return out


def _count(e: dict[str, Any], state: str, nbytes: int, when: float) -> None:
    stats = e["file_transfer_stats"]
    stats["total_transfers"] += 1
    stats["bytes_transferred"] += nbytes
    if state == "completed":
        stats["successful_transfers"] += 1
    elif state == "failed":
        stats["failed_transfers"] += 1
    elif state in ACTIVE:
        e["active_transfers"] += 1
    e["last_activity"] = max(e["last_activity"], when)


async def load_transfer_stats(redis: aioredis.Redis, names: Names) -> dict[str, dict[str, Any]]:
    """Counted from the newest `STATS_WINDOW` records (nodes with no transfer are absent)."""
    records, _ = await store.list_transfers(redis, names, limit=STATS_WINDOW, offset=0)
    return transfer_stats([], records)


def file_transfer_status(node_ids: list[str], stats: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The body of ``GET /api/file-transfers/status``: ``{node_id: {file_transfer_stats,
    active_transfers, auto_transfer_enabled, auto_transfer_queue}}`` for every node of the view."""
    keys = ("file_transfer_stats", "active_transfers", "auto_transfer_enabled", "auto_transfer_queue")
    out: dict[str, dict[str, Any]] = {}
    for node_id in [*node_ids, *(n for n in stats if n not in set(node_ids))]:
        entry = stats.get(node_id) or _empty_stats()
        out[node_id] = {k: entry[k] for k in keys}
    return out


# --- /api/status and status_update ------------------------------------------------------------------
_EMPTY_STATS = dumps(_empty_stats())[1:-1].encode()
_RAY_NODE = ("," + dumps({"node_type": RAY_NODE_TYPE, "port": "N/A"})[1:]).encode()


def node_status(node: NodeInfo, encoded: bytes, stats: dict[str, dict[str, Any]]) -> bytes:
    """One entry of ``node_statuses``: our node record (``encoded``, its JSON as the view cache keeps it)
    plus the original's fields, spliced as bytes (none of their keys is a `NodeInfo` field)."""
    entry = stats.get(node.id)
    extra = dumps(entry)[1:-1].encode() if entry else _EMPTY_STATS
    running = b"true" if node.state == "ALIVE" else b"false"
    return (encoded[:-1] + b"," + extra + b',"node_id":' + dumps(node.id).encode() + b',"is_running":'
            + running + _RAY_NODE)


def _in_mib(resources: dict[str, float]) -> dict[str, float]:
    return {k: (round(v / MIB, 2) if k in MEMORY_KEYS else v) for k, v in resources.items()}


def ray_cluster(snap: Snapshot) -> dict[str, Any]:
    """Resources of the alive nodes of every alive cluster (memory in MiB, see the module docstring)."""
    totals: Counter[str] = Counter()
    alive = [n for n in snap.nodes.values() if n.state == "ALIVE"]
    for node in alive:
        totals.update(node.resources)
    resources = _in_mib(dict(totals))
    return {"cluster_resources": resources, "available_resources": dict(resources),
            "available_resources_known": False, "memory_unit": "MiB", "nodes": len(alive),
            "clusters": len(snap.clusters),
            "alive_clusters": sum(1 for c in snap.clusters.values() if c.state == "alive")}


@dataclass(frozen=True, slots=True)
class StatusBody:
    """One built status: its view version and statistics generation, its JSON (the body of ``GET
    /api/status`` and the ``data`` of ``status_update``) encoded once, and the WebSocket ``status_update``
    around it (sent to every client as these very bytes). ``node_statuses`` lists every node, the counts
    leave DEAD ones out (``dead_nodes`` counts them)."""

    meta: ViewMeta
    generation: int
    text: bytes
    message: bytes
    node_states: list[str]  # what metrics count, without reading the view again
    cluster_states: list[str]

    @classmethod
    def build(cls, ev: EncodedView, generation: int, stats: dict[str, dict[str, Any]]) -> StatusBody:
        snap = ev.snapshot
        nodes = [snap.nodes[i] for i in ev.order]
        live = [n for n in nodes if summaries.counted(n)]
        clusters = [summaries.cluster_summary(c, snap) for c in snap.cluster_list()]
        head = dumps({"total_nodes": len(live), "active_nodes": sum(1 for n in live if n.state == "ALIVE"),
                      "dead_nodes": len(nodes) - len(live),
                      "external_nodes": sum(1 for n in live if n.external)})
        statuses = b",".join(node_status(n, ev.encoded[n.id], stats) for n in nodes)
        tail = dumps({"clusters": clusters, "ray_cluster": ray_cluster(snap),
                      "node_ports": {},  # the original's own nodes' UDP ports: CastRay has none
                      "epoch": snap.meta.epoch, "version": snap.meta.version})
        text = (head[:-1] + ',"node_statuses":[').encode() + statuses + b"]," + tail[1:].encode()
        return cls(snap.meta, generation, text, b'{"type":"status_update","data":' + text + b"}",
                   [n.state for n in nodes], [str(c.get("state", "unknown")) for c in clusters])

    def response(self, **extra: Any) -> bytes:
        """The body of ``GET /api/status``: ``success``, ``extra``, then the status."""
        return dumps({"success": True, **extra})[:-1].encode() + b"," + self.text[1:]


class StatusCache:
    """The transfer statistics and the status built from them, shared by a gateway's requests and
    WebSocket pushes: rebuilt only when the view version or the statistics change."""

    def __init__(self, redis: aioredis.Redis, names: Names, *, max_age: float = STATS_MAX_AGE) -> None:
        self.redis = redis
        self.names = names
        self.max_age = max_age
        self.generation = 0
        self.builds = 0  # statuses built (each one encoded once, whatever the number of clients)
        self._stats: dict[str, dict[str, Any]] | None = None
        self._stats_at = 0.0
        self._status: StatusBody | None = None
        self._stats_lock = asyncio.Lock()
        self.leader = SharedRead(lambda: holder_of(redis, names.discovery_leader))  # GET /api/status

    def transfers_changed(self) -> None:
        """A transfer started or ended: count again on the next read."""
        self._stats = None

    async def stats(self) -> dict[str, dict[str, Any]]:
        async with self._stats_lock:  # one recount at a time: those waiting for it find it done
            now = time.monotonic()
            if self._stats is None or now - self._stats_at >= self.max_age:
                fresh = await load_transfer_stats(self.redis, self.names)
                if fresh != self._stats:
                    self.generation += 1
                self._stats, self._stats_at = fresh, now
            return self._stats

    async def current(self, view: ViewCache) -> StatusBody:
        """The status of the view now: reused while its version and the statistics are unchanged (one
        small read of the view's meta), built from the view cache's records and node JSON otherwise."""
        stats = await self.stats()
        ev = await view.current()
        s = self._status
        if s is not None and s.generation == self.generation and s.meta == ev.meta:
            return s
        self._status = StatusBody.build(ev, self.generation, stats)
        self.builds += 1
        return self._status


def is_transfer_change(event: Event) -> bool:
    """Events that change the transfer statistics (not progress)."""
    return isinstance(event, TransferStartedEvent | TransferCompletedEvent | TransferFailedEvent
                      | TransferCancelledEvent)
