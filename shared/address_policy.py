"""Which hosts CastRay may contact: the one policy that discovery (dashboards, GCSs, the port scan) and
transfer (``ray.init`` against a GCS) both apply before any packet leaves.

``CASTRAY_DISCOVERY_ALLOW`` lists CIDRs, addresses and host names. Unset, the list is loopback, this
machine's own addresses, and every host configured (``CASTRAY_DISCOVERY_ADDRESSES``,
``CASTRAY_LOCAL_CLUSTER``, ``CASTRAY_JOIN_RAY``, ``CASTRAY_SCAN_HOSTS``). A host name is allowed when it is
listed, or when every address it resolves to is; a listed name also allows the addresses it resolves to (so
that a GCS that a configured dashboard reports by IP is reached). DNS may point a name anywhere: names
are resolved and their addresses checked too, and link-local and cloud metadata addresses are refused
unless a range inside them is listed explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psutil
from pydantic import Field

from castray.shared.errors import AddressNotAllowed
from castray.shared.hosts import IP, host_of, ip_of, normal
from castray.shared.settings import CommonSettings, CsvList

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# Loopback, and the unspecified addresses, which reach this machine too (a dashboard on 0.0.0.0 says so).
LOOPBACK: tuple[Network, ...] = tuple(ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "::1/128", "0.0.0.0/32", "::/128",
))
# Never reached unless named: link-local (cloud metadata at 169.254.169.254, AWS's fd00:ec2::254), and
# Alibaba's and Azure's metadata addresses.
FORBIDDEN: tuple[Network, ...] = tuple(ipaddress.ip_network(n) for n in (
    "169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32", "168.63.129.16/32",
))
RESOLVE_TTL = 30.0  # seconds the addresses of a listed name are trusted before it is resolved again
RESOLVE_TIMEOUT = 5.0


class AddressPolicySettings(CommonSettings):
    """The settings the policy is built from; discovery's and transfer's settings extend them."""

    discovery_allow: CsvList = Field(
        default_factory=list,
        description="CIDRs, addresses and host names discovery and transfer may contact (comma-separated). "
        "Default: loopback, this machine's own addresses, and every configured host (discovery addresses, "
        "local cluster, join addresses, scan hosts). Link-local and metadata addresses only when listed.",
    )
    discovery_addresses: CsvList = Field(
        default_factory=list,
        description="Clusters to watch (CASTRAY_DISCOVERY_ADDRESSES, comma-separated): a dashboard URL "
        "http://host:port, or host:port of a dashboard or of a GCS (probed: HTTP /api/version first, "
        "then the GCS's gRPC key-value store, which names the dashboard).",
    )
    local_cluster: str | None = Field(
        default=None,
        description="Address of the cluster `castray up` started itself (found_by=local, external=False).",
    )
    scan_hosts: CsvList = Field(
        default_factory=lambda: ["127.0.0.1"], description="Hosts whose dashboard ports are scanned."
    )
    join_ray: CsvList = Field(
        default_factory=list,
        description="`castray transfer`: first join this host to the Ray cluster at each of these GCS "
        "host:port addresses (comma-separated) as a node with no CPUs (a Ray driver needs a raylet on its "
        "own host: set in containers, and for clusters on other machines).",
    )

    def configured_hosts(self) -> list[str]:
        """Every host named by the settings above (not by the allow-list)."""
        addresses = [*self.discovery_addresses, *self.join_ray, *self.scan_hosts]
        if self.local_cluster:
            addresses.append(self.local_cluster)
        return [h for h in (host_of(a) for a in addresses) if h]


def own_addresses() -> list[Network]:
    """This machine's interface addresses: Ray reports a head by them even when reached at loopback."""
    out: list[Network] = []
    with contextlib.suppress(OSError, RuntimeError):
        for addrs in psutil.net_if_addrs().values():
            for a in addrs:
                ip = ip_of(a.address) if a.family in (socket.AF_INET, socket.AF_INET6) else None
                if ip is not None and not AddressPolicy.forbidden(ip):
                    out.append(ipaddress.ip_network(ip))
    return out


