"""Turning what a dashboard says into CastRay records, and diffing them.

Cluster id: ``c`` + 12 hex of sha1(session name + "|" + GCS address); the same cluster found through its
dashboard, its GCS, a session file or a scan says the same about itself, so it gets the same id.
Node id: ``<cluster id>-<first 12 hex of the Ray node id>``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from castray.discovery.dashboard import NodeRow
from castray.shared.events import ClusterInfo, FieldChange, NodeInfo

# Fields whose change is worth an event; first_seen/last_seen churn is not.
NODE_FIELDS = (
    "name",
    "ip",
    "hostname",
    "is_head",
    "state",
    "state_message",
    "resources",
    "labels",
    "external",
)
CLUSTER_FIELDS = (
    "name",
    "dashboard_url",
    "gcs_address",
    "ray_version",
    "found_by",
    "addresses",
    "sources",
    "state",
    "error",
)


def cluster_id(session_name: str, gcs_address: str) -> str:
    digest = hashlib.sha1(f"{session_name}|{gcs_address}".encode()).hexdigest()
    return f"c{digest[:12]}"


def node_id(cid: str, ray_node_id: str) -> str:
    return f"{cid}-{ray_node_id[:12]}"


def node_name(row: NodeRow) -> str:
    """A short readable name: the node name given to ``ray start --node-name``, else role + id prefix."""
    if row.node_name and row.node_name != row.node_ip and len(row.node_name) <= 40:
        return row.node_name
    return f"{'head' if row.is_head_node else 'worker'}-{row.node_id[:6]}"


def build_node(
    row: NodeRow,
    cluster: ClusterInfo,
    *,
    hostname: str | None,
    external: bool,
    prev: NodeInfo | None,
    now: float,
) -> NodeInfo:
    return NodeInfo(
        id=node_id(cluster.id, row.node_id),
        ray_node_id=row.node_id,
        cluster_id=cluster.id,
        name=node_name(row),
        ip=row.node_ip,
        hostname=hostname if hostname is not None else (prev.hostname if prev else None),
        is_head=row.is_head_node,
        state=row.state,
        state_message=row.state_message,
        resources=dict(sorted(row.resources_total.items())),
        labels=dict(sorted(row.labels.items())),
        external=external,
        first_seen=prev.first_seen if prev else now,
        last_seen=now,
    )


def diff(old: Any, new: Any, fields: tuple[str, ...]) -> dict[str, FieldChange]:
    """``{field: FieldChange(old, new)}`` for each listed field that differs."""
    out: dict[str, FieldChange] = {}
    for name in fields:
        a, b = getattr(old, name), getattr(new, name)
        if a != b:
            out[name] = FieldChange(old=a, new=b)
    return out


def parse_version(text: str) -> tuple[int, ...]:
    """``"2.60.0"`` -> (2, 60, 0); leading digits of each part only ("3.0.0.dev0" -> (3, 0, 0))."""
    out: list[int] = []
    for part in text.split("."):
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)
