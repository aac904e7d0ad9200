"""Is a Ray cluster already running where discovery will look? (``castray up`` asks before starting one.)

A quick, blocking look at the same places discovery watches, read from discovery's own settings so the
two always agree: the configured addresses, Ray's ``ray_current_cluster`` session files (checked: the file
outlives a crashed cluster) and the dashboard port scan (8265-8269 on 127.0.0.1 by default).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from castray.shared.hosts import host_of


@dataclass
class Where:
    """Where discovery looks; defaults mirror discovery's settings."""

    addresses: list[str] = field(default_factory=list)
    temp_dirs: list[str] = field(default_factory=list)
    scan_hosts: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    scan_ports: list[int] = field(default_factory=lambda: list(range(8265, 8270)))
    # Hosts that may be contacted (discovery's CASTRAY_DISCOVERY_ALLOW policy): nothing else is.
    allowed: Callable[[str], bool] = lambda host: True


def where_discovery_looks() -> Where:
    """Read discovery's settings from the environment (the same variables its process will read)."""
    try:
        from castray.discovery.addresses import parse_ports
        from castray.discovery.settings import DiscoverySettings
    except ImportError:  # discovery not installed: look where Ray itself would
        base = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR")
        dirs = [str(Path(base) / "ray")] if base else []
        return Where(temp_dirs=[*dirs, "/tmp/ray"])
    from castray.shared.address_policy import AddressPolicy

    s = DiscoverySettings()
    return Where(addresses=list(s.discovery_addresses), temp_dirs=list(s.ray_temp_dirs),
                 scan_hosts=list(s.scan_hosts), scan_ports=parse_ports(s.scan_ports),
                 allowed=AddressPolicy.from_settings(s).allows_blocking)


def _tcp_answers(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a redirect is an answer that is not a dashboard: never followed elsewhere


# Only the checked host is contacted: no redirect followed, no proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def dashboard_answers(url: str, timeout: float = 1.0) -> bool:
    """True if ``url`` serves a Ray dashboard (``/api/version`` names a Ray version). Whatever else answers
    there (a redirect, deeply nested JSON, garbage) is a no."""
    with contextlib.suppress(OSError, ValueError, RecursionError, TypeError):
        with _OPENER.open(f"{url.rstrip('/')}/api/version", timeout=timeout) as resp:
            body = json.loads(resp.read(65536))
            return isinstance(body, dict) and "ray_version" in body
    return False


def _address_answers(address: str, timeout: float, allowed: Callable[[str], bool]) -> bool:
    url = address if "://" in address else f"http://{address}"
    if not allowed(host_of(url)):
        return False
    if dashboard_answers(url, timeout):
        return True
    parts = urlsplit(url)  # host:port of a GCS: it speaks gRPC; that it listens is enough here
    return bool(parts.hostname and parts.port and _tcp_answers(parts.hostname, parts.port, timeout))


def _session_file_cluster(temp_dir: str, timeout: float, allowed: Callable[[str], bool]) -> str | None:
    path = Path(temp_dir) / "ray_current_cluster"
    with contextlib.suppress(OSError, ValueError):
        host, _, port = path.read_text().strip().rpartition(":")
        if allowed(host) and _tcp_answers(host, int(port), timeout):
            return f"{host}:{port} (from {path})"
    return None


def find_cluster(where: Where, timeout: float = 1.0) -> str | None:
    """A description of one running cluster discovery will find, or None."""
    for address in where.addresses:
        if _address_answers(address, timeout, where.allowed):
            return f"{address} (CASTRAY_DISCOVERY_ADDRESSES)"
    for temp_dir in where.temp_dirs:
        found = _session_file_cluster(temp_dir, timeout, where.allowed)
        if found:
            return found
    hosts = [h for h in where.scan_hosts if where.allowed(h)] if where.scan_ports else []
    urls = [f"http://{h}:{p}" for h in hosts for p in where.scan_ports]
    if not urls:
        return None
    with ThreadPoolExecutor(max_workers=min(16, len(urls))) as pool:
        for url, ok in zip(urls, pool.map(lambda u: dashboard_answers(u, timeout), urls), strict=True):
            if ok:
                return f"{url} (dashboard port scan)"
    return None
