"""The transfer contract between the gateway (which validates and queues requests) and the transfer
workers (which run them): the record kept in Redis, and the request on the stream that names it.

Record: ``Names.transfer(id)`` holds the msgpack of the current `TransferRecord` (the one shape of a
transfer: the gateway writes it, state ``queued``, before queueing it); ``Names.transfer_index`` orders ids
by creation time. Request stream: ``Names.transfer_requests``; each entry's ``data`` is a `QueuedTransfer`,
the id of a stored record (the record is its one copy). Cancel: the gateway sets
``cancel_requested`` on the record (and state ``cancelled`` if still queued); the worker checks it.
Upload: ``Names.upload(id)`` holds the msgpack of an `UploadRecord`; ``Names.upload_index`` orders ids by
creation time.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

TransferMode = Literal["unicast", "multicast", "broadcast"]
TransferState = Literal["queued", "running", "completed", "failed", "cancelled"]
FinalState = Literal["completed", "failed", "cancelled"]
FINAL_STATES: tuple[FinalState, ...] = ("completed", "failed", "cancelled")
DestState = Literal["pending", "running", "completed", "failed", "cancelled"]
ContentType = Literal["random", "text", "pattern"]
UploadOrigin = Literal["upload", "generated"]


class UploadSource(BaseModel):
    """A file uploaded through ``POST /api/upload``: ``<data dir>/uploads/<upload_id>/<file_name>``."""

    model_config = ConfigDict(extra="forbid")
    upload_id: str = Field(pattern=r"^[0-9a-f]{32}$")


class UploadRecord(BaseModel):
    """A stored upload (or a generated file registered like one), as the gateway records it at
    ``Names.upload(id)``; the transfer worker reads it to plan a transfer from that file."""

    upload_id: str
    file_name: str
    file_size: int
    sha256: str
    path: str = Field(description="Path of the stored file relative to the data directory, e.g. "
                      "uploads/<upload_id>/<file_name> (absolute in records written before 2026-12).")
    created_at: float
    origin: UploadOrigin = Field(
        default="upload", description="Uploaded through POST /api/upload, or made by the file generator.")


class NodeFileSource(BaseModel):
    """A file already on a node, relative to that node's files root (``CASTRAY_FILES_ROOT``)."""

    model_config = ConfigDict(extra="forbid")
    node_id: str = Field(min_length=1, max_length=200)
    path: str = Field(min_length=1, max_length=4096)


class GenerateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: str | int = Field(description="Bytes, or '64MB', '1.5MiB', '2GB', ...")
    content: ContentType = "random"
    file_name: str | None = Field(default=None, max_length=255)


class GenerateSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    generate: GenerateSpec
    node_id: str | None = Field(default=None, description="Node to generate on (default: a head).")


SourceKind = Literal["upload", "node_file", "generate"]


def source_kind(value: object) -> SourceKind | None:
    """The tag of a source, in JSON or as a model. The API's shapes carry no tag field (``{"upload_id"}``,
    ``{"node_id", "path"}``, ``{"generate"}``, each with ``extra="forbid"``): their one distinguishing key
    is the tag, read here and nowhere else, so every other module matches on the model's type."""
    if isinstance(value, UploadSource | NodeFileSource | GenerateSource):
        return _KINDS[type(value)]
    if not isinstance(value, dict):
        return None
    if "upload_id" in value:
        return "upload"
    if "generate" in value:
        return "generate"
    return "node_file" if "path" in value else None


_KINDS: dict[type[BaseModel], SourceKind] = {
    UploadSource: "upload", NodeFileSource: "node_file", GenerateSource: "generate"}

Source = Annotated[
    Annotated[UploadSource, Tag("upload")] | Annotated[NodeFileSource, Tag("node_file")]
    | Annotated[GenerateSource, Tag("generate")],
    Discriminator(source_kind, custom_error_type="source_kind", custom_error_message=(
        "source must be an upload {upload_id}, a node's file {node_id, path} or a generated file "
        "{generate}"))]
"""What a transfer sends: the request's ``source`` and the record's, the same tagged union."""


class TransferRequest(BaseModel):
    """Body of ``POST /api/transfers``."""

    model_config = ConfigDict(extra="forbid")
    source: Source
    mode: TransferMode
    targets: list[str] = Field(default_factory=list, max_length=10_000)
    file_name: str | None = Field(default=None, max_length=255, description="Name at the destinations.")
    overwrite: bool = False


class Destination(BaseModel):
    node_id: str
    state: DestState = "pending"
    bytes_done: int = 0
    path: str | None = None
    sha256: str | None = None
    error: str | None = None


class QueuedTransfer(BaseModel):
    """A request on the stream: which stored record to run."""

    id: str = Field(min_length=1)


class TransferRecord(BaseModel):
    """What ``GET /api/transfers/{id}`` answers."""

    id: str
    state: TransferState = "queued"
    mode: TransferMode
    source: Source
    cluster_id: str | None = None
    source_node_id: str | None = None
    file_name: str
    bytes_total: int = 0
    sha256: str | None = None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    destinations: list[Destination]
    error: str | None = None
    waiting_for: str | None = Field(default=None, description=(
        "While a running transfer waits for something the node view does not have yet (e.g. its cluster's "
        "GCS address, learned shortly after the nodes show ALIVE): what. It fails if that takes longer "
        "than the transfer service's ready_timeout."))
    overwrite: bool = False
    cancel_requested: bool = False
    worker: str | None = None
    attempts: int = Field(default=0, description=(
        "Times a transfer worker began handling the request; past the transfer service's max_deliveries "
        "it is given up (failed, and its request moved to the dead-letter stream)."))
    sender_id: str | None = Field(default=None, description=(
        "Node the original CastRay's endpoints name as sender (statistics only; data comes from source)."))
