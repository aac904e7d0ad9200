"""Settings of ``castray up`` (the one-machine supervisor), from ``CASTRAY_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from castray.shared.address_policy import AddressPolicySettings
from castray.shared.settings import CommonSettings


class UpSettings(CommonSettings):
    host: str = Field(default="127.0.0.1", description="Address the gateway binds.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port the gateway serves on.")
    data_dir: Path = Field(default=Path("var/castray"),
                           description="Working data: uploads, the embedded Redis, a local Ray head.")
    start_ray: bool = Field(default=True,
                            description="`castray up`: start a local Ray head when no cluster is found.")
    ray_dashboard_port: int = Field(default=8265, ge=1, le=65535,
                                    description="`castray up`: dashboard port of the head it starts "
                                    "(a free port if this one is busy).")
    ray_num_cpus: int | None = Field(default=None, ge=1,
                                     description="`castray up`: CPUs of the head it starts (default: all).")
    shutdown_grace: float = Field(default=7.5, gt=0, le=60,
                                  description="`castray up`: seconds from SIGTERM to SIGKILL of a child.")
    restart_max_delay: float = Field(default=30.0, gt=0,
                                     description="`castray up`: longest wait before restarting a dead child.")


class JoinSettings(AddressPolicySettings):
    """``CASTRAY_JOIN_RAY`` (the field lives in `AddressPolicySettings`: the join addresses are allowed)."""
