"""Probing an address: is it a Ray dashboard or a GCS, which cluster is it, and what are its nodes.

A ``host:port`` without a scheme is asked for ``/api/version`` over HTTP first. A GCS answers HTTP/1.1
with HTTP/2 frames; then we ask it over gRPC for its dashboard address and probe that dashboard.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aiohttp

from castray.discovery import errors, gcs
from castray.discovery.addresses import LOOPBACK, Address, parse_address
from castray.discovery.dashboard import DashboardClient, NodeRow, SummaryRow
from castray.discovery.records import cluster_id, parse_version
from castray.discovery.settings import DiscoverySettings
from castray.shared.address_policy import AddressPolicy
from castray.shared.errors import CodedError
from castray.shared.hosts import host_of


@dataclass(slots=True)
class Probe:
    """What a cluster says about itself, and its nodes at the time of the probe."""

    cluster_id: str
    dashboard_url: str
    ray_version: str
    session_name: str
    gcs_address: str | None
    head_node_id: str | None
    rows: list[NodeRow]
    hostnames: dict[str, str] = field(default_factory=dict)
    via: str = "dashboard"  # or "gcs": how the address given was resolved

    @property
    def dashboard_hostport(self) -> str:
        return self.dashboard_url.split("://", 1)[-1]


class Prober:
    """Probes addresses with the settings' timeouts over one shared HTTP session; only addresses the
    policy allows, given or reported (checked before any packet is sent)."""

    def __init__(
        self, session: aiohttp.ClientSession, settings: DiscoverySettings, policy: AddressPolicy | None = None
    ) -> None:
        self.session = session
        self.settings = settings
        self.policy = policy or AddressPolicy.from_settings(settings)
        self.min_version = parse_version(settings.min_ray_version)

    def client(self, dashboard_url: str) -> DashboardClient:
        return DashboardClient(
            self.session,
            dashboard_url,
            timeout=self.settings.poll_timeout,
            max_bytes=self.settings.max_response_bytes,
            max_rows=self.settings.max_cluster_nodes,
        )

    async def probe(self, address: str | Address, *, kind: str = "any") -> Probe:
        """Probe within ``connect_timeout``; ``kind`` is "any", "dashboard" or "gcs"."""
        addr = address if isinstance(address, Address) else parse_address(address)
        total = self.settings.connect_timeout
        try:
            async with asyncio.timeout(total):
                ips = await self.policy.check(addr.host)
                if kind == "gcs":
                    return await self._via_gcs(addr, ips[0])
                try:
                    return await self.probe_dashboard(addr.http_url)
                except errors.NotHttp:
                    if addr.url or kind == "dashboard":
                        raise
                    return await self._via_gcs(addr, ips[0])
        except TimeoutError as e:
            raise errors.TimedOut(f"probing {addr.hostport} took longer than {total:g} s") from e

    async def _via_gcs(self, addr: Address, ip: str) -> Probe:
        """``ip``: the checked address of ``addr.host`` (gRPC would resolve the name again)."""
        target = Address(host=ip, port=addr.port).hostport
        info = await gcs.lookup(target, timeout=self.settings.poll_timeout)
        if not info.dashboard:
            raise errors.DashboardUnreachable(f"the GCS at {addr.hostport} names no dashboard")
        reported = parse_address(info.dashboard)
        tries = [reported]
        if reported.host in LOOPBACK and addr.host not in LOOPBACK:
            # The dashboard binds the head's loopback by default: from another machine it is reached at
            # the GCS host (if bound there); on the head's own machine, at loopback. The session name the
            # GCS reported tells a dashboard of another cluster at that port apart.
            tries.insert(0, Address(host=addr.host, port=reported.port))
        failure: CodedError | None = None
        for dash in tries:
            try:
                probe = await self.probe_dashboard(dash.http_url)
            except CodedError as e:  # a ProbeError, or AddressNotAllowed
                failure = e
                continue
            if info.session_name and probe.session_name != info.session_name:
                failure = errors.DashboardUnreachable(f"{dash.hostport} serves another cluster")
                continue
            probe.via = "gcs"
            return probe
        assert failure is not None
        raise errors.DashboardUnreachable(
            f"{addr.hostport} is a Ray GCS; its dashboard {reported.hostport} failed: {failure.message}"
        ) from failure

    async def probe_dashboard(self, url: str) -> Probe:
        await self.policy.check(host_of(url))  # a dashboard a GCS reported may be anywhere
        client = self.client(url)
        version = await client.version()
        if parse_version(version.ray_version) < self.min_version:
            raise errors.IncompatibleVersion(
                f"{url} runs Ray {version.ray_version}; CastRay needs Ray >= {self.settings.min_ray_version}"
            )
        rows, summary = await asyncio.gather(client.nodes(), self._summary(client))
        head = next((r for r in rows if r.is_head_node and r.state == "ALIVE"), None)
        head = head or next((r for r in rows if r.is_head_node), None)
        gcs_at = gcs_address(head.node_id if head else None, head.node_ip if head else None, summary)
        key = gcs_at or (head.node_id if head else url)
        return Probe(
            cluster_id=cluster_id(version.session_name, key),
            dashboard_url=url,
            ray_version=version.ray_version,
            session_name=version.session_name,
            gcs_address=gcs_at,
            head_node_id=head.node_id if head else None,
            rows=rows,
            hostnames={s.node_id: s.hostname for s in summary if s.hostname},
        )

    async def _summary(self, client: DashboardClient) -> list[SummaryRow]:
        # Only hostnames and the GCS port come from here: a failure is not a failed probe.
        try:
            return await client.summary()
        except CodedError:  # a ProbeError, or AddressNotAllowed from the resolver
            return []

    async def hostnames(self, dashboard_url: str) -> dict[str, str]:
        rows = await self.client(dashboard_url).summary()
        return {s.node_id: s.hostname for s in rows if s.hostname}


def gcs_address(head_id: str | None, head_ip: str | None, summary: list[SummaryRow]) -> str | None:
    """``ip:port`` of the GCS, from the head's summary row. Ray adds the ``gcs`` part of that row only
    with the head agent's first report, a few seconds after the head shows ALIVE (measured on 2.60:
    2.6 s): a cluster probed before then is found without it, and its watcher learns it later."""
    row = next((s for s in summary if s.gcs_port is not None and (head_id is None or s.node_id == head_id)),
               None)
    if row is None or row.gcs_port is None:
        return None
    ip = head_ip or row.ip
    return f"{ip}:{row.gcs_port}" if ip else None
