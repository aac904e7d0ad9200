"""Discovery settings (``CASTRAY_`` environment variables, e.g. ``CASTRAY_SCAN_PORTS=8265-8269,9000``).

List settings accept a comma-separated string from the environment as well as JSON.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from castray.shared.address_policy import AddressPolicySettings
from castray.shared.settings import CsvList


def default_ray_temp_dirs() -> list[str]:
    """Where Ray keeps its session files: ``$RAY_TMPDIR/ray`` (as Ray itself uses it), else ``/tmp/ray``."""
    dirs: list[str] = []
    for var in ("RAY_TMPDIR", "TMPDIR"):
        base = os.environ.get(var)
        if base:
            dirs.append(str(Path(base) / "ray"))
            break
    dirs.append("/tmp/ray")
    return list(dict.fromkeys(dirs))


class DiscoverySettings(AddressPolicySettings):
    """What discovery looks at and how often (the addresses it may contact: `AddressPolicySettings`)."""

    ray_temp_dirs: CsvList = Field(
        default_factory=default_ray_temp_dirs,
        description="Ray temp dirs holding ray_current_cluster and session_*/ (CASTRAY_RAY_TEMP_DIRS); "
        "default $RAY_TMPDIR/ray (else $TMPDIR/ray) and /tmp/ray.",
    )
    max_sessions: int = Field(
        default=10, ge=0, description="Newest session_* dirs read per temp dir (older ones are stale)."
    )
    scan_ports: str = Field(
        default="8265-8269", description="Dashboard ports scanned: ranges and lists, e.g. '8265-8269,9000'."
    )
    scan_interval: float = Field(default=10.0, gt=0, description="Seconds between periodic discovery passes.")
    scan_connect_timeout: float = Field(
        default=0.5, gt=0, description="TCP connect timeout of the port scan."
    )
    scan_concurrency: int = Field(default=64, ge=1, description="Most probes in flight during a pass.")
    poll_interval: float = Field(default=1.0, gt=0, description="Seconds between node polls of one cluster.")
    poll_timeout: float = Field(default=2.0, gt=0, description="Timeout of one HTTP request to a dashboard.")
    lost_after: int = Field(default=3, ge=1, description="Failed polls in a row before cluster-lost.")
    connect_timeout: float = Field(
        default=8.0, gt=0, description="Total time a connect command (or one probe in a pass) may take."
    )
    max_response_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="Largest dashboard response body read."
    )
    max_cluster_nodes: int = Field(
        default=10_000, ge=1,
        description="Most nodes one dashboard may list (Ray's state API lists at most 10000); a longer list "
        "makes the cluster fail, with the reason.",
    )
    max_new_nodes_per_minute: float = Field(
        default=1000.0, gt=0,
        description="Node ids a cluster may show that discovery did not know, per minute, after a burst of "
        "CASTRAY_MAX_CLUSTER_NODES: a node list that changes on every poll makes the cluster fail.",
    )
    min_ray_version: str = Field(default="2.9.0", description="Oldest Ray version accepted.")
    state_check_interval: float = Field(
        default=1.0, gt=0, description="Seconds between checks that Redis still holds discovery's state."
    )
    leader_ttl: float = Field(
        default=5.0, ge=0.5,
        description="Seconds a discovery replica leads without renewing its lease: one replica leads, the "
        "others stand by, and one of them takes over this long after the leader died.",
    )
