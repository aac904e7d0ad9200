"""Every event CastRay publishes: typed pydantic models under one envelope.

An event on the wire is ``{type, source, seq, time, payload}``. ``source`` names the publishing
process, ``seq`` counts that source's events from 1 with no holes, so a consumer can tell a duplicate
(seq already seen) from a gap (seq skipped) and resync on a gap.

The records (`ClusterInfo`, `NodeInfo`) are the merged view's row shapes, shared by discovery (which
produces them), the registry (which stores them) and the gateway (which serves them).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

ClusterState = Literal["alive", "lost", "disconnected"]
FoundBy = Literal["local", "external", "manual"]
# Ray reports ALIVE and DEAD; UNREACHABLE marks nodes of a cluster we lost contact with.
NodeState = Literal["ALIVE", "DEAD", "UNREACHABLE"]
NodeChange = Literal["added", "updated", "removed"]
ClusterChange = Literal["found", "lost", "removed"]


class Record(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ClusterInfo(Record):
    """One Ray cluster, however many ways it was found."""

    id: str = Field(description="Stable id derived from the cluster's session name and GCS address.")
    name: str = Field(description="Short readable name.")
    dashboard_url: str | None = None
    gcs_address: str | None = None
    session_name: str | None = None
    ray_version: str | None = None
    found_by: FoundBy = "external"
    addresses: list[str] = Field(default_factory=list, description="Every address it was found at.")
    sources: list[str] = Field(default_factory=list, description="How: config, session-file, scan, connect.")
    state: ClusterState = "alive"
    error: str | None = None
    first_seen: float = 0.0
    last_seen: float = 0.0


class NodeInfo(Record):
    """One Ray node as a CastRay node."""

    id: str = Field(description="Stable and unique across clusters: <cluster id>-<ray node id prefix>.")
    ray_node_id: str
    cluster_id: str
    name: str = Field(description="Short readable virtual node name.")
    ip: str = ""
    hostname: str | None = None
    is_head: bool = False
    state: NodeState = "ALIVE"
    state_message: str | None = None
    resources: dict[str, float] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    external: bool = True
    first_seen: float = 0.0
    last_seen: float = 0.0


class FieldChange(BaseModel):
    old: Any = None
    new: Any = None


# --- payloads -------------------------------------------------------------------------------------


class Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")
    event_type: ClassVar[str]


class ClusterFound(Payload):
    event_type: ClassVar[str] = "cluster-found"
    cluster: ClusterInfo


class ClusterLost(Payload):
    """The cluster stopped answering (after the configured number of failed polls)."""

    event_type: ClassVar[str] = "cluster-lost"
    cluster: ClusterInfo
    reason: str = ""


class ClusterRemoved(Payload):
    """The cluster was disconnected on request: it and its nodes leave the view."""

    event_type: ClassVar[str] = "cluster-removed"
    cluster: ClusterInfo
    reason: str = ""


class NodeChanged(Payload):
    event_type: ClassVar[str] = "node-changed"
    change: NodeChange
    node: NodeInfo
    changed: dict[str, FieldChange] = Field(default_factory=dict)


class SourceReset(Payload):
    """Discovery rewrote its whole state (start, Redis restart): consumers should resync."""

    event_type: ClassVar[str] = "source-reset"


class ViewDelta(Payload):
    """One change the registry applied to the merged view, as every reader of the view gets it.

    It is the discovery event the registry applied (its ``type``, ``change``, ``id`` and record, under
    the key discovery used: ``node`` or ``cluster``), numbered in the view: ``version`` counts changes in
    ``epoch``. Why discovery's event types are forwarded rather than folded: see `castray.shared.view`.
    """

    event_type: ClassVar[str] = "view-changed"
    epoch: str
    version: int


class NodeDelta(ViewDelta):
    kind: ClassVar[Literal["node"]] = "node"
    type: Literal["node-changed"] = "node-changed"
    change: NodeChange
    id: str
    node: NodeInfo | None = Field(default=None, description="None when the node was removed.")
    changed: dict[str, FieldChange] = Field(default_factory=dict)

    @property
    def record(self) -> NodeInfo | None:
        return self.node


class ClusterDelta(ViewDelta):
    kind: ClassVar[Literal["cluster"]] = "cluster"
    type: Literal["cluster-found", "cluster-lost", "cluster-removed"]
    change: ClusterChange
    id: str
    cluster: ClusterInfo | None = Field(default=None, description="None when the cluster was removed.")
    changed: dict[str, FieldChange] = Field(default_factory=dict, description="Always empty, as every delta "
                                            "has the same keys.")

    @model_validator(mode="after")
    def _change_is_the_type(self) -> ClusterDelta:
        if self.type != f"cluster-{self.change}":
            raise ValueError(f"a {self.type} delta cannot be a change {self.change!r}")
        return self

    @property
    def record(self) -> ClusterInfo | None:
        return self.cluster


# The delta's ``type`` tags its record: ``node`` for node-changed, ``cluster`` for cluster-*.
ViewChanged = Annotated[NodeDelta | ClusterDelta, Field(discriminator="type")]


class ViewReset(Payload):
    """The registry rebuilt the view; clients should take a fresh snapshot."""

    event_type: ClassVar[str] = "view-reset"
    epoch: str
    version: int


class TransferEvent(Payload):
    transfer_id: str


class TransferStarted(TransferEvent):
    event_type: ClassVar[str] = "transfer-started"
    mode: str = "unicast"
    bytes_total: int = 0
    targets: list[str] = Field(default_factory=list)
    file_name: str = ""


class TransferProgress(TransferEvent):
    event_type: ClassVar[str] = "transfer-progress"
    node_id: str | None = None
    bytes_done: int = 0
    bytes_total: int = 0
    rate: float = Field(default=0.0, description="Bytes per second.")
    eta: float | None = Field(default=None, description="Seconds left.")


class TransferCompleted(TransferEvent):
    event_type: ClassVar[str] = "transfer-completed"
    node_id: str | None = Field(default=None, description="None when the whole transfer is done.")
    path: str | None = None
    sha256: str | None = None
    bytes_total: int = 0


class TransferFailed(TransferEvent):
    event_type: ClassVar[str] = "transfer-failed"
    node_id: str | None = None
    error: str = ""


class TransferCancelled(TransferEvent):
    event_type: ClassVar[str] = "transfer-cancelled"


class MessageSent(Payload):
    """A text/JSON message cast to nodes (the original's /api/send)."""

    event_type: ClassVar[str] = "message-sent"
    message_id: str
    cast_type: str
    sender: str
    recipients: list[str] = Field(default_factory=list)


# --- envelopes ------------------------------------------------------------------------------------


class Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    source: str
    seq: int = Field(ge=0)
    time: float


class ClusterFoundEvent(Envelope):
    type: Literal["cluster-found"] = "cluster-found"
    payload: ClusterFound


class ClusterLostEvent(Envelope):
    type: Literal["cluster-lost"] = "cluster-lost"
    payload: ClusterLost


class ClusterRemovedEvent(Envelope):
    type: Literal["cluster-removed"] = "cluster-removed"
    payload: ClusterRemoved


class NodeChangedEvent(Envelope):
    type: Literal["node-changed"] = "node-changed"
    payload: NodeChanged


class SourceResetEvent(Envelope):
    type: Literal["source-reset"] = "source-reset"
    payload: SourceReset


class ViewChangedEvent(Envelope):
    type: Literal["view-changed"] = "view-changed"
    payload: ViewChanged


class ViewResetEvent(Envelope):
    type: Literal["view-reset"] = "view-reset"
    payload: ViewReset


class TransferStartedEvent(Envelope):
    type: Literal["transfer-started"] = "transfer-started"
    payload: TransferStarted


class TransferProgressEvent(Envelope):
    type: Literal["transfer-progress"] = "transfer-progress"
    payload: TransferProgress


class TransferCompletedEvent(Envelope):
    type: Literal["transfer-completed"] = "transfer-completed"
    payload: TransferCompleted


class TransferFailedEvent(Envelope):
    type: Literal["transfer-failed"] = "transfer-failed"
    payload: TransferFailed


class TransferCancelledEvent(Envelope):
    type: Literal["transfer-cancelled"] = "transfer-cancelled"
    payload: TransferCancelled


class MessageSentEvent(Envelope):
    type: Literal["message-sent"] = "message-sent"
    payload: MessageSent


Event = Annotated[
    ClusterFoundEvent
    | ClusterLostEvent
    | ClusterRemovedEvent
    | NodeChangedEvent
    | SourceResetEvent
    | ViewChangedEvent
    | ViewResetEvent
    | TransferStartedEvent
    | TransferProgressEvent
    | TransferCompletedEvent
    | TransferFailedEvent
    | TransferCancelledEvent
    | MessageSentEvent,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

_ENVELOPE_FOR: dict[type[Payload], type[Envelope]] = {
    ClusterFound: ClusterFoundEvent,
    ClusterLost: ClusterLostEvent,
    ClusterRemoved: ClusterRemovedEvent,
    NodeChanged: NodeChangedEvent,
    SourceReset: SourceResetEvent,
    NodeDelta: ViewChangedEvent,
    ClusterDelta: ViewChangedEvent,
    ViewReset: ViewResetEvent,
    TransferStarted: TransferStartedEvent,
    TransferProgress: TransferProgressEvent,
    TransferCompleted: TransferCompletedEvent,
    TransferFailed: TransferFailedEvent,
    TransferCancelled: TransferCancelledEvent,
    MessageSent: MessageSentEvent,
}


def wrap(payload: Payload, *, source: str, seq: int, time: float) -> Event:
    """Put a payload in its envelope."""
    cls = _ENVELOPE_FOR[type(payload)]
    return cls(source=source, seq=seq, time=time, payload=payload)  # type: ignore[return-value,call-arg]


def ids_of(event: Event) -> dict[str, str]:
    """The transfer, cluster and node one event is about, as `castray.shared.log.log_context` takes them
    (``log_context(**ids_of(event))``); none for an event about no single one (a reset, a message)."""
    p = event.payload
    if isinstance(p, TransferProgress | TransferCompleted | TransferFailed) and p.node_id is not None:
        return {"transfer_id": p.transfer_id, "node_id": p.node_id}
    if isinstance(p, TransferEvent):
        return {"transfer_id": p.transfer_id}
    if isinstance(p, ClusterFound | ClusterLost | ClusterRemoved):
        return {"cluster_id": p.cluster.id}
    if isinstance(p, NodeChanged):
        return {"cluster_id": p.node.cluster_id, "node_id": p.node.id}
    if isinstance(p, NodeDelta):  # a removed node's delta has no record, so no cluster id
        return {"node_id": p.id} if p.node is None else {"cluster_id": p.node.cluster_id, "node_id": p.id}
    if isinstance(p, ClusterDelta):
        return {"cluster_id": p.id}
    return {}