@dataclass
class AddressPolicy:
    """``await check(host)``: the addresses ``host`` may be reached at, or `AddressNotAllowed`."""

    networks: list[Network]
    names: set[str]
    explicit: bool = False  # built from CASTRAY_DISCOVERY_ALLOW (else from the defaults)
    _resolved: dict[str, tuple[float, list[IP]]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: AddressPolicySettings) -> AddressPolicy:
        if settings.discovery_allow:
            policy = cls.from_entries(settings.discovery_allow, explicit=True)
            for host in settings.configured_hosts():
                if not policy.listed(host):
                    log.warning("%s is configured but not in CASTRAY_DISCOVERY_ALLOW: it will not be "
                                "contacted unless it resolves to an allowed address", host)
            return policy
        return cls.from_entries(settings.configured_hosts(), defaults=True)

    @classmethod
    def from_entries(cls, entries: Iterable[str], *, defaults: bool = False, explicit: bool = False
                     ) -> AddressPolicy:
        networks: list[Network] = [*LOOPBACK, *own_addresses()] if defaults else []
        names: set[str] = set()
        for entry in entries:
            text = entry.strip()
            try:
                if "/" in text:
                    networks.append(ipaddress.ip_network(text, strict=False))
                    continue
            except ValueError:
                pass
            host = host_of(text)
            ip = ip_of(host)
            if ip is not None:
                networks.append(ipaddress.ip_network(ip))
            elif host:
                names.add(host)
        return cls(networks=networks, names=names, explicit=explicit)

    # --- checks ---------------------------------------------------------------------------------------
    def listed(self, host: str) -> bool:
        host = normal(host)
        ip = ip_of(host)
        return host in self.names if ip is None else self._in_networks(ip)

    def _in_networks(self, ip: IP) -> bool:
        inside = [n for n in self.networks if n.version == ip.version and ip in n]
        forbidden = [f for f in FORBIDDEN if f.version == ip.version and ip in f]
        if not forbidden:
            return bool(inside)
        # Only a network inside the forbidden range names it explicitly (0.0.0.0/0 does not).
        return any(n.subnet_of(f) for n in inside for f in forbidden)  # type: ignore[arg-type]

    @staticmethod
    def forbidden(ip: IP) -> bool:
        return any(f.version == ip.version and ip in f for f in FORBIDDEN)

    async def allows_ip(self, ip: IP) -> bool:
        """``ip`` is in a listed network, or is an address a listed name resolves to (never a forbidden
        one: DNS may point a listed name anywhere)."""
        if self._in_networks(ip):
            return True
        if self.forbidden(ip):
            return False
        for name in sorted(self.names):
            if ip in await self._resolve_listed(name):
                return True
        return False

    async def check(self, host: str) -> list[str]:
        """The allowed addresses ``host`` resolves to (connect to those only); `AddressNotAllowed`, before
        any packet is sent to it, when there is none (a name that does not resolve is refused too)."""
        host = normal(host)
        ip = ip_of(host)
        if ip is not None:
            if not await self.allows_ip(ip):
                raise AddressNotAllowed(host, "not in the allow-list")
            return [str(ip)]
        listed = host in self.names
        ips = await self._resolve_listed(host) if listed else await resolve(host)
        if not ips:
            raise AddressNotAllowed(host, "the name does not resolve")
        allowed = [str(a) for a in ips if (listed and not self.forbidden(a)) or await self.allows_ip(a)]
        if not allowed:
            raise AddressNotAllowed(host, f"it resolves to {', '.join(map(str, ips[:4]))}, not allowed")
        return allowed

    def allows_blocking(self, host: str) -> bool:
        """`check` for synchronous callers (``castray up``), in a thread of its own: any event loop may
        already run in the caller's."""

        def run() -> bool:
            try:
                asyncio.run(self.check(host))
            except AddressNotAllowed:
                return False
            return True

        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(run).result()

    async def _resolve_listed(self, name: str) -> list[IP]:
        now = time.monotonic()
        cached = self._resolved.get(name)
        if cached is not None and now - cached[0] < RESOLVE_TTL:
            return cached[1]
        ips = await resolve(name)
        self._resolved[name] = (now, ips)
        return ips


async def resolve(host: str) -> list[IP]:
    """Every address ``host`` resolves to ([] if it does not)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            infos: list[Any] = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, UnicodeError):
        return []
    out = [ip for ip in (ip_of(str(info[4][0])) for info in infos) if ip is not None]
    return list(dict.fromkeys(out))
