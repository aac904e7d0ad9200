"""JSON shapes built from a view snapshot: node records and cluster summaries. Pure functions, shared by
the REST handlers and the WebSocket relay (the original CastRay's shapes are in the
``original`` adapter).
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from castray.shared.api import ClusterSummary
from castray.shared.events import ClusterInfo, NodeInfo
from castray.shared.view import Snapshot


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


def counted(node: NodeInfo) -> bool:
    """Whether a node counts among a cluster's nodes. A DEAD node stays listed, with the reason Ray gave
    (``state_message``), but never comes back (Ray gives a restarted node a new id): it is counted apart,
    as the original CastRay, which listed alive Ray nodes only, never counted it."""
    return node.state != "DEAD"


def cluster_summary(cluster: ClusterInfo, snap: Snapshot) -> dict[str, Any]:
    """A cluster record with its address and node counts (``node_count`` leaves DEAD nodes out)."""
    states = Counter(n.state for n in snap.nodes.values() if n.cluster_id == cluster.id)
    dead = states.get("DEAD", 0)
    summary = ClusterSummary(**cluster.model_dump(), address=cluster_address(cluster),
                             external=is_external(cluster), node_count=sum(states.values()) - dead,
                             alive_node_count=states.get("ALIVE", 0), dead_node_count=dead)
    return summary.model_dump(mode="json")
