"""The original CastRay's cluster shapes: ``/api/cluster/external-info``, ``/api/nodes/external`` and the
replies of ``discover-external``, ``connect-external`` and ``disconnect-external``.

Pure functions from a view snapshot, or from discovery's typed reply (`castray.shared.replies`), to the
original's field names. Our own node and cluster records come from ``summaries``.
"""

from __future__ import annotations

from typing import Any

from castray.gateway.summaries import cluster_address, cluster_summary, counted, is_external, node_record
from castray.shared.events import ClusterInfo, NodeInfo
from castray.shared.replies import ConnectReply, DisconnectReply, DiscoverReply
from castray.shared.view import Snapshot


def external_node(node: NodeInfo, clusters: dict[str, ClusterInfo]) -> dict[str, Any]:
    """An external node with the original's keys (id, address, status, type, cluster_source, last_seen)."""
    cluster = clusters.get(node.cluster_id)
    return {**node_record(node), "address": node.ip, "status": node.state.lower(), "type": "external",
            "cluster_source": cluster_address(cluster) if cluster else None}


def connected_external(snap: Snapshot) -> list[ClusterInfo]:
    """Alive external clusters, first seen first."""
    return [c for c in snap.cluster_list() if is_external(c) and c.state == "alive"]


def external_nodes(snap: Snapshot) -> list[NodeInfo]:
    """The nodes of external clusters that count (not DEAD): the seed's external nodes. A DEAD node is still
    in ``/api/nodes`` and ``node_statuses``, with Ray's reason."""
    return [n for n in snap.node_list(external=True) if counted(n)]


def external_info(snap: Snapshot) -> dict[str, Any]:
    """The body of ``GET /api/cluster/external-info`` (the manual's shape, for many clusters)."""
    connected = connected_external(snap)
    return {
        "is_connected": bool(connected),
        "connected_cluster": cluster_address(connected[0]) if connected else None,
        "connected_clusters": [cluster_summary(c, snap) for c in connected],
        "external_nodes": {n.id: external_node(n, snap.clusters) for n in external_nodes(snap)},
    }


def external_nodes_reply(snap: Snapshot) -> dict[str, Any]:
    """The body of ``GET /api/nodes/external``: success, external_nodes (a list), count."""
    nodes = [external_node(n, snap.clusters) for n in external_nodes(snap)]
    return {"success": True, "external_nodes": nodes, "count": len(nodes)}


def discover_reply(reply: DiscoverReply) -> dict[str, Any]:
    """``POST /api/cluster/discover-external``: the clusters found, the first connected one (``host:port``
    of the external cluster seen alive first), the external nodes, and an error when none was found."""
    found = [c.model_dump(mode="json") for c in reply.found]
    error = None
    if not found:
        why = "; ".join(f"{address}: {failure}" for address, failure in reply.failures.items())
        error = "no Ray cluster found" + (f" ({why})" if why else "")
    alive = sorted((c for c in reply.clusters if c.state == "alive" and is_external(c)),
                   key=lambda c: c.first_seen)
    url = alive[0].dashboard_url if alive else None
    return {"success": bool(found), "discovered_clusters": found,
            "connected_cluster": url.split("://", 1)[-1] if url else None,
            "external_nodes": {n.id: node_record(n) for n in reply.external_nodes}, "error": error}


def connect_reply(reply: ConnectReply) -> dict[str, Any]:
    """``POST /api/cluster/connect-external``: success, message, the cluster and its external nodes."""
    return {"success": True, "message": reply.message, "cluster": reply.cluster.model_dump(mode="json"),
            "external_nodes": {n.id: node_record(n) for n in reply.nodes if n.external}}


def disconnect_reply(reply: DisconnectReply) -> dict[str, Any]:
    """``DELETE /api/cluster/disconnect-external``: success, message, and the ids disconnected."""
    message = (f"disconnected {len(reply.disconnected)} cluster(s)" if reply.disconnected
               else "no external cluster was connected")
    return {"success": True, "message": message, "disconnected": reply.disconnected}
