"""Where clusters may be: configured addresses, Ray's session files, and open dashboard ports.

Each source yields `Candidate`s (an address and what it probably is); probing decides. File reads run in
a thread and the scan uses async connects, so neither blocks the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from castray.discovery.addresses import parse_ports
from castray.discovery.settings import DiscoverySettings
from castray.shared.address_policy import AddressPolicy
from castray.shared.errors import AddressNotAllowed

log = logging.getLogger(__name__)

_DASHBOARD_LINE = re.compile(rb"Dashboard head http address: ([0-9A-Za-z.\-\[\]:]+)")
MAX_FILE_BYTES = 4096
MAX_LOG_BYTES = 256 * 1024  # the address is logged at start-up, near the top of dashboard.log


@dataclass(frozen=True, slots=True)
class Candidate:
    source: str  # local, config, session-file, scan, connect
    address: str
    kind: str = "any"  # any, dashboard, gcs


def configured(settings: DiscoverySettings) -> list[Candidate]:
    out = [Candidate("config", a) for a in settings.discovery_addresses]
    if settings.local_cluster:
        out.insert(0, Candidate("local", settings.local_cluster))
    return out


def _read_head(path: Path, limit: int) -> bytes | None:
    try:
        with path.open("rb") as f:
            return f.read(limit)
    except OSError:
        return None


def read_session_files(temp_dirs: list[str], max_sessions: int) -> list[Candidate]:
    """Blocking: GCS addresses (``ray_current_cluster``, ``gcs_server_port_*``), dashboards (logs)."""
    out: list[Candidate] = []
    for temp in temp_dirs:
        root = Path(temp)
        current = _read_head(root / "ray_current_cluster", MAX_FILE_BYTES)
        if current and current.strip():
            out.append(Candidate("session-file", current.decode("utf-8", "replace").strip(), "gcs"))
        out.extend(_sessions(root, max_sessions))
    return out


def _sessions(root: Path, max_sessions: int) -> list[Candidate]:
    try:
        dirs = [p for p in root.glob("session_*") if p.name != "session_latest" and p.is_dir()]
        dirs.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return []
    out: list[Candidate] = []
    for session in dirs[:max_sessions]:
        with contextlib.suppress(OSError):
            for port_file in session.glob("gcs_server_port_*"):
                raw = _read_head(port_file, MAX_FILE_BYTES)
                port = raw.strip().decode("ascii", "replace") if raw else ""
                if port.isdigit() and 0 < int(port) < 65536:
                    out.append(Candidate("session-file", f"127.0.0.1:{port}", "gcs"))
        log_head = _read_head(session / "logs" / "dashboard.log", MAX_LOG_BYTES)
        if log_head:
            m = _DASHBOARD_LINE.search(log_head)
            if m:
                out.append(Candidate("session-file", m.group(1).decode(), "dashboard"))
    return out


async def session_files(settings: DiscoverySettings) -> list[Candidate]:
    return await asyncio.to_thread(read_session_files, settings.ray_temp_dirs, settings.max_sessions)


async def _is_open(host: str, port: int, timeout: float) -> bool:
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _allowed_hosts(hosts: list[str], policy: AddressPolicy) -> list[tuple[str, str]]:
    """(host, the address to connect to) of each scan host the policy allows; the others are skipped."""
    out: list[tuple[str, str]] = []
    for host in hosts:
        try:
            out.append((host, (await policy.check(host))[0]))
        except AddressNotAllowed as e:
            log.warning("scan host skipped: %s", e.message)
    return out


async def scan(settings: DiscoverySettings, policy: AddressPolicy | None = None) -> list[Candidate]:
    """Open ports among ``scan_hosts`` x ``scan_ports`` (the hosts the policy allows, by default the
    settings' own), connected to concurrently."""
    try:
        ports = parse_ports(settings.scan_ports)
    except ValueError as e:
        log.warning("scan skipped: %s", e)
        return []
    policy = policy or AddressPolicy.from_settings(settings)
    hosts = await _allowed_hosts(settings.scan_hosts, policy) if ports else []
    targets = [(h, ip, p) for h, ip in hosts for p in ports]
    limit = asyncio.Semaphore(settings.scan_concurrency)

    async def check(host: str, ip: str, port: int) -> Candidate | None:
        async with limit:
            if await _is_open(ip, port, settings.scan_connect_timeout):
                shown = f"[{host}]" if ":" in host else host
                return Candidate("scan", f"{shown}:{port}", "dashboard")
        return None

    found = await asyncio.gather(*(check(h, ip, p) for h, ip, p in targets))
    return [c for c in found if c is not None]
