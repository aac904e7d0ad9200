"""The contract between the transfer service and its drivers: what a driver runs (`Plan`) and what it
reports (`DriverEvent`), as JSON lines over the driver's stdin and stdout, through one codec (`encode`,
`decode_event`, `decode_command`).

Ray-free on purpose, like everything it imports: the service (asyncio, never imports Ray), the driver
process and the pipeline (Ray) all hold these very types, so a plan is built once
(`castray.transfer.planning`) and reaches the pipeline as it is.

Words: the record's `Source` (`castray.shared.transfers`) is what the user named (an upload, a node's
file, a generated file); a plan's `Input` is the file one driver reads, with everything needed to read it
(an upload is a `LocalFile` or a `GatewayFile`, and a relay leg reads the relay copy as a `LocalFile`).
An event's ``state`` is a record state (`FinalState`): a driver says ``completed`` where the record does.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from castray.shared.transfers import ContentType, FinalState, Source

__all__ = ["Cancel", "DestinationEnded", "DriverCommand", "DriverEvent", "Ended", "Fatal", "GatewayFile",
           "GeneratedFile", "Input", "LocalFile", "NodeFile", "Plan", "PlanDestination", "Progress", "Ready",
           "Run", "Source", "Started", "decode_command", "decode_event", "encode"]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- the input: which file one driver reads, and how ---------------------------------------------------
class LocalFile(_Message):
    """A file on the driver's own machine, read by the driver beneath ``root`` (never through a symlink):
    an upload in the data directory the gateway shares, or a relay copy."""

    kind: Literal["local"] = "local"
    root: str
    path: str = Field(description="Relative to root.")


class GatewayFile(_Message):
    """An upload streamed from the gateway (``GET /api/uploads/<id>/content``), when this service cannot
    see the gateway's disk."""

    kind: Literal["gateway"] = "gateway"
    url: str
    token: str = ""


class NodeFile(_Message):
    """A file on the source node, read there by its agent beneath ``root`` (the files root)."""

    kind: Literal["node_file"] = "node_file"
    root: str
    path: str


class GeneratedFile(_Message):
    """A file the source node's agent writes at ``path`` first, then reads (and removes at the end)."""

    kind: Literal["generated"] = "generated"
    path: str
    size: int = Field(ge=0)
    content: ContentType = "random"


Input = Annotated[LocalFile | GatewayFile | NodeFile | GeneratedFile, Field(discriminator="kind")]


# --- the plan ------------------------------------------------------------------------------------------
class PlanDestination(_Message):
    """Where one copy goes: a view node (or the relay copy), its Ray node, and the folder there."""

    node_id: str
    ray_node_id: str = Field(default="", description="Empty: the node this driver is attached to.")
    dir: str


class Plan(_Message):
    """Everything one driver needs to run one transfer (or one relay leg of it)."""

    id: str
    token: str = Field(description="This attempt's: names its temp files, so a retry never meets them.")
    input: Input
    source_ray_node: str = Field(default="", description=(
        "The Ray node whose agent reads a node's or a generated file; for a file the driver reads, where "
        "its chunks enter Ray. Empty: the node this driver is attached to."))
    dests: list[PlanDestination]
    file_name: str
    overwrite: bool = False
    retry: bool = Field(default=False, description="An earlier attempt may have placed copies already.")
    expected_sha: str | None = None
    chunk_bytes: int = 16 * 1024 * 1024
    inflight: int = 4
    rate_limit: int = 0
    progress_interval: float = 0.25
    node_timeout: float = 60.0
    chunk_timeout: float = Field(default=15.0, gt=0, description=(
        "Seconds the driver waits for the oldest chunk's writes (longer if rate_limit makes a chunk "
        "slower): a destination that has not answered by then fails (`castray.transfer.pacing`)."))
    chain: bool = Field(default=True, description=(
        "Several destinations: each feeds the next (`castray.transfer.chain`), so the source sends each "
        "byte once; False: every destination pulls from the source (Ray's star)."))
    direct: bool = Field(default=False, description=(
        "With chain: the chain's bytes flow over direct TCP connections between the node agents "
        "(`castray.transfer.direct`), each port listening on its node's address for one peer that "
        "sends this transfer's secret, the Ray chain kept as the fallback; False: through Ray's object "
        "manager only. The service sets it from CASTRAY_BROADCAST_DIRECT (true by default)."))


# --- service -> driver ---------------------------------------------------------------------------------
class Run(_Message):
    op: Literal["run"] = "run"
    plan: Plan


class Cancel(_Message):
    op: Literal["cancel"] = "cancel"
    id: str


DriverCommand = Annotated[Run | Cancel, Field(discriminator="op")]


# --- driver -> service ---------------------------------------------------------------------------------
class Ready(_Message):
    """Connected to Ray; ``ray_node_id``: the node beside the driver (where relay copies are written)."""

    ev: Literal["ready"] = "ready"
    ray_version: str
    pid: int
    ray_node_id: str


class Fatal(_Message):
    """The driver cannot connect to Ray, and exits."""

    ev: Literal["fatal"] = "fatal"
    error: str


class Started(_Message):
    """The input is open: its size is known."""

    ev: Literal["started"] = "started"
    id: str
    bytes_total: int


class Progress(_Message):
    ev: Literal["progress"] = "progress"
    id: str
    dests: dict[str, int] = Field(description="Bytes written so far, by destination node id.")


class DestinationEnded(_Message):
    """One destination's outcome; a completed one says where its verified copy is."""

    ev: Literal["destination"] = "destination"
    id: str
    node_id: str
    state: FinalState
    error: str | None = None
    path: str | None = None
    sha256: str | None = None
    bytes_done: int | None = None


class Ended(_Message):
    """The last event of a plan. ``bytes_read``: how many bytes the input was read for (its size: once)."""

    ev: Literal["ended"] = "ended"
    id: str
    state: FinalState
    sha256: str | None = None
    error: str | None = None
    bytes_read: int = 0


DriverEvent = Annotated[Ready | Fatal | Started | Progress | DestinationEnded | Ended,
                        Field(discriminator="ev")]

_EVENTS: TypeAdapter[DriverEvent] = TypeAdapter(DriverEvent)
_COMMANDS: TypeAdapter[DriverCommand] = TypeAdapter(DriverCommand)


def encode(message: Run | Cancel | Ready | Fatal | Started | Progress | DestinationEnded | Ended) -> bytes:
    """One line of the protocol (a command or an event)."""
    return message.model_dump_json().encode() + b"\n"


def decode_event(line: bytes | str) -> DriverEvent:
    """An event line from a driver (`pydantic.ValidationError` if it is not one)."""
    return _EVENTS.validate_json(line)


def decode_command(line: bytes | str) -> DriverCommand:
    """A command line from the service (`pydantic.ValidationError` if it is not one)."""
    return _COMMANDS.validate_json(line)
