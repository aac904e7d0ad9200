"""The original CastRay's cluster shapes: ``/api/cluster/external-info``, ``/api/nodes/external`` and the
replies of ``discover-external``, ``connect-external`` and ``disconnect-external``.

Pure functions from a view snapshot (or a discovery command's reply) to the original's field names. Our
own node and cluster records come from ``summaries``; the original's status shapes are in
``original_status``.
"""

from __future__ import annotations

from typing import Any

from castray.gateway.summaries import cluster_address, cluster_summary, counted, is_external, node_record
from castray.shared.events import ClusterInfo, NodeInfo
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


def discover_reply(result: dict[str, Any]) -> dict[str, Any]:
    """Discovery's ``discover`` reply with the original's keys present (the reply's own values win)."""
    return {"success": bool(result.get("success", True)), "discovered_clusters": [],
            "connected_cluster": None, "external_nodes": {}, "error": None, **result}


def connect_reply(result: dict[str, Any]) -> dict[str, Any]:
    """Discovery's ``connect`` reply with the original's ``success`` and ``message``."""
    return {"success": bool(result.get("success", True)), "message": "", **result}


def disconnect_reply(result: dict[str, Any]) -> dict[str, Any]:
    """Discovery's ``disconnect`` reply with the original's ``success`` and ``message``."""
    disconnected = list(result.get("disconnected") or [])
    message = (f"disconnected {len(disconnected)} cluster(s)" if disconnected
               else "no external cluster was connected")
    return {"success": bool(result.get("success", True)), "message": message,
            "disconnected": disconnected, **result}
