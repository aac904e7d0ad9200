"""Transfer service settings (``CASTRAY_`` environment variables)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from castray.shared.address_policy import AddressPolicySettings

MiB = 1024 * 1024


class TransferSettings(AddressPolicySettings):
    """Transfer's settings; the GCS addresses it may ``ray.init`` against: `AddressPolicySettings`."""

    data_dir: Path = Field(default=Path("var/castray"), description="Uploads and generated files.")
    inbox_dir: Path | None = Field(
        default=None, description="Root of the inboxes: files land at <inbox>/<node id>/<name>. "
        "Default <data dir>/inbox. The same absolute path is used on every node.")
    files_root: Path | None = Field(
        default=None, description="Root that node-file sources are relative to (default <data dir>/files).")
    chunk_bytes: int = Field(default=16 * MiB, ge=64 * 1024, le=512 * MiB,
                             description="Bytes per chunk moved through Ray's object store.")
    inflight_chunks: int = Field(default=4, ge=1, le=64, description="Chunks in flight per transfer.")
    broadcast_chain: bool = Field(
        default=True, description="Send to several nodes as a chain, each node feeding the next (the "
        "source sends each byte once); false: every node pulls from the source (Ray's star).")
    broadcast_direct: bool = Field(
        default=True, description="With broadcast_chain: the chain's bytes flow over direct TCP "
        "connections between the node agents (a port per destination, on its node's address, for one "
        "peer holding the transfer's secret), the Ray chain as the fallback; false: the chain runs "
        "through Ray's object stores.")
    max_transfers: int = Field(default=4, ge=1, le=256, description="Transfers this replica runs at once.")
    claim_idle_ms: int = Field(default=15_000, ge=500,
                               description="A request pending this long without a heartbeat is taken over.")
    max_deliveries: int = Field(
        default=3, ge=1, le=100, description="A request whose handling raised an unexpected error (or whose "
        "replica died) this many times is given up: its record fails with the reason and the entry moves "
        "to the dead-letter stream (<namespace>:transfers:dead-letters).")
    heartbeat_s: float = Field(default=0.0, ge=0.0,
                               description="Heartbeat period (0: a quarter of claim_idle_ms).")
    progress_interval: float = Field(default=0.25, gt=0.0,
                                     description="Seconds between progress events of one transfer.")
    rate_limit: int = Field(default=0, ge=0, description="Bytes per second per transfer (0: unlimited).")
    driver_start_timeout: float = Field(default=90.0, gt=0, description="Seconds to connect to a cluster.")
    node_timeout: float = Field(default=60.0, gt=0,
                                description="Seconds to wait for a node's agent to start.")
    chunk_timeout: float = Field(
        default=15.0, gt=0, description="Seconds to wait for the oldest chunk in flight to be written "
        "(longer if rate_limit makes a chunk slower): a node that has not answered by then (hung, not "
        "dead) fails with 'node did not answer in time' and the others go on. A destination that hears "
        "nothing for 3 times this aborts its copy and removes its temporary file.")
    ready_timeout: float = Field(
        default=60.0, gt=0, description="Seconds a transfer waits for what the node view does not have yet "
        "(a cluster's GCS address, which discovery learns shortly after the nodes; an UNREACHABLE node) "
        "before it fails, saying what it waited for.")
    gateway_url: str | None = Field(
        default=None, description="Set when this service does not share the gateway's data directory "
        "(another machine, no shared volume): uploads are then streamed from the gateway "
        "(GET <url>/api/uploads/<id>/content), e.g. http://gateway:8000.")
    api_token: str | None = Field(
        default=None, description="If set, the gateway requires this bearer token on REST and /ws, and "
        "transfer workers send it when they read uploads from the gateway.")

    def inbox_root(self) -> Path:
        """Absolute inbox root."""
        return (self.inbox_dir or self.data_dir / "inbox").absolute()

    def files_root_dir(self) -> Path:
        """Absolute root of node-file sources."""
        return (self.files_root or self.data_dir / "files").absolute()

    def heartbeat_period(self) -> float:
        return self.heartbeat_s or self.claim_idle_ms / 4000
