"""The known clusters: adopting probes, applying polls, losing, finding and disconnecting clusters.

All changes go through `StatePublisher`, so each one is stored and announced together. Every cluster has
its own `ClusterWatcher` task; the tracker starts and stops them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

from castray.discovery.dashboard import NodeRow, SummaryRow
from castray.discovery.figures import PollFigures
from castray.discovery.probe import Probe, Prober, gcs_address
from castray.discovery.publisher import StatePublisher
from castray.discovery.records import CLUSTER_FIELDS, NODE_FIELDS, build_node, diff
from castray.discovery.settings import DiscoverySettings
from castray.discovery.watcher import ClusterWatcher
from castray.shared.errors import CodedError
from castray.shared.events import ClusterInfo, FoundBy
from castray.shared.log import log_context

log = logging.getLogger(__name__)


class Tracker:
    """Owns the cluster and node records (through the publisher) and one watcher per cluster."""

    def __init__(self, *, publisher: StatePublisher, prober: Prober, settings: DiscoverySettings,
                 figures: PollFigures | None = None) -> None:
        self.publisher = publisher
        self.figures = figures if figures is not None else PollFigures()
        self.state = publisher.state
        self.prober = prober
        self.settings = settings
        self.local_id: str | None = None
        self.disconnected: set[str] = set()
        self.watchers: dict[str, ClusterWatcher] = {}
        # One lock per cluster: its changes never interleave, other clusters never wait for it.
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    # --- adopting what a probe found --------------------------------------------------------------
    def match(self, probe: Probe) -> str:
        """The id of the known cluster this probe is, or the probe's own id (a new cluster)."""
        if probe.cluster_id in self.state.clusters:
            return probe.cluster_id
        for cid, known in self.state.clusters.items():
            head = self._head_ray_id(cid)
            if known.session_name == probe.session_name and head is not None and head == probe.head_node_id:
                return cid
        return probe.cluster_id

    def _head_ray_id(self, cid: str) -> str | None:
        return next((n.ray_node_id for n in self.state.nodes_of(cid) if n.is_head), None)

    async def adopt(
        self, probe: Probe, *, sources: list[str], addresses: list[str], explicit: bool
    ) -> ClusterInfo | None:
        """Make the probed cluster known (or add how it was found); None if it was disconnected."""
        cid = self.match(probe)
        with log_context(cluster_id=cid):
            async with self._locks[cid]:
                return await self._adopt(cid, probe, sources=sources, addresses=addresses,
                                         explicit=explicit)

    async def _adopt(
        self, cid: str, probe: Probe, *, sources: list[str], addresses: list[str], explicit: bool
    ) -> ClusterInfo | None:
        if "local" in sources:
            self.local_id = cid
        if cid in self.disconnected:
            if not explicit and cid != self.local_id:
                return None
            self.disconnected.discard(cid)
            await self.publisher.forget_disconnected(cid)
        now = time.time()
        known = self.state.clusters.get(cid)
        if known is None:
            cluster = ClusterInfo(
                id=cid,
                name=f"ray@{probe.dashboard_hostport}",
                dashboard_url=probe.dashboard_url,
                gcs_address=probe.gcs_address,
                session_name=probe.session_name,
                ray_version=probe.ray_version,
                addresses=_merge([], addresses),
                sources=_merge([], sources),
                state="alive",
                first_seen=now,
                last_seen=now,
            )
            cluster.found_by = self._found_by(cluster)
            await self.publisher.cluster_event(cluster, "found")
            log.info(
                "cluster %s found at %s by %s", cid, probe.dashboard_url, ", ".join(dict.fromkeys(sources))
            )
            await self._apply_rows(cid, probe.rows, probe.hostnames)
            self._watch(cid)
            return self.state.clusters.get(cid)
        updated = known.model_copy(
            update={
                "addresses": _merge(known.addresses, addresses),
                "sources": _merge(known.sources, sources),
                "gcs_address": known.gcs_address or probe.gcs_address,
                "ray_version": probe.ray_version,
            }
        )
        await self._refresh(cid, updated)
        self._watch(cid)
        return self.state.clusters.get(cid)

    def _found_by(self, cluster: ClusterInfo) -> FoundBy:
        if cluster.id == self.local_id:
            return "local"
        return "manual" if "connect" in cluster.sources else "external"

    async def _refresh(self, cid: str, updated: ClusterInfo) -> None:
        """Publish a cluster (and its nodes' external flag) when something worth saying changed."""
        known = self.state.clusters.get(cid)
        if known is None:
            return
        updated.found_by = self._found_by(updated)
        if diff(known, updated, CLUSTER_FIELDS):
            updated.last_seen = time.time()
            await self.publisher.cluster_event(updated, "found")
        external = updated.found_by != "local"
        for node in self.state.nodes_of(cid):
            if node.external != external:
                new = node.model_copy(update={"external": external})
                await self.publisher.node_event(new, "updated", diff(node, new, NODE_FIELDS))

    # --- polls ------------------------------------------------------------------------------------
    async def _apply_rows(
        self, cid: str, rows: list[NodeRow], hostnames: dict[str, str] | None = None
    ) -> None:
        """Diff a node list against what we know of ``cid`` and publish added/updated/removed."""
        cluster = self.state.clusters.get(cid)
        if cluster is None:
            return
        now, external = time.time(), cluster.found_by != "local"
        hostnames = hostnames or {}
        seen: set[str] = set()
        for row in rows:
            prev = self.state.nodes.get(f"{cid}-{row.node_id[:12]}")
            node = build_node(
                row, cluster, hostname=hostnames.get(row.node_id), external=external, prev=prev, now=now
            )
            seen.add(node.id)
            if prev is None:
                await self.publisher.node_event(node, "added")
            elif changed := diff(prev, node, NODE_FIELDS):
                await self.publisher.node_event(node, "updated", changed)
            else:
                self.publisher.touch_node(node)
        for node in self.state.nodes_of(cid):
            if node.id not in seen:
                await self.publisher.node_event(node, "removed")

    async def poll_ok(self, cid: str, rows: list[NodeRow]) -> None:
        async with self._locks[cid]:
            await self._poll_ok(cid, rows)

    async def _poll_ok(self, cid: str, rows: list[NodeRow]) -> None:
        cluster = self.state.clusters.get(cid)
        if cluster is None:
            return
        if cluster.state != "alive":
            back = cluster.model_copy(update={"state": "alive", "error": None, "last_seen": time.time()})
            await self.publisher.cluster_event(back, "found")
            log.info("cluster %s answers again", cid)
        else:
            cluster.last_seen = time.time()
        await self._apply_rows(cid, rows)

    async def poll_failed(self, cid: str, error: CodedError, failures: int) -> None:
        """After ``lost_after`` failures: cluster-lost; its nodes that were ALIVE become UNREACHABLE."""
        async with self._locks[cid]:
            await self._poll_failed(cid, error, failures)

    async def _poll_failed(self, cid: str, error: CodedError, failures: int) -> None:
        cluster = self.state.clusters.get(cid)
        if cluster is None or cluster.state != "alive" or failures < self.settings.lost_after:
            return
        lost = cluster.model_copy(update={"state": "lost", "error": error.message})
        await self.publisher.cluster_event(lost, "lost", reason=f"{error.code}: {error.message}")
        log.warning("cluster %s lost after %d failed polls: %s", cid, failures, error.message)
        for node in self.state.nodes_of(cid):
            if node.state == "ALIVE":
                new = node.model_copy(update={"state": "UNREACHABLE"})
                await self.publisher.node_event(new, "updated", diff(node, new, NODE_FIELDS))

    async def set_hostnames(self, cid: str, hostnames: dict[str, str]) -> None:
        async with self._locks[cid]:
            await self._set_hostnames(cid, hostnames)

    async def _set_hostnames(self, cid: str, hostnames: dict[str, str]) -> None:
        for node in self.state.nodes_of(cid):
            name = hostnames.get(node.ray_node_id)
            if name and name != node.hostname:
                new = node.model_copy(update={"hostname": name})
                await self.publisher.node_event(new, "updated", diff(node, new, NODE_FIELDS))

    async def set_gcs_address(self, cid: str, summary: list[SummaryRow]) -> None:
        """Complete a cluster found before its dashboard reported the GCS: transfers wait for it."""
        async with self._locks[cid]:
            cluster = self.state.clusters.get(cid)
            head = next((n for n in self.state.nodes_of(cid) if n.is_head and n.state == "ALIVE"), None)
            if cluster is None or cluster.gcs_address or head is None:
                return
            address = gcs_address(head.ray_node_id, head.ip, summary)
            if address:
                log.info("cluster %s: GCS at %s", cid, address)
                await self._refresh(cid, cluster.model_copy(update={"gcs_address": address}))

    async def replaced(self, cid: str, session_name: str) -> None:
        """The dashboard now serves another session: the old cluster is gone for good."""
        async with self._locks[cid]:
            cluster = self.state.clusters.get(cid)
            if cluster is None:
                return
            await self._remove(cluster, f"its dashboard now serves session {session_name}")
        if cluster.dashboard_url is None:
            return
        try:  # the new cluster at that address inherits how the old one was found
            probe = await self.prober.probe_dashboard(cluster.dashboard_url)
        except CodedError:  # a ProbeError, or AddressNotAllowed
            return  # the next pass finds it
        await self.adopt(probe, sources=cluster.sources, addresses=cluster.addresses, explicit=False)

    # --- disconnect -------------------------------------------------------------------------------
    async def disconnect(self, cid: str, reason: str = "disconnected on request") -> None:
        """Nodes removed, then cluster-removed; periodic passes skip it until discover/connect, also
        after a restart of discovery (kept in ``names.discovery_disconnected``)."""
        with log_context(cluster_id=cid):
            await self._disconnect(cid, reason)

    async def _disconnect(self, cid: str, reason: str) -> None:
        async with self._locks[cid]:
            cluster = self.state.clusters.get(cid)
            if cluster is None:
                return
            self.disconnected.add(cid)
            # Stored before the removal: a crash in between must not make it a cluster to reconnect.
            await self.publisher.remember_disconnected(cluster)
            await self._remove(cluster, reason)

    async def _remove(self, cluster: ClusterInfo, reason: str) -> None:
        watcher = self.watchers.pop(cluster.id, None)
        if watcher is not None:
            await watcher.stop()
        self.figures.forget(cluster.id)
        for node in self.state.nodes_of(cluster.id):
            await self.publisher.node_event(node, "removed")
        gone = cluster.model_copy(update={"state": "disconnected"})
        await self.publisher.cluster_removed(gone, reason)
        log.info("cluster %s removed: %s", cluster.id, reason)

    # --- watchers ---------------------------------------------------------------------------------
    def _watch(self, cid: str) -> None:
        cluster = self.state.clusters[cid]
        if cid in self.watchers or cluster.dashboard_url is None:
            return
        watcher = ClusterWatcher(
            cluster_id=cid,
            session_name=cluster.session_name or "",
            client=self.prober.client(cluster.dashboard_url),
            tracker=self,
            settings=self.settings,
            figures=self.figures,
        )
        self.watchers[cid] = watcher
        watcher.start()

    def missing_hostnames(self, cid: str) -> bool:
        return any(n.hostname is None and n.state == "ALIVE" for n in self.state.nodes_of(cid))

    def missing_gcs_address(self, cid: str) -> bool:
        cluster = self.state.clusters.get(cid)
        return cluster is not None and not cluster.gcs_address

    async def close(self) -> None:
        watchers, self.watchers = list(self.watchers.values()), {}
        for watcher in watchers:
            await watcher.stop()


def _merge(items: list[str], more: list[str]) -> list[str]:
    return list(dict.fromkeys([*items, *more]))
