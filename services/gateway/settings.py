"""Gateway settings (``CASTRAY_`` environment variables)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from castray.shared import exposure
from castray.shared.hosts import host_of
from castray.shared.settings import CsvList

_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(value: str) -> str:
    """``scheme://host[:port]`` in lower case, the scheme's default port left out; ValueError otherwise."""
    parts = urlsplit(value.strip().lower())
    try:
        port = parts.port
    except ValueError as e:
        raise ValueError(f"{value!r}: bad port") from e
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{value!r} is not an origin; write it as scheme://host[:port], "
                         "e.g. https://castray.example.com")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is None or port == _DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


class GatewaySettings(exposure.ExposureSettings):
    host: str = Field(default="127.0.0.1", description="Address the gateway binds.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port the gateway serves on.")
    max_body_bytes: int = Field(default=1024 * 1024, description="Largest JSON request body.")
    max_upload_bytes: int = Field(default=20 * 1024**3, description="Largest file upload.")
    max_generate_bytes: int = Field(default=1024**3, ge=1,
                                    description="Largest generated file (file generator, generate sources).")
    storage_quota_bytes: int = Field(
        default=100 * 1024**3, ge=0, description="Most bytes of stored uploads plus generated files under "
        "the data directory (0: no quota); an upload or generation that would pass it gets 507.")
    storage_min_free_bytes: int = Field(
        default=512 * 1024**2, ge=0, description="Free space always left on the data directory's disk (0: "
        "none); an upload or generation that would leave less gets 507.")
    transfer_records_max_age: float = Field(
        default=30 * 86400.0, ge=0, description="Seconds a finished transfer's record (and its index entry) "
        "is kept, counted from its creation (0: no age limit); applied whenever a transfer is queued.")
    transfer_records_max_count: int = Field(
        default=10_000, ge=0, description="Transfer records kept: finished ones older than the newest this "
        "many are removed (0: no count limit); applied whenever a transfer is queued.")
    messages_per_node: int = Field(default=100, ge=1, description="Messages kept per node (/api/send).")
    messages_kept: int = Field(
        default=1000, ge=1, description="Message bodies kept in all (/api/send stores each message once, "
        "whatever its number of recipients); the oldest beyond are removed.")
    max_message_bytes: int = Field(
        default=64 * 1024, ge=1, description="Largest /api/send content (UTF-8 bytes of the text, or of the "
        "JSON); larger is 413.")
    data_dir: Path = Field(default=Path("var/castray"), description="Uploads and generated files.")
    command_timeout: float = Field(default=10.0, description="Seconds to wait for discovery to answer.")
    ws_queue_size: int = Field(default=1000, ge=1,
                               description="Events buffered per WebSocket before a resnapshot.")
    allowed_origins: CsvList = Field(
        default_factory=list, description="Browser origins, besides the gateway's own, whose pages may "
        "change things (POST, DELETE, /ws), e.g. https://castray.example.com for a reverse proxy that "
        "rewrites Host. Their host names are allowed Hosts too.")
    allowed_hosts: CsvList = Field(
        default_factory=list, description="Host header names answered besides loopback ones, the bind "
        "address and (on a wildcard bind) IP addresses and this machine's name; '.example.com' allows "
        "its subdomains, '*' any (turns off the DNS-rebinding check). Others get 403.")
    ws_heartbeat: float = Field(default=20.0, gt=0, description="Seconds between WebSocket pings.")
    ws_replay_limit: int = Field(default=10_000, ge=1, description="Most view deltas replayed on resume.")
    heavy_requests: int = Field(
        default=8, ge=1, description="Requests that build and send a large view body (/api/nodes, "
        "/api/status, /api/clusters, external nodes and info) at once; more wait in the queue.")
    heavy_queue: int = Field(
        default=64, ge=0, description="Such requests that wait for one of those slots (at most 5 s); beyond "
        "it, or after the wait, 503 overloaded with Retry-After. A 304, /api/health and /api/ready never "
        "wait.")
    status_interval: float = Field(default=1.0, gt=0,
                                   description="Least seconds between status_update pushes.")
    gateway_processes: int = Field(
        default=1, ge=1, le=64, description="Gateway processes serving the one port (SO_REUSEPORT: the "
        "kernel spreads connections over them); the first starts the others, restarts any that dies and "
        "stops them with it. Each has its own Redis subscription, view cache and heavy slots.")
    reuse_port: bool = Field(
        default=False, description="Bind with SO_REUSEPORT, so that other gateways started by the same "
        "user on this machine may share the port (implied by gateway_processes > 1).")

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        return [normalize_origin(v) for v in value]

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        return [host_of(v) for v in value]
