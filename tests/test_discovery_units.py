"""Discovery's pure parts: settings from the environment, addresses, ports, ids, diffs, the GCS
protobuf encoding, and reading Ray's session files (real files in a temp dir)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from castray.discovery import gcs, sources
from castray.discovery.addresses import parse_address, parse_ports
from castray.discovery.dashboard import NodeRow
from castray.discovery.errors import AddressMalformed
from castray.discovery.records import NODE_FIELDS, build_node, cluster_id, diff, node_id, parse_version
from castray.discovery.settings import DiscoverySettings
from castray.discovery.watcher import ClusterWatcher
from castray.shared.errors import AddressNotAllowed, CodedError
from castray.shared.events import ClusterInfo


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASTRAY_DISCOVERY_ADDRESSES", "http://a:8265, 10.0.0.2:6380")
    monkeypatch.setenv("CASTRAY_SCAN_HOSTS", "127.0.0.1,10.0.0.3")
    monkeypatch.setenv("CASTRAY_RAY_TEMP_DIRS", '["/x/ray", "/y/ray"]')
    monkeypatch.setenv("CASTRAY_SCAN_PORTS", "9000-9002,9010")
    monkeypatch.setenv("CASTRAY_LOST_AFTER", "5")
    monkeypatch.setenv("CASTRAY_LOCAL_CLUSTER", "http://127.0.0.1:41000")
    s = DiscoverySettings()
    assert s.discovery_addresses == ["http://a:8265", "10.0.0.2:6380"]
    assert s.scan_hosts == ["127.0.0.1", "10.0.0.3"]
    assert s.ray_temp_dirs == ["/x/ray", "/y/ray"]
    assert parse_ports(s.scan_ports) == [9000, 9001, 9002, 9010]
    assert s.lost_after == 5 and s.local_cluster == "http://127.0.0.1:41000"


def test_default_temp_dirs_follow_ray_tmpdir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_TMPDIR", "/data/tmp")
    for var in ("CASTRAY_RAY_TEMP_DIRS", "CASTRAY_SCAN_PORTS"):
        monkeypatch.delenv(var, raising=False)
    s = DiscoverySettings()
    assert s.ray_temp_dirs == ["/data/tmp/ray", "/tmp/ray"]
    assert parse_ports(s.scan_ports) == [8265, 8266, 8267, 8268, 8269]
    assert s.poll_interval == 1.0 and s.scan_interval == 10.0 and s.lost_after == 3


def test_parse_address() -> None:
    a = parse_address("http://127.0.0.1:8265/")
    assert (a.host, a.port, a.url, a.http_url) == ("127.0.0.1", 8265, True, "http://127.0.0.1:8265")
    b = parse_address(" LocalHost:6379 ")
    assert (b.host, b.port, b.url, b.hostport) == ("localhost", 6379, False, "localhost:6379")
    assert parse_address("[::1]:8265").hostport == "[::1]:8265"
    assert parse_address("https://ray.example.org").port == 443
    for bad in ("", "x", "h:0", "h:65536", "h:port", "ftp://h:1", "http://h:1/x", "a b:1", "-h:1", 3):
        with pytest.raises(AddressMalformed) as info:
            parse_address(bad)
        assert info.value.code == "address_malformed" and info.value.status == 400


def test_parse_ports() -> None:
    assert parse_ports("8265-8267, 8265,9000") == [8265, 8266, 8267, 9000]
    assert parse_ports("") == []
    for bad in ("a", "9-1", "0", "1-70000"):
        with pytest.raises(ValueError):
            parse_ports(bad)


def test_ids_and_versions() -> None:
    cid = cluster_id("session_2026_1", "10.0.0.1:6379")
    assert cid == cluster_id("session_2026_1", "10.0.0.1:6379")
    assert cid != cluster_id("session_2026_1", "10.0.0.2:6379")
    assert cid != cluster_id("session_2026_2", "10.0.0.1:6379")
    assert node_id(cid, "ab" * 28) == f"{cid}-{'ab' * 6}"
    assert parse_version("2.60.0") > parse_version("2.9.3") > parse_version("1.13")
    assert parse_version("3.0.0.dev0") == parse_version("3.0.0rc1") == (3, 0, 0)


def test_node_diff_ignores_time() -> None:
    cluster = ClusterInfo(id="c1", name="ray@x")
    row = NodeRow(node_id="ab" * 28, node_ip="10.0.0.1", state="ALIVE", resources_total={"CPU": 2})
    first = build_node(row, cluster, hostname="h1", external=True, prev=None, now=1.0)
    same = build_node(row, cluster, hostname=None, external=True, prev=first, now=5.0)
    assert diff(first, same, NODE_FIELDS) == {} and same.first_seen == 1.0 and same.hostname == "h1"
    dead = build_node(
        row.model_copy(update={"state": "DEAD"}), cluster, hostname=None, external=True, prev=same, now=6.0
    )
    changed = diff(same, dead, NODE_FIELDS)
    assert list(changed) == ["state"] and (changed["state"].old, changed["state"].new) == ("ALIVE", "DEAD")
    assert first.name == "worker-ababab"


def test_node_rows_reject_garbage() -> None:
    for bad in (
        {"node_id": "xyz", "state": "ALIVE"},
        {"node_id": "ab" * 28, "state": "MAYBE"},
        {"node_id": "ab" * 28, "state": "ALIVE", "labels": "no"},
    ):
        with pytest.raises(ValueError):
            NodeRow.model_validate(bad)


def test_gcs_kv_protobuf() -> None:
    request = gcs.encode_kv_get(b"dashboard", b"dashboard")
    assert request == b"\n\tdashboard\x12\tdashboard"
    # A reply measured from a Ray 2.60 GCS: status (empty message), value.
    assert gcs.decode_kv_value(b"\n\x00\x12\x0f127.0.0.1:37225") == b"127.0.0.1:37225"
    assert gcs.decode_kv_value(b"\n\x02\x08\x11") is None  # not found: a status, no value
    with pytest.raises(ValueError):
        gcs.decode_kv_value(b"\x12\xff")


def test_session_files(tmp_path: Path) -> None:
    root = tmp_path / "ray"
    session = root / "session_2026-11-26_10-00-00_1_42"
    (session / "logs").mkdir(parents=True)
    (root / "ray_current_cluster").write_text("192.0.2.2:6400")
    (session / "gcs_server_port_0123abcd").write_text("6400")
    (session / "gcs_server_port_garbage").write_text("not a port")
    (session / "logs" / "dashboard.log").write_text(
        "2026 INFO x -- starting\n"
        "2026 INFO http_server_head.py:492 -- Dashboard head http address: 127.0.0.1:8275\n"
    )
    (root / "session_latest").symlink_to(session)
    found = sources.read_session_files([str(root), str(tmp_path / "missing")], max_sessions=5)
    assert set(found) == {
        sources.Candidate("session-file", "192.0.2.2:6400", "gcs"),
        sources.Candidate("session-file", "127.0.0.1:6400", "gcs"),
        sources.Candidate("session-file", "127.0.0.1:8275", "dashboard"),
    }


async def test_scan_finds_only_open_ports() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    open_port = server.sockets[0].getsockname()[1]
    try:
        from castray import local_ray

        closed = local_ray.free_port()
        s = DiscoverySettings(scan_hosts=["127.0.0.1"], scan_ports=f"{open_port},{closed}", ray_temp_dirs=[])
        assert await sources.scan(s) == [sources.Candidate("scan", f"127.0.0.1:{open_port}", "dashboard")]
    finally:
        server.close()
        await server.wait_closed()


class _RefusedAtConnection:
    """A dashboard whose name now resolves outside the allow-list: the resolver refuses the connection."""

    base_url = "http://rebound.test:8265"

    async def nodes(self) -> list[NodeRow]:
        raise AddressNotAllowed("rebound.test", "not in the allow-list")

    async def summary(self) -> list[object]:
        raise AddressNotAllowed("rebound.test", "not in the allow-list")


class _Failures:
    def __init__(self) -> None:
        self.failed: list[tuple[str, int]] = []

    async def poll_failed(self, cid: str, error: CodedError, failures: int) -> None:
        self.failed.append((error.code, failures))


async def test_a_poll_the_resolver_refuses_is_a_failed_poll_not_a_crash() -> None:
    tracker = _Failures()
    watcher = ClusterWatcher(cluster_id="c1", session_name="s", client=_RefusedAtConnection(),  # type: ignore[arg-type]
                             tracker=tracker, settings=DiscoverySettings(ray_temp_dirs=[]))  # type: ignore[arg-type]
    await watcher.poll_once()
    await watcher._fetch_summary()  # its own task: a refusal there is no summary, not an unhandled error
    assert tracker.failed == [("address_not_allowed", 1)]
