"""Parsing what users and Ray's files give us: cluster addresses, port lists, host lists."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from castray.discovery.errors import AddressMalformed

_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed cluster address. ``url`` is True when given as ``http(s)://`` (then it is a dashboard)."""

    host: str
    port: int
    scheme: str = "http"
    url: bool = False

    @property
    def hostport(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"{self.scheme}://{self.hostport}"


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOST_RE.match(host))


def parse_address(raw: object) -> Address:
    """``http://host:port`` (a dashboard), or ``host:port`` (a dashboard or a GCS); else address_malformed."""
    if not isinstance(raw, str):
        raise AddressMalformed(f"cluster address must be a string, not {type(raw).__name__}")
    text = raw.strip()
    if not text or len(text) > 300 or any(c.isspace() for c in text):
        raise AddressMalformed(f"malformed cluster address {raw[:100]!r}")
    is_url = "://" in text
    try:
        parts = urlsplit(text if is_url else f"//{text}")
        host, port = parts.hostname, parts.port
    except ValueError as e:
        raise AddressMalformed(f"malformed cluster address {text!r}: {e}") from e
    scheme = parts.scheme.lower() if is_url else "http"
    if scheme not in ("http", "https"):
        raise AddressMalformed(f"unsupported scheme {parts.scheme!r} in {text!r} (use http://host:port)")
    if is_url and parts.path not in ("", "/"):
        raise AddressMalformed(f"a dashboard address has no path: {text!r}")
    if not host or not _valid_host(host):
        raise AddressMalformed(f"no valid host in cluster address {text!r}")
    if port is None:
        if not is_url:
            raise AddressMalformed(f"cluster address {text!r} needs a port, e.g. 127.0.0.1:8265")
        port = 443 if scheme == "https" else 80
    if not 0 < port < 65536:
        raise AddressMalformed(f"port out of range in {text!r}")
    return Address(host=host.lower(), port=port, scheme=scheme, url=is_url)


def parse_ports(spec: str) -> list[int]:
    """``"8265-8269,9000"`` -> [8265, ..., 8269, 9000] (deduplicated, in order)."""
    ports: list[int] = []
    for part in spec.replace(" ", "").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError as e:
            raise ValueError(f"bad port spec {part!r} in {spec!r}") from e
        if not (0 < first <= last < 65536) or last - first > 10_000:
            raise ValueError(f"bad port range {part!r} in {spec!r}")
        ports.extend(range(first, last + 1))
    return list(dict.fromkeys(ports))


def same_host(a: str, b: str) -> bool:
    return a == b or (a in LOOPBACK and b in LOOPBACK)
