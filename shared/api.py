"""The REST API's reply bodies, one model each, imported by the gateway (which answers with them) and by
`castray.client` (which reads them), so the two sides cannot drift apart.

Records themselves (`ClusterInfo`, `NodeInfo`, `TransferRecord`, `UploadRecord`) live with their contract
(`castray.shared.events`, `castray.shared.transfers`); these are the envelopes around them. The discover,
connect and disconnect replies are the original CastRay's shapes (built by the gateway's adapter,
``castray.gateway.original.clusters``): their models here name only the fields a client reads.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from castray.shared.events import ClusterInfo, NodeInfo
from castray.shared.heartbeat import ServiceReplica
from castray.shared.transfers import ContentType, TransferRecord, UploadRecord


class Reply(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ClusterSummary(ClusterInfo):
    """A cluster with its address and node counts (``node_count`` leaves DEAD nodes out)."""

    address: str | None = None
    external: bool = True
    node_count: int = 0
    alive_node_count: int = 0
    dead_node_count: int = 0


class ClusterList(Reply):
    """``GET /api/clusters``."""

    success: bool = True
    clusters: list[ClusterSummary]
    count: int
    epoch: str
    version: int


class ClusterDetail(Reply):
    """``GET /api/clusters/{id}``."""

    success: bool = True
    cluster: ClusterSummary
    nodes: list[NodeInfo]
    epoch: str
    version: int


class SomeNodeFields(BaseModel):
    """A node with only the fields asked for (``fields=``), ``id`` always."""

    model_config = ConfigDict(extra="allow")
    id: str


NodeT = TypeVar("NodeT", bound=BaseModel)


class NodePage(Reply, Generic[NodeT]):
    """The body of ``GET /api/nodes``, whatever its nodes hold: `NodeList` or `NodeFieldList`."""

    success: bool = True
    nodes: list[NodeT]
    count: int
    epoch: str
    version: int
    total: int | None = None
    next_cursor: str | None = None


class NodeList(NodePage[NodeInfo]):
    """``GET /api/nodes`` (``total`` and ``next_cursor`` only when a ``limit`` or ``cursor`` was asked)."""


class NodeFieldList(NodePage[SomeNodeFields]):
    """``GET /api/nodes?fields=...``: a `NodeList` whose nodes have only the fields asked for."""


class NodeDetail(Reply):
    """``GET /api/nodes/{id}``."""

    success: bool = True
    node: NodeInfo


class DiscoverResult(Reply):
    """``POST /api/cluster/discover-external``."""

    success: bool
    discovered_clusters: list[ClusterInfo] = Field(default_factory=list)
    connected_cluster: str | None = None
    external_nodes: dict[str, NodeInfo] = Field(default_factory=dict)
    error: str | None = None


class ConnectResult(Reply):
    """``POST /api/cluster/connect-external``."""

    success: bool = True
    message: str
    cluster: ClusterInfo
    external_nodes: dict[str, NodeInfo] = Field(default_factory=dict)


class DisconnectResult(Reply):
    """``DELETE /api/cluster/disconnect-external``."""

    success: bool = True
    message: str
    disconnected: list[str]


class TransferQueued(BaseModel):
    """``POST /api/transfers`` (202)."""

    id: str
    state: str = "queued"
    targets: list[str] = Field(default_factory=list, description="Destination node ids.")


class TransferList(BaseModel):
    """``GET /api/transfers``."""

    transfers: list[TransferRecord]
    total: int
    limit: int
    offset: int


class UploadList(BaseModel):
    """``GET /api/uploads``."""

    uploads: list[UploadRecord]
    total: int
    limit: int
    offset: int


class UploadDeleted(BaseModel):
    """``DELETE /api/uploads/{id}``."""

    success: bool = True
    upload_id: str
    deleted_size: int
    message: str


class QueueDepth(BaseModel):
    """The transfer request stream: entries on it, and those delivered to a worker but not acknowledged."""

    length: int = Field(description="XLEN of the request stream.")
    pending: int = Field(description="Entries the transfer workers' group holds unacknowledged (XPENDING).")


class ServiceList(BaseModel):
    """``GET /api/services``: every service replica's heartbeat, stale ones marked."""

    services: list[ServiceReplica]
    count: int
    stale: int = Field(description="How many of them are stale.")
    transfer_queue: QueueDepth


class Readiness(BaseModel):
    """``GET /api/ready``."""

    ready: bool
    redis: bool
    events_subscribed: bool
    error: str | None = None


# --- the original CastRay's request bodies (and /api/send's answer), as its page sends them ---------------
# The gateway's adapter (``castray.gateway.original``, ``files_api``, ``legacy_transfers_api``) parses them;
# `castray.client` sends them.

class CastMessage(BaseModel):
    """The original's message shape."""

    model_config = ConfigDict(extra="ignore")
    id: str | None = Field(default=None, max_length=200)
    cast_type: Literal["unicast", "multicast", "broadcast"]
    message_type: Literal["text", "json", "file"] = "text"
    content: str | dict[str, Any] | list[Any] = ""
    sender: str = Field(default="api", max_length=200)
    recipients: list[str] = Field(default_factory=list, max_length=10_000)
    group_id: str | None = Field(default=None, max_length=200)
    timestamp: float | None = None
    file_path: str | None = None
    file_size: int | None = None


class CastResponse(BaseModel):
    success: bool
    message: str
    recipients_count: int
    failed_recipients: list[str]
    delivery_time: float = Field(description="Seconds the delivery took.")
    message_id: str


class CreateFile(BaseModel):
    model_config = ConfigDict(extra="ignore")
    size: str | int = Field(default="1KB", description="Bytes, or '1KB', '1.5MB', '2GB', '64MiB'.")
    content_type: ContentType = "text"
    file_name: str = Field(default="", max_length=1000)
    include_metadata: bool = Field(default=False, description="Accepted and ignored: the size is exact.")


class CreatePreset(BaseModel):
    model_config = ConfigDict(extra="ignore")
    preset: str = "medium"
    content_type: ContentType = "text"
    file_name: str = Field(default="", max_length=1000)


class CreateAndTransfer(CreateFile):
    sender_id: str | None = Field(default=None, description="A node of the view (picks the cluster).")
    recipients: list[str] = Field(default_factory=list, max_length=10_000)


class CreateDemo(BaseModel):
    model_config = ConfigDict(extra="ignore")
    size: str | int = Field(default="1MB", description="Bytes, or '1KB', '1.5MB', '2GB', '64MiB'.")
    content_type: ContentType = "random"


class ManualTransfer(BaseModel):
    model_config = ConfigDict(extra="ignore")
    sender_id: str = Field(min_length=1, max_length=200)
    file_name: str = Field(default="demo_file.txt", max_length=1000)
    recipients: list[str] = Field(default_factory=list, max_length=10_000)


class AutoToggle(BaseModel):
    model_config = ConfigDict(extra="ignore")
    node_id: str = Field(default="", max_length=200)
    enabled: bool = True
