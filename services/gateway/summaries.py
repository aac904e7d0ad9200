"""JSON shapes built from a view snapshot: node records, cluster summaries, the seed's external-cluster
answers. Pure functions, shared by the REST handlers and the WebSocket relay (the original CastRay's
status shapes are in ``original_status``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from castray.gateway.view_store import Snapshot
from castray.shared.events import ClusterInfo, NodeInfo


def cluster_address(cluster: ClusterInfo) -> str | None:
    """``host:port`` of the cluster's dashboard (what the manual shows as ``connected_cluster``)."""
    if cluster.dashboard_url:
        netloc = urlsplit(cluster.dashboard_url).netloc
        if netloc:
            return netloc
    for address in cluster.addresses:
        netloc = urlsplit(address).netloc if "://" in address else address
        if netloc:
            return netloc
    return cluster.gcs_address


def is_external(cluster: ClusterInfo) -> bool:
    """Found in any other way than as the cluster CastRay runs beside."""
    return cluster.found_by != "local"


def node_record(node: NodeInfo) -> dict[str, Any]:
    return node.model_dump(mode="json")


def external_node(node: NodeInfo, clusters: dict[str, ClusterInfo]) -> dict[str, Any]:
    """An external node with the original's keys (id, address, status, type, cluster_source, last_seen)."""
    cluster = clusters.get(node.cluster_id)
    return {**node_record(node), "address": node.ip, "status": node.state.lower(), "type": "external",
            "cluster_source": cluster_address(cluster) if cluster else None}


def counted(node: NodeInfo) -> bool:
    """Whether a node counts among a cluster's nodes. A DEAD node stays listed, with the reason Ray gave
    (``state_message``), but never comes back (Ray gives a restarted node a new id): it is counted apart,
    as the original CastRay, which listed alive Ray nodes only, never counted it."""
    return node.state != "DEAD"


def cluster_summary(cluster: ClusterInfo, snap: Snapshot) -> dict[str, Any]:
    """A cluster record with its address and node counts (``node_count`` leaves DEAD nodes out)."""
    states = Counter(n.state for n in snap.nodes.values() if n.cluster_id == cluster.id)
    dead = states.get("DEAD", 0)
    return {**cluster.model_dump(mode="json"), "address": cluster_address(cluster),
            "external": is_external(cluster), "node_count": sum(states.values()) - dead,
            "alive_node_count": states.get("ALIVE", 0), "dead_node_count": dead}


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
