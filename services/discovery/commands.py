"""Discovery's commands over the bus: discover, connect, disconnect, clusters.

Replies follow the seed's shapes (see each handler). Failures are `castray.discovery.errors` classes with
the manual's codes, never an internal error for a user's mistake.
"""

from __future__ import annotations

from typing import Any

from castray.discovery import errors
from castray.discovery.addresses import Address, parse_address
from castray.discovery.passes import Discoverer
from castray.discovery.probe import Prober
from castray.discovery.tracker import Tracker
from castray.shared.events import ClusterInfo, NodeInfo


class DiscoveryCommands:
    """The handler given to ``bus.serve_commands("discovery", ...)``."""

    def __init__(self, *, tracker: Tracker, prober: Prober, discoverer: Discoverer) -> None:
        self.tracker = tracker
        self.prober = prober
        self.discoverer = discoverer
        self.state = tracker.state

    async def __call__(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        handler = {
            "discover": self.discover,
            "connect": self.connect,
            "disconnect": self.disconnect,
            "clusters": self.clusters,
        }.get(op)
        if handler is None:
            raise errors.UnknownCommand(f"unknown discovery command {op!r}")
        return await handler(args if isinstance(args, dict) else {})

    # --- ops --------------------------------------------------------------------------------------
    async def discover(self, args: dict[str, Any]) -> dict[str, Any]:
        """``{success, discovered_clusters, connected_cluster, external_nodes, error}``."""
        result = await self.discoverer.run_pass(explicit=True)
        found = [c.model_dump(mode="json") for c in result.clusters]
        error = None
        if not found:
            error = "no Ray cluster found" + (
                f" ({'; '.join(f'{a}: {m}' for a, m in result.errors.items())})" if result.errors else ""
            )
        return {
            "success": bool(found),
            "discovered_clusters": found,
            "connected_cluster": self.connected_cluster(),
            "external_nodes": self.external_nodes(),
            "error": error,
        }

    async def connect(self, args: dict[str, Any]) -> dict[str, Any]:
        """``{"cluster_address": ...}`` -> ``{success, cluster, external_nodes, message}``."""
        raw = args.get("cluster_address", args.get("address"))
        if raw is None:
            raise errors.AddressMalformed('cluster_address is required, e.g. "127.0.0.1:8265"')
        addr = parse_address(raw)
        probe = await self.prober.probe(addr)
        cluster = await self.tracker.adopt(
            probe, sources=["connect"], addresses=[_shown(addr)], explicit=True
        )
        if cluster is None:  # disconnected again while we adopted it
            raise errors.DisconnectedMeanwhile("the cluster was disconnected while connecting")
        nodes = {n.id: n.model_dump(mode="json") for n in self.state.nodes_of(cluster.id) if n.external}
        via = f" (via its GCS {addr.hostport})" if probe.via == "gcs" else ""
        return {
            "success": True,
            "cluster": cluster.model_dump(mode="json"),
            "external_nodes": nodes,
            "message": f"connected to {cluster.name}{via}: Ray {cluster.ray_version}, "
            f"{len(self.state.nodes_of(cluster.id))} nodes",
        }

    async def disconnect(self, args: dict[str, Any]) -> dict[str, Any]:
        """``{"cluster": id or address (optional)}`` -> ``{success, disconnected: [ids]}``."""
        which = args.get("cluster")
        if which in (None, ""):
            ids = [cid for cid, c in self.state.clusters.items() if c.found_by != "local"]
        else:
            cluster = self.find(which)
            if cluster.found_by == "local":
                raise errors.LocalClusterStays(f"{cluster.id} is the local cluster CastRay runs beside; "
                                               "it stays")
            ids = [cluster.id]
        for cid in ids:
            await self.tracker.disconnect(cid)
        return {"success": True, "disconnected": ids}

    async def clusters(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "clusters": [c.model_dump(mode="json") for c in self.state.clusters.values()],
            "nodes": {n.id: n.model_dump(mode="json") for n in self.state.nodes.values()},
            "disconnected": sorted(self.tracker.disconnected),
        }

    # --- helpers ----------------------------------------------------------------------------------
    def find(self, which: object) -> ClusterInfo:
        """A known cluster by id, name, dashboard URL, host:port or any address it was found at."""
        if not isinstance(which, str):
            raise errors.AddressMalformed("cluster must be a cluster id or an address")
        if which in self.state.clusters:
            return self.state.clusters[which]
        keys = {which.strip().lower()}
        try:
            addr = parse_address(which)
            keys |= {addr.hostport, addr.http_url, _shown(addr)}
        except errors.AddressMalformed:
            pass
        for cluster in self.state.clusters.values():
            known = {cluster.name, cluster.dashboard_url or "", cluster.gcs_address or "", *cluster.addresses}
            known |= {k.split("://", 1)[-1] for k in known}
            if keys & {k.lower() for k in known}:
                return cluster
        raise errors.ClusterNotFound(f"no known cluster {which!r}")

    def connected_cluster(self) -> str | None:
        """host:port of the first alive external cluster's dashboard, as the seed shows it."""
        alive = sorted(
            (c for c in self.state.clusters.values() if c.state == "alive" and c.found_by != "local"),
            key=lambda c: c.first_seen,
        )
        url = alive[0].dashboard_url if alive else None
        return url.split("://", 1)[-1] if url else None

    def external_nodes(self) -> dict[str, Any]:
        return {n.id: n.model_dump(mode="json") for n in self.state.nodes.values() if _external(n)}


def _external(node: NodeInfo) -> bool:
    return node.external


def _shown(addr: Address) -> str:
    return addr.http_url if addr.url else addr.hostport
