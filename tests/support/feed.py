"""A stand-in for discovery's output, for the registry's tests and ``bench/events.py``.

It writes exactly what discovery's contract says: each event is published in the same MULTI that
writes discovery's state hashes and ``discovery_meta`` {source, seq}; `reset` rewrites the whole state
and publishes ``source-reset``. ``publish=False`` writes the state but drops the message, as pub/sub
may. Test scaffolding: the service never uses it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from castray.shared import codec
from castray.shared.bus import Bus, instance_name
from castray.shared.events import (
    ClusterFound,
    ClusterInfo,
    ClusterLost,
    ClusterRemoved,
    Event,
    FieldChange,
    NodeChanged,
    NodeInfo,
    Payload,
    SourceReset,
)
from castray.shared.names import Names


class DiscoveryFeed:
    """Keeps a discovery-like state and publishes its changes the way discovery does."""

    def __init__(self, redis: aioredis.Redis, names: Names, *, source: str | None = None) -> None:
        self.redis = redis
        self.names = names
        self.bus = Bus(redis, names, source=source or instance_name("discovery"))
        self.clusters: dict[str, ClusterInfo] = {}
        self.nodes: dict[str, NodeInfo] = {}

    @property
    def source(self) -> str:
        return self.bus.source

    async def fill(self, nodes: int, clusters: int, states: tuple[str, ...] = ("ALIVE",)) -> None:
        """Rewrite the state as ``nodes`` nodes over ``clusters`` clusters (states in turn), and wait
        until the node registry has copied it into the view (a minute at most)."""
        self.clusters = {c.id: c for c in (make_cluster(i) for i in range(clusters))}
        per = nodes // clusters
        self.nodes = {n.id: n for n in (make_node(f"c{c}", i, state=states[i % len(states)])
                                        for c in range(clusters) for i in range(per))}
        await self.reset()
        end = time.monotonic() + 60
        while (await self.redis.hlen(self.names.view_nodes) != len(self.nodes)
               or await self.redis.hlen(self.names.view_clusters) != clusters):
            if time.monotonic() > end:
                raise RuntimeError("the registry did not copy discovery's state into the view within 60 s")
            await asyncio.sleep(0.05)

    async def reset(self, *, publish: bool = True) -> Event:
        """Rewrite the whole state and publish source-reset (discovery's start / Redis reconnect)."""
        event = self.bus.make(SourceReset())
        n = self.names
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(n.discovery_clusters, n.discovery_nodes)
            if self.clusters:
                pipe.hset(n.discovery_clusters, mapping=_encoded(self.clusters))
            if self.nodes:
                pipe.hset(n.discovery_nodes, mapping=_encoded(self.nodes))
            pipe.hset(n.discovery_meta, mapping={"source": event.source, "seq": event.seq})
            if publish:
                pipe.publish(n.discovery_events, codec.encode(event))
            await pipe.execute()
        return event

    async def cluster_found(self, cluster: ClusterInfo, *, publish: bool = True) -> Event:
        self.clusters[cluster.id] = cluster
        return await self._emit(ClusterFound(cluster=cluster), "cluster", cluster.id, cluster, publish)

    async def cluster_lost(self, cluster: ClusterInfo, *, publish: bool = True) -> Event:
        self.clusters[cluster.id] = cluster
        return await self._emit(ClusterLost(cluster=cluster), "cluster", cluster.id, cluster, publish)

    async def cluster_removed(self, cluster_id: str, *, publish: bool = True) -> list[Event]:
        """Each of its nodes removed first, then the cluster, as discovery does."""
        out = [await self.node_removed(node_id, publish=publish)
               for node_id, node in list(self.nodes.items()) if node.cluster_id == cluster_id]
        cluster = self.clusters.pop(cluster_id)
        out.append(await self._emit(ClusterRemoved(cluster=cluster), "cluster", cluster_id, None, publish))
        return out

    async def node_upsert(
        self, node: NodeInfo, *, publish: bool = True, on_send: Callable[[], None] | None = None
    ) -> Event:
        """node-changed added (new id) or updated (with the changed fields).

        ``on_send`` is called when the event is built and its MULTI is about to go (the bench's clock).
        """
        old = self.nodes.get(node.id)
        self.nodes[node.id] = node
        if old is None:
            payload = NodeChanged(change="added", node=node)
        else:
            before, after = old.model_dump(mode="json"), node.model_dump(mode="json")
            changed = {k: FieldChange(old=before[k], new=v) for k, v in after.items() if before.get(k) != v}
            payload = NodeChanged(change="updated", node=node, changed=changed)
        return await self._emit(payload, "node", node.id, node, publish, on_send)

    async def node_removed(self, node_id: str, *, publish: bool = True) -> Event:
        node = self.nodes.pop(node_id)
        return await self._emit(NodeChanged(change="removed", node=node), "node", node_id, None, publish)

    async def _emit(
        self, payload: Payload, kind: str, key: str, record: Any, publish: bool,
        on_send: Callable[[], None] | None = None,
    ) -> Event:
        event = self.bus.make(payload)
        n = self.names
        table = n.discovery_clusters if kind == "cluster" else n.discovery_nodes
        async with self.redis.pipeline(transaction=True) as pipe:
            if record is None:
                pipe.hdel(table, key)
            else:
                pipe.hset(table, key, codec.encode(record))
            pipe.hset(n.discovery_meta, mapping={"source": event.source, "seq": event.seq})
            if publish:
                pipe.publish(n.discovery_events, codec.encode(event))
            if on_send is not None:
                on_send()
            await pipe.execute()
        return event


def _encoded(records: dict[str, Any]) -> dict[Any, bytes]:
    return {k: codec.encode(v) for k, v in records.items()}


def make_cluster(index: int, **fields: Any) -> ClusterInfo:
    """A plausible cluster record for tests and the bench."""
    now = time.time()
    base: dict[str, Any] = dict(id=f"c{index}", name=f"cluster-{index}",
                                dashboard_url=f"http://127.0.0.1:{8265 + index}",
                                gcs_address=f"127.0.0.1:{6400 + index}", session_name=f"session_{index}",
                                ray_version="2.60.0", first_seen=now, last_seen=now)
    return ClusterInfo(**{**base, **fields})


def make_node(cluster_id: str, index: int, **fields: Any) -> NodeInfo:
    """A plausible node record for tests and the bench."""
    now = time.time()
    base: dict[str, Any] = dict(id=f"{cluster_id}-n{index:04d}", ray_node_id=f"{index:056x}",
                                cluster_id=cluster_id,
                                name=f"{cluster_id}-node-{index}", ip="127.0.0.1", hostname="localhost",
                                is_head=index == 0, resources={"CPU": 2.0, "memory": 1e9},
                                labels={"zone": "a"}, first_seen=now, last_seen=now)
    return NodeInfo(**{**base, **fields})
