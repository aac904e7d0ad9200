"""Discovery's commands over the bus: discover, connect, disconnect, clusters.

Each reply is a model of `castray.shared.replies` (CastRay's own facts: the gateway's adapter shapes them
for the original's HTTP API). Failures are `castray.discovery.errors` classes with the manual's codes, never
an internal error for a user's mistake.
"""

from __future__ import annotations

from typing import Any

from castray.discovery import errors
from castray.discovery.addresses import Address, parse_address
from castray.discovery.passes import Discoverer
from castray.discovery.probe import Prober
from castray.discovery.tracker import Tracker
from castray.shared.events import ClusterInfo
from castray.shared.replies import ClustersReply, ConnectReply, DisconnectReply, DiscoverReply


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
        result = await self.discoverer.run_pass(explicit=True)
        return DiscoverReply(found=result.clusters, failures=result.errors,
                             clusters=list(self.state.clusters.values()),
                             external_nodes=[n for n in self.state.nodes.values() if n.external]
                             ).model_dump(mode="json")

    async def connect(self, args: dict[str, Any]) -> dict[str, Any]:
        """``{"cluster_address": ...}``."""
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
        nodes = self.state.nodes_of(cluster.id)
        via = f" (via its GCS {addr.hostport})" if probe.via == "gcs" else ""
        return ConnectReply(cluster=cluster, nodes=nodes,
                            message=f"connected to {cluster.name}{via}: Ray {cluster.ray_version}, "
                            f"{len(nodes)} nodes").model_dump(mode="json")

    async def disconnect(self, args: dict[str, Any]) -> dict[str, Any]:
        """``{"cluster": id or address (optional)}``: that cluster, or every external one."""
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
        return DisconnectReply(disconnected=ids).model_dump(mode="json")

    async def clusters(self, args: dict[str, Any]) -> dict[str, Any]:
        return ClustersReply(clusters=list(self.state.clusters.values()),
                             nodes=list(self.state.nodes.values()),
                             disconnected=sorted(self.tracker.disconnected)).model_dump(mode="json")

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


def _shown(addr: Address) -> str:
    return addr.http_url if addr.url else addr.hostport
