"""The original CastRay's WebSocket messages besides ``status_update`` (which `status` builds):
``transfer_activity``, ``message_received`` and ``external_cluster_discovered/_connected/_disconnected``.

The hub (``castray.gateway.event_hub``) sends our own frames for every event and asks this module for the
original's; `ClusterNews` keeps what it needs to tell a cluster's news from an update.
"""

from __future__ import annotations

from typing import Any

from castray.gateway import summaries
from castray.gateway.original import clusters as original_clusters
from castray.shared.events import (
    ClusterDelta,
    ClusterInfo,
    Event,
    MessageSentEvent,
    TransferCompletedEvent,
    TransferFailedEvent,
    TransferStartedEvent,
)
from castray.shared.view import Snapshot


def transfer_activity(event: Event) -> dict[str, Any] | None:
    """The original's ``transfer_activity`` for a start, a whole completion or a failure (the page shows
    ``data.type``, ``data.node_id`` and ``data.description``)."""
    if isinstance(event, TransferStartedEvent):
        p = event.payload
        data: dict[str, Any] = {"type": "transfer_start", "recipients": p.targets, "file_name": p.file_name,
                                "description": f"{p.mode} {p.file_name}".strip()}
    elif isinstance(event, TransferCompletedEvent) and event.payload.node_id is None:
        data = {"type": "transfer_complete",
                "description": f"transfer {event.payload.transfer_id} completed"}
    elif isinstance(event, TransferFailedEvent):
        data = {"type": "transfer_failed", "node_id": event.payload.node_id, "error": event.payload.error,
                "description": f"transfer {event.payload.transfer_id} failed: {event.payload.error}"}
    else:
        return None
    return {"type": "transfer_activity", "data": {"transfer_id": event.payload.transfer_id, **data}}


def message_received(event: MessageSentEvent) -> dict[str, Any]:
    """The original's ``message_received`` after ``POST /api/send``."""
    p = event.payload
    return {"type": "message_received", "message_id": p.message_id, "cast_type": p.cast_type,
            "sender": p.sender}


def cluster_messages(found: list[ClusterInfo], removed: list[ClusterInfo], snap: Snapshot
                     ) -> list[dict[str, Any]]:
    """The original's ``external_cluster_discovered/_connected/_disconnected`` messages."""
    count = len(original_clusters.external_nodes(snap))
    out: list[dict[str, Any]] = []
    if found:
        out.append({"type": "external_cluster_discovered", "external_nodes_count": count,
                    "discovered_clusters": [summaries.cluster_summary(c, snap) for c in found]})
    for c in found:
        if c.found_by == "manual":
            out.append({"type": "external_cluster_connected", "cluster_address": summaries.cluster_address(c),
                        "cluster_id": c.id, "external_nodes_count": count})
    for c in removed:
        where = summaries.cluster_address(c) or c.id
        out.append({"type": "external_cluster_disconnected", "cluster_id": c.id,
                    "message": f"disconnected from cluster {c.name} ({where})"})
    return out




class ClusterNews:
    """The clusters to announce with `cluster_messages`: discovered when a cluster appears or comes back
    (not on every update), disconnected when it is removed. The clusters as last seen are kept here, since
    a removed cluster's record is gone from the view, and re-read after a view reset (clusters may have
    come and gone without events)."""

    def __init__(self) -> None:
        self.found: list[ClusterInfo] = []
        self.removed: list[ClusterInfo] = []
        self.reset_seen = False
        self._known: dict[str, ClusterInfo] = {}

    def restart(self, clusters: dict[str, ClusterInfo]) -> None:
        """The hub (re)subscribed: ``clusters`` are the view's now."""
        self._known = dict(clusters)

    def view_reset(self) -> None:
        self.reset_seen = True

    def note(self, p: ClusterDelta) -> None:
        prev = self._known.get(p.id)
        if p.cluster is None:
            self._known.pop(p.id, None)
            self.removed.append(prev or ClusterInfo(id=p.id, name=p.id))
            return
        self._known[p.id] = p.cluster
        if p.change == "found" and (prev is None or prev.state != "alive"
                                    or (p.cluster.found_by == "manual" and prev.found_by != "manual")):
            self.found.append(p.cluster)

    @property
    def pending(self) -> bool:
        return self.reset_seen or bool(self.found or self.removed)

    def drop(self) -> None:
        """Nobody listens: forget the news."""
        self.found, self.removed = [], []

    def take(self, snap: Snapshot) -> list[dict[str, Any]]:
        """The messages for the news so far (``snap``: the view now), and forget them."""
        found, removed = self.found, self.removed
        if self.reset_seen:
            self.reset_seen = False
            self._known = dict(snap.clusters)
        self.found, self.removed = [], []
        return cluster_messages(found, removed, snap)
