"""Gateway settings (``CASTRAY_`` environment variables)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from castray.shared.settings import CommonSettings


class GatewaySettings(CommonSettings):
    host: str = Field(default="127.0.0.1", description="Address the gateway binds.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port the gateway serves on.")
    max_body_bytes: int = Field(default=1024 * 1024, description="Largest JSON request body.")
    max_upload_bytes: int = Field(default=20 * 1024**3, description="Largest file upload.")
    max_generate_bytes: int = Field(default=1024**3, ge=1,
                                    description="Largest generated file (file generator, generate sources).")
    messages_per_node: int = Field(default=100, ge=1, description="Messages kept per node (/api/send).")
    data_dir: Path = Field(default=Path("var/castray"), description="Uploads and generated files.")
    command_timeout: float = Field(default=10.0, description="Seconds to wait for discovery to answer.")
    ws_queue_size: int = Field(default=1000, ge=1,
                               description="Events buffered per WebSocket before a resnapshot.")
    api_token: str | None = Field(default=None, description="If set, REST and /ws require this bearer token.")
    ws_heartbeat: float = Field(default=20.0, gt=0, description="Seconds between WebSocket pings.")
    ws_replay_limit: int = Field(default=10_000, ge=1, description="Most view deltas replayed on resume.")
    status_interval: float = Field(default=1.0, gt=0,
                                   description="Least seconds between status_update pushes.")
