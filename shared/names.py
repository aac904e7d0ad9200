"""Every Redis channel, stream and key name CastRay uses, in one place.

All names live under one namespace prefix (``CASTRAY_NAMESPACE``, default ``castray``) so that tests,
and several CastRay installations sharing one Redis, never touch each other's data.
"""

from __future__ import annotations

from dataclasses import dataclass

# Consumer group that transfer workers share on the request stream.
TRANSFER_GROUP = "transfer-workers"


@dataclass(frozen=True, slots=True)
class Names:
    """Redis names for one namespace."""

    ns: str = "castray"

    # --- pub/sub channels -------------------------------------------------------------------------
    @property
    def discovery_events(self) -> str:
        """cluster-found, cluster-lost, cluster-removed, node-changed, source-reset (from discovery)."""
        return f"{self.ns}:events:discovery"

    @property
    def view_events(self) -> str:
        """view-changed and view-reset (from the node registry)."""
        return f"{self.ns}:events:view"

    @property
    def transfer_events(self) -> str:
        """transfer-started / -progress / -completed / -failed / -cancelled (from transfer workers)."""
        return f"{self.ns}:events:transfers"

    @property
    def message_events(self) -> str:
        """message-sent: text/JSON messages cast to nodes (from the gateway)."""
        return f"{self.ns}:events:messages"

    def commands(self, service: str) -> str:
        """Request channel of a service that answers commands (e.g. ``discovery``)."""
        return f"{self.ns}:cmd:{service}"

    def reply(self, request_id: str) -> str:
        """List a command's reply is pushed to (a list, so a reply can never be missed)."""
        return f"{self.ns}:reply:{request_id}"

    # --- discovery's own state (the source of truth the registry resyncs from) --------------------
    @property
    def discovery_clusters(self) -> str:
        return f"{self.ns}:discovery:clusters"

    @property
    def discovery_nodes(self) -> str:
        return f"{self.ns}:discovery:nodes"

    @property
    def discovery_meta(self) -> str:
        """Hash: ``source`` and ``seq`` of the last event written with the state above."""
        return f"{self.ns}:discovery:meta"

    @property
    def discovery_leader(self) -> str:
        """String naming the one discovery replica that watches the clusters and writes the state above
        (a lease: it expires unless renewed, and a standby replica then takes over)."""
        return f"{self.ns}:discovery:leader"

    @property
    def discovery_disconnected(self) -> str:
        """Hash: cluster id -> msgpack {id, name, dashboard_url, session_name, addresses} of each cluster
        the user disconnected. Outlives a discovery restart (the state rewrite never deletes it) so
        periodic passes keep ignoring it; an explicit discover/connect removes the entry."""
        return f"{self.ns}:discovery:disconnected"

    # --- the materialized view (node registry) ----------------------------------------------------
    @property
    def view_clusters(self) -> str:
        return f"{self.ns}:view:clusters"

    @property
    def view_nodes(self) -> str:
        return f"{self.ns}:view:nodes"

    @property
    def view_meta(self) -> str:
        """Hash: ``epoch`` (changes on every rebuild from nothing), ``version``, ``source``, ``seq``."""
        return f"{self.ns}:view:meta"

    @property
    def view_log(self) -> str:
        """Stream of view deltas, entry id ``<version>-0``, capped: lets a client resume."""
        return f"{self.ns}:view:log"

    # --- transfers --------------------------------------------------------------------------------
    @property
    def transfer_requests(self) -> str:
        return f"{self.ns}:transfers:requests"

    @property
    def transfer_index(self) -> str:
        """Sorted set of transfer ids by creation time."""
        return f"{self.ns}:transfers:index"

    def transfer(self, transfer_id: str) -> str:
        return f"{self.ns}:transfer:{transfer_id}"

    @property
    def transfer_dead_letters(self) -> str:
        """Stream of transfer requests given up on after ``max_deliveries`` (poison requests): each entry
        has ``transfer_id``, ``entry_id`` (its id on the request stream), ``deliveries``, ``error`` and
        ``data`` (the request as it was queued, msgpack). Capped; the record says ``failed`` too."""
        return f"{self.ns}:transfers:dead-letters"

    def transfer_lease(self, transfer_id: str) -> str:
        """String naming the transfer worker running the transfer; expires unless renewed."""
        return f"{self.ns}:transfer-lease:{transfer_id}"

    def upload(self, upload_id: str) -> str:
        return f"{self.ns}:upload:{upload_id}"

    @property
    def upload_index(self) -> str:
        """Sorted set: upload ids by creation time (``GET /api/uploads``)."""
        return f"{self.ns}:uploads"

    def node_messages(self, node_id: str) -> str:
        """List of a node's messages, newest first: references ``{ref, direction}`` to message bodies."""
        return f"{self.ns}:messages:{node_id}"

    def message(self, key: str) -> str:
        """One message body sent with ``/api/send``, stored once however many nodes it went to."""
        return f"{self.ns}:message:{key}"

    @property
    def message_index(self) -> str:
        """Sorted set: message body keys by time (the oldest beyond ``messages_kept`` are removed)."""
        return f"{self.ns}:message-index"

    @property
    def services(self) -> str:
        """Hash of service heartbeats: ``<kind>:<instance>`` -> msgpack info."""
        return f"{self.ns}:services"

    @property
    def service_figures(self) -> str:
        """Hash of what a replica without an HTTP port publishes for ``/metrics`` (``shared/figures.py``):
        the same keys as `services`, msgpack `Figures`, written with the heartbeat and removed with it."""
        return f"{self.ns}:service-figures"
