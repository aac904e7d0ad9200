"""Discovery and transfer reach only what they are allowed to (issue 12, item 3).

Each refusal is checked where it matters: a listening socket on the refused address has no connection in
its backlog afterwards (a non-blocking ``accept`` finds none), so not one packet was sent there, by HTTP
or by gRPC. 127.0.0.2 is loopback too, but outside ``CASTRAY_DISCOVERY_ALLOW=127.0.0.1/32``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from castray import local_ray, ray_find
from castray.discovery.probe import Prober
from castray.discovery.settings import DiscoverySettings
from castray.shared.address_policy import AddressPolicy, AddressPolicySettings
from castray.shared.bus import Bus
from castray.shared.errors import AddressNotAllowed, CommandError
from castray.shared.names import Names
from castray.transfer.drivers import Drivers
from castray.transfer.errors import DriverError

pytest_plugins = ("tests.support.gateway_fixtures",)  # make_gateway

ONLY_127_0_0_1 = ["127.0.0.1/32"]


class Listener:
    """A TCP socket listening on ``host``: ``connections()`` counts what reached its backlog."""

    def __init__(self, host: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.accepted = 0

    def connections(self) -> int:
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return self.accepted
            conn.close()
            self.accepted += 1

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    sock = Listener("127.0.0.2")
    yield sock
    sock.close()


@pytest.fixture
def listener_on_127_0_0_1() -> Iterator[Listener]:
    sock = Listener("127.0.0.1")
    yield sock
    sock.close()


@pytest.mark.parametrize("form", ["{host}:{port}", "http://{host}:{port}"])
async def test_connect_external_outside_the_allow_list_is_a_4xx_and_sends_nothing(
    run_discovery, make_gateway, listener: Listener, ray_head: local_ray.RayNode, form: str,
) -> None:
    await run_discovery(discovery_allow=ONLY_127_0_0_1)
    gateway: TestClient = await make_gateway()
    address = form.format(host=listener.host, port=listener.port)
    resp = await gateway.post("/api/cluster/connect-external", json={"cluster_address": address})
    body = await resp.json()
    assert resp.status == 403, body
    assert "address_not_allowed" in str(body), body
    assert listener.connections() == 0
    # The allowed address of the walkthrough still connects.
    resp = await gateway.post("/api/cluster/connect-external",
                              json={"cluster_address": f"127.0.0.1:{ray_head.dashboard_port}"})
    assert resp.status == 200, await resp.text()
    assert listener.connections() == 0


async def test_a_name_is_judged_by_the_addresses_it_resolves_to(
    run_discovery, redis_client: aioredis.Redis, names: Names,
    listener_on_127_0_0_1: Listener,
) -> None:
    """``localhost`` resolves to 127.0.0.1, outside an allow-list of 127.0.0.2 alone: refused, silently."""
    await run_discovery(discovery_allow=["127.0.0.2/32"])
    bus = Bus(redis_client, names, source="test")
    address = f"localhost:{listener_on_127_0_0_1.port}"
    with pytest.raises(CommandError) as info:
        await bus.request("discovery", "connect", {"cluster_address": address}, timeout=20)
    assert (info.value.status, info.value.code) == (403, "address_not_allowed")
    assert "resolves to 127.0.0.1" in info.value.message
    assert listener_on_127_0_0_1.connections() == 0


@pytest.mark.parametrize("host", ["169.254.169.254", "[fd00:ec2::254]", "[::ffff:169.254.169.254]",
                                  "100.100.100.200"])
@pytest.mark.parametrize("allow", [[], ["0.0.0.0/0", "::/0"]])
async def test_metadata_and_link_local_addresses_are_refused_unless_named(
    host: str, allow: list[str]
) -> None:
    policy = AddressPolicy.from_settings(AddressPolicySettings(discovery_allow=allow))
    with pytest.raises(AddressNotAllowed):
        await policy.check(host)
    named = AddressPolicy.from_settings(AddressPolicySettings(discovery_allow=[host]))
    assert await named.check(host)


async def test_the_default_is_loopback_this_machine_and_what_is_configured() -> None:
    settings = AddressPolicySettings(discovery_addresses=["http://ray-head:8265", "10.1.2.3:6380"],
                                     join_ray=["ray-head:6380"], scan_hosts=["192.0.2.7"],
                                     local_cluster="http://127.0.0.1:8265")
    policy = AddressPolicy.from_settings(settings)
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost", "10.1.2.3", "192.0.2.7", socket.gethostname()):
        assert await policy.check(host), host
    assert policy.listed("ray-head")  # a compose service name: allowed, and so are the addresses it has
    for host in ("10.1.2.4", "8.8.8.8", "169.254.169.254"):
        with pytest.raises(AddressNotAllowed):
            await policy.check(host)


async def test_a_listed_name_allows_the_addresses_it_resolves_to() -> None:
    """As a dashboard configured by name (``http://ray-head:8265`` in compose) reports its GCS by address:
    with only ``localhost`` listed, 127.0.0.1 (what it resolves to) is allowed, 127.0.0.2 is not."""
    policy = AddressPolicy.from_settings(AddressPolicySettings(discovery_allow=["localhost"]))
    assert await policy.check("127.0.0.1") == ["127.0.0.1"]
    with pytest.raises(AddressNotAllowed):
        await policy.check("127.0.0.2")


async def test_a_dashboard_reported_outside_the_allow_list_is_never_probed(listener: Listener) -> None:
    settings = DiscoverySettings(discovery_allow=ONLY_127_0_0_1, ray_temp_dirs=[], scan_ports="")
    async with aiohttp.ClientSession() as session:
        prober = Prober(session, settings)
        with pytest.raises(AddressNotAllowed):
            await prober.probe_dashboard(f"http://127.0.0.2:{listener.port}")
    assert listener.connections() == 0


async def test_scan_hosts_outside_the_allow_list_are_not_scanned(
    run_discovery, listener: Listener,
) -> None:
    worker = await run_discovery(discovery_allow=ONLY_127_0_0_1, scan_hosts=["127.0.0.2"],
                                 scan_ports=str(listener.port))
    reply: dict[str, Any] = await worker.commands("discover", {})  # type: ignore[misc]
    assert reply["found"] == []
    assert listener.connections() == 0


async def test_transfer_never_starts_ray_against_a_gcs_outside_the_allow_list(listener: Listener) -> None:
    policy = AddressPolicy.from_settings(AddressPolicySettings(discovery_allow=ONLY_127_0_0_1))
    drivers = Drivers(policy=policy)
    for address in (f"127.0.0.2:{listener.port}", "169.254.169.254:6379"):
        with pytest.raises(DriverError) as info:
            await drivers.get(address)
        assert isinstance(info.value.__cause__, AddressNotAllowed)
    assert listener.connections() == 0
    await drivers.close()


def test_castray_up_looks_for_a_running_cluster_only_where_it_is_allowed(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``castray up``'s look before it starts a head (``ray_find``) applies the same policy."""
    monkeypatch.setenv("CASTRAY_DISCOVERY_ALLOW", "127.0.0.1/32")
    monkeypatch.setenv("CASTRAY_DISCOVERY_ADDRESSES", f"127.0.0.2:{listener.port}")
    monkeypatch.setenv("CASTRAY_SCAN_HOSTS", "127.0.0.2")
    monkeypatch.setenv("CASTRAY_SCAN_PORTS", str(listener.port))
    monkeypatch.setenv("CASTRAY_RAY_TEMP_DIRS", "")
    assert ray_find.find_cluster(ray_find.where_discovery_looks()) is None
    assert listener.connections() == 0
