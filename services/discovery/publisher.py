"""Discovery's state in memory and in Redis, changed only together with the event that announces it.

Every change is one MULTI/EXEC: HSET/HDEL of the record, HSET of ``discovery_meta`` {source, seq} and the
PUBLISH of the event. A lock keeps Redis order equal to sequence order. While Redis is away the state
keeps changing in memory only; when it is back (or when the meta hash no longer holds our last seq,
e.g. Redis restarted empty) the whole state is rewritten with a ``source-reset`` in one transaction.

With a `Lease` (one discovery replica leads, others stand by), each transaction first WATCHes the lease and
checks that we still hold it: a replica that lost it (paused longer than the lease, say) writes nothing,
even before its lease keeper notices.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from castray.discovery.errors import NotLeading
from castray.shared import codec
from castray.shared.bus import REDIS_ERRORS, Backoff, Bus
from castray.shared.events import (
    ClusterFound,
    ClusterInfo,
    ClusterLost,
    ClusterRemoved,
    FieldChange,
    NodeChange,
    NodeChanged,
    NodeInfo,
    Payload,
    SourceReset,
)
from castray.shared.lease import Lease

log = logging.getLogger(__name__)


@dataclass
class DiscoveryState:
    clusters: dict[str, ClusterInfo] = field(default_factory=dict)
    nodes: dict[str, NodeInfo] = field(default_factory=dict)

    def nodes_of(self, cid: str) -> list[NodeInfo]:
        return [n for n in self.nodes.values() if n.cluster_id == cid]


class StatePublisher:
    """Applies changes to `DiscoveryState` and writes them, with their event, to Redis."""

    def __init__(self, redis: aioredis.Redis, bus: Bus, *, check_interval: float = 1.0,
                 lease: Lease | None = None) -> None:
        self.redis = redis
        self.lease = lease
        self.bus = bus
        self.names = bus.names
        self.state = DiscoveryState()
        self.check_interval = check_interval
        self.last_seq = 0
        self.resets = 0
        self._dirty = True  # nothing written yet: the first write is a full reset
        self._wake = asyncio.Event()
        self._written = asyncio.Event()  # set once the first reset is in Redis
        self._lock = asyncio.Lock()

    # --- changes ----------------------------------------------------------------------------------
    async def cluster_event(self, cluster: ClusterInfo, kind: str = "found", reason: str = "") -> None:
        """cluster-found (also an upsert of a known cluster) or cluster-lost, with the record stored."""
        self.state.clusters[cluster.id] = cluster
        payload: Payload = (
            ClusterFound(cluster=cluster) if kind == "found" else ClusterLost(cluster=cluster, reason=reason)
        )
        await self._write(
            payload, hset=(self.names.discovery_clusters, cluster.id, codec.encode(cluster))
        )

    async def cluster_removed(self, cluster: ClusterInfo, reason: str) -> None:
        self.state.clusters.pop(cluster.id, None)
        await self._write(
            ClusterRemoved(cluster=cluster, reason=reason), hdel=(self.names.discovery_clusters, cluster.id)
        )

    async def node_event(
        self, node: NodeInfo, change: NodeChange, changed: dict[str, FieldChange] | None = None
    ) -> None:
        payload = NodeChanged(change=change, node=node, changed=changed or {})
        if change == "removed":
            self.state.nodes.pop(node.id, None)
            await self._write(payload, hdel=(self.names.discovery_nodes, node.id))
        else:
            self.state.nodes[node.id] = node
            await self._write(payload, hset=(self.names.discovery_nodes, node.id, codec.encode(node)))

    def touch_node(self, node: NodeInfo) -> None:
        """Keep a newer last_seen in memory without an event (no change worth publishing)."""
        self.state.nodes[node.id] = node

    # --- clusters disconnected on request: outside the state, so no reset ever deletes them ---------
    async def remember_disconnected(self, cluster: ClusterInfo) -> None:
        """Store that the user disconnected ``cluster`` (best effort: it stays ignored in memory)."""
        record = {
            "id": cluster.id,
            "name": cluster.name,
            "dashboard_url": cluster.dashboard_url,
            "session_name": cluster.session_name,
            "addresses": cluster.addresses,
        }
        try:
            await self.redis.hset(self.names.discovery_disconnected, cluster.id, codec.pack(record))
        except REDIS_ERRORS as e:
            log.warning("could not store that cluster %s was disconnected: %s", cluster.id, e)

    async def forget_disconnected(self, cid: str) -> None:
        """An explicit discover/connect brought ``cid`` back: later runs may find it again."""
        try:
            await self.redis.hdel(self.names.discovery_disconnected, cid)
        except REDIS_ERRORS as e:
            log.warning("could not clear the disconnected mark of cluster %s: %s", cid, e)

    async def disconnected_before(self) -> set[str]:
        """Ids of the clusters disconnected by a previous run (read on start, before the first pass)."""
        try:
            stored: list[bytes | str] = await self.redis.hkeys(self.names.discovery_disconnected)
        except REDIS_ERRORS as e:
            log.warning("could not read the clusters disconnected before the restart: %s", e)
            return set()
        return {k.decode() if isinstance(k, bytes) else k for k in stored}

    async def _write(
        self,
        payload: Payload,
        *,
        hset: tuple[str, str, bytes] | None = None,
        hdel: tuple[str, str] | None = None,
    ) -> None:
        async with self._lock:
            if self._dirty:
                return  # the coming reset writes the state this change is part of
            event = self.bus.make(payload)

            def queue(pipe: Any) -> None:
                if hset is not None:
                    pipe.hset(hset[0], hset[1], hset[2])
                if hdel is not None:
                    pipe.hdel(hdel[0], hdel[1])
                pipe.hset(self.names.discovery_meta, mapping={"source": self.bus.source, "seq": event.seq})
                pipe.publish(self.names.discovery_events, codec.encode(event))

            try:
                await self._transaction(queue)
                self.last_seq = event.seq
            except NotLeading:
                self._mark_dirty()  # written by the next leader's reset, or by ours if we lead again
            except REDIS_ERRORS as e:
                log.warning("writing %s to Redis failed (%s); will rewrite the state", event.type, e)
                self._mark_dirty()

    async def _transaction(self, queue: Callable[[Any], None]) -> None:
        """Run the commands ``queue`` adds to a pipeline as one MULTI/EXEC; with a lease, only while we
        hold it (raises `NotLeading`)."""
        for _ in range(3):
            async with self.redis.pipeline(transaction=True) as pipe:
                if self.lease is not None:
                    if not await self.lease.fence(pipe):
                        raise NotLeading("another discovery replica holds the lease")
                    pipe.multi()  # type: ignore[no-untyped-call]
                queue(pipe)
                try:
                    await pipe.execute()
                    return
                except WatchError:
                    continue  # the lease was touched meanwhile (our own renewal, maybe): check again
        raise NotLeading("the discovery lease kept changing")

    # --- whole-state rewrite ----------------------------------------------------------------------
    def _mark_dirty(self) -> None:
        self._dirty = True
        self._wake.set()

    async def reset(self) -> None:
        """DEL the three keys, write every record and meta, and publish source-reset: one transaction."""
        async with self._lock:
            event = self.bus.make(SourceReset())
            n = self.names

            def queue(pipe: Any) -> None:
                pipe.delete(n.discovery_clusters, n.discovery_nodes, n.discovery_meta)
                if self.state.clusters:
                    pipe.hset(
                        n.discovery_clusters,
                        mapping={cid: codec.encode(c) for cid, c in self.state.clusters.items()},
                    )
                if self.state.nodes:
                    pipe.hset(
                        n.discovery_nodes,
                        mapping={nid: codec.encode(node) for nid, node in self.state.nodes.items()},
                    )
                pipe.hset(n.discovery_meta, mapping={"source": self.bus.source, "seq": event.seq})
                pipe.publish(n.discovery_events, codec.encode(event))

            await self._transaction(queue)
            self.last_seq = event.seq
            self._dirty = False
            self.resets += 1
            self._written.set()
        log.info(
            "discovery state written: %d clusters, %d nodes (seq %d)",
            len(self.state.clusters),
            len(self.state.nodes),
            event.seq,
        )

    async def _state_intact(self) -> bool:
        async with self._lock:
            if self._dirty:
                return False
            raw_source, seq = await self.redis.hmget(self.names.discovery_meta, ["source", "seq"])
        source = raw_source.decode() if isinstance(raw_source, bytes) else raw_source
        if source is not None and source != self.bus.source:
            # Written by the replica that led before us (or, without a lease, by another discovery).
            log.info("discovery state in %s was written by %s; rewriting it", self.names.ns, source)
            return False
        return source is not None and int(seq or 0) == self.last_seq

    async def keep(self) -> None:
        """For ever: rewrite the state on start, after Redis failures, and when Redis lost it."""
        backoff = Backoff(first=0.1, cap=2.0)
        while True:
            try:
                if not await self._state_intact():
                    await self.reset()
                backoff.reset()
            except NotLeading as e:  # our term is ending (the lease keeper will see it): write nothing
                log.info("not writing discovery's state: %s", e)
                self._dirty = True
                await backoff.wait()
                continue
            except REDIS_ERRORS as e:
                log.warning("Redis unavailable for discovery state (%s); retrying", e)
                self._dirty = True
                await backoff.wait()
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.check_interval)
            except TimeoutError:
                pass

    async def ready(self, timeout: float = 10.0) -> None:
        """Wait until the first reset is written (tests, start-up)."""
        async with asyncio.timeout(timeout):
            await self._written.wait()
