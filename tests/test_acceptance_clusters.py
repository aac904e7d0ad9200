"""Acceptance of issue 3 against ``castray up`` (subprocess) and real Ray clusters: two clusters at once,
disconnecting one, a head dying, the registry killed with -9, workers joining and SIGTERM'd, and hostile
inputs to every endpoint of the issue.

One ``castray up`` watching two heads (the session's and one of this module's) serves the whole module;
tests that need more (a head to kill, workers) start it themselves and stop it, even on failure.
Nothing here asserts a duration: every wait is for a condition, with a generous deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import redis

from castray import local_ray
from castray.client import AsyncClient, GatewayError, NotFound
from castray.shared.names import Names
from tests.conftest import REDIS_URL
from tests.support.acceptance import (
    Up,
    WsWatch,
    cluster_id_of,
    dashboard_view,
    get_json,
    node_event,
    request,
    running_up,
    view_of,
)
from tests.support.ray_nodes import own_head, start_worker
from tests.support.waiting import STARTING, wait_for, wait_for_blocking

DEADLINE = 90.0
RUNNING = re.compile(r"discovery leading as (\S+) \(namespace (\S+)\)")


@pytest.fixture(scope="module")
def second_head() -> Iterator[local_ray.RayNode]:
    """A second, independent cluster (its own GCS and dashboard on free ports)."""
    with own_head() as head:
        yield head


@pytest.fixture(scope="module")
def up(ray_head: local_ray.RayNode, second_head: local_ray.RayNode,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with running_up(tmp_path_factory.mktemp("clusters"), [ray_head, second_head]) as started:
        for head in (ray_head, second_head):
            wait_for_blocking(lambda h=head: cluster_id_of(started, h),
                              f"cluster at {head.dashboard_url} in the view")
        yield started


@pytest.fixture
async def http() -> Any:
    """For what checks the wire: hostile bodies and their raw answers, raw /ws frames (`WsWatch`)."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def api(up: Up) -> AsyncIterator[AsyncClient]:
    """The API, for its meaning, through castray.client."""
    async with AsyncClient(up.base, token="") as client:
        yield client


async def disconnect_quietly(api: AsyncClient, cluster: str) -> None:
    """In a ``finally``: the cluster may be gone already, and the test's own failure is what counts."""
    with contextlib.suppress(GatewayError):
        await api.disconnect(cluster)


async def until_equal(up: Up, head: local_ray.RayNode, what: str) -> dict[str, str]:
    """Poll until CastRay's view of ``head``'s cluster equals what its dashboard reports."""
    cid = cluster_id_of(up, head)
    assert cid

    def equal() -> dict[str, str] | None:
        ours, theirs = view_of(up, cid), dashboard_view(head)
        return ours if ours == theirs else None

    return await wait_for(lambda: asyncio.to_thread(equal), deadline=DEADLINE, what=what)


# --- two clusters at once ---------------------------------------------------------------------------------

async def test_two_clusters_found_together_and_one_disconnected(
        up: Up, ray_head: local_ray.RayNode, second_head: local_ray.RayNode, api: AsyncClient) -> None:
    found = await api.discover()
    assert found.success is True, found
    by_url = {c.dashboard_url: c for c in found.discovered_clusters}
    assert {ray_head.dashboard_url, second_head.dashboard_url} <= set(by_url)
    keep, drop = by_url[ray_head.dashboard_url].id, by_url[second_head.dashboard_url].id
    assert keep != drop
    heads = {n.ray_node_id: n.cluster_id for n in found.external_nodes.values()}
    assert heads[ray_head.node_id] == keep and heads[second_head.node_id] == drop

    info = await api.external_info()
    assert {c["id"] for c in info["connected_clusters"]} == {keep, drop}
    for cid, head in ((keep, ray_head), (drop, second_head)):
        one = await api.cluster(cid)
        assert head.node_id in {n.ray_node_id for n in one.nodes}
        assert all(n.cluster_id == cid for n in one.nodes)
    status = await api.status()
    assert {keep, drop} <= {c["id"] for c in status["clusters"]}

    # Disconnect one by id: its nodes leave; the other cluster and its nodes stay.
    gone = await api.disconnect(drop)
    assert gone.disconnected == [drop]
    info = await api.external_info()
    assert [c["id"] for c in info["connected_clusters"]] == [keep]
    assert {n["cluster_id"] for n in info["external_nodes"].values()} == {keep}
    assert ray_head.node_id in {n["ray_node_id"] for n in info["external_nodes"].values()}
    assert await api.nodes(cluster=drop) == []
    with pytest.raises(NotFound) as missing:
        await api.cluster(drop)
    assert missing.value.body["success"] is False

    # An explicit discover brings it back with its nodes (the module's later tests expect both).
    found = await api.discover()
    assert drop in {c.id for c in found.discovered_clusters}
    await until_equal(up, second_head, "the rediscovered cluster's nodes")


# --- nodes live: a worker joining, a worker SIGTERM'd, a worker crashed ---------------------------------

async def test_worker_join_sigterm_and_crash_reach_rest_and_ws(
        up: Up, ray_head: local_ray.RayNode, ray_workers: list[local_ray.RayNode],
        http: aiohttp.ClientSession, api: AsyncClient) -> None:
    ws = await WsWatch.open(http, up.base)
    try:
        worker = await asyncio.to_thread(start_worker, ray_head)
        ray_workers.append(worker)
        assert worker.node_id
        added = await ws.until(node_event(worker.node_id, "added"), "the worker's node-changed added")
        assert added["node"]["state"] == "ALIVE" and added["node"]["external"] is True

        async def listed() -> bool:
            ext = await api.external_nodes()
            return any(n["ray_node_id"] == worker.node_id and n["status"] == "alive"
                       for n in ext["external_nodes"])
        await wait_for(listed, deadline=DEADLINE, what="the worker in /api/nodes/external")

        raylet = worker.raylet_pid()
        assert raylet is not None
        os.kill(raylet, signal.SIGTERM)
        dead = await ws.until(node_event(worker.node_id, state="DEAD"), "the worker's DEAD on /ws")
        assert dead["change"] == "updated" and dead["changed"]["state"]["new"] == "DEAD"
        assert (await api.node(added["id"])).state == "DEAD"

        # A crashed worker (its raylet killed -9): DEAD on /ws once Ray itself reports it DEAD.
        crashed = await asyncio.to_thread(start_worker, ray_head)
        ray_workers.append(crashed)
        assert crashed.node_id
        await ws.until(node_event(crashed.node_id, "added"), "the second worker's node-changed added")
        raylet = crashed.raylet_pid()
        assert raylet is not None
        os.kill(raylet, signal.SIGKILL)
        await wait_for(lambda: asyncio.to_thread(
            lambda: dashboard_view(ray_head).get(crashed.node_id) == "DEAD"),
            deadline=120, what="Ray to report the crashed worker DEAD")
        await ws.until(node_event(crashed.node_id, state="DEAD"), "the crashed worker's DEAD on /ws")
    finally:
        await ws.close()


# --- the registry killed -9 -----------------------------------------------------------------------------

async def test_registry_killed_ends_in_the_dashboards_view(
        up: Up, ray_head: local_ray.RayNode, ray_workers: list[local_ray.RayNode]) -> None:
    await until_equal(up, ray_head, "the view before the kill")
    registry = up.child("registry")
    assert registry is not None
    registry.kill()  # SIGKILL: no chance to flush or say goodbye
    # The cluster changes while the registry is away (or restarting): a worker joins.
    worker = await asyncio.to_thread(start_worker, ray_head)
    ray_workers.append(worker)
    await wait_for(lambda: (c := up.child("registry")) is not None and c.pid != registry.pid,
                   "registry restart", deadline=DEADLINE, ignoring=STARTING)
    view = await until_equal(up, ray_head, "the view after the registry's restart")
    assert view[worker.node_id] == "ALIVE"


# --- discovery killed -9 ------------------------------------------------------------------------------

async def test_discovery_killed_keeps_every_cluster_even_one_connected_by_hand(
        up: Up, own_ray_head: local_ray.RayNode, ray_head: local_ray.RayNode, second_head: local_ray.RayNode,
        api: AsyncClient) -> None:
    """A cluster connected by hand (no scan or setting would find it) outlives a crash of discovery."""
    address = f"127.0.0.1:{own_ray_head.dashboard_port}"
    conn = await api.connect(address)
    try:
        await until_equal(up, own_ray_head, "the hand-connected cluster's nodes")
        discovery = up.child("discovery")
        assert discovery is not None
        discovery.kill()
        await wait_for(lambda: (c := up.child("discovery")) is not None and c.pid != discovery.pid,
                       "discovery restart", deadline=DEADLINE, ignoring=STARTING)
        # The view is the new discovery's (not the old one's, still standing) once the registry has applied
        # its state: the view's meta names the discovery instance it follows.
        runs = await wait_for(lambda: (r := RUNNING.findall(up.stderr())) and len(r) >= 2 and r,
                              "the new discovery", deadline=DEADLINE, ignoring=STARTING)
        source, namespace = runs[-1]
        client = redis.Redis.from_url(REDIS_URL)
        try:
            await wait_for(lambda: asyncio.to_thread(
                lambda: client.hget(Names(namespace).view_meta, "source") == source.encode()),
                "the view to follow the new discovery", deadline=DEADLINE, ignoring=STARTING)
        finally:
            client.close()

        def back() -> bool:
            info = get_json(f"{up.base}/api/cluster/external-info")
            return {ray_head.node_id, second_head.node_id, own_ray_head.node_id} <= {
                n["ray_node_id"] for n in info["external_nodes"].values() if n["state"] == "ALIVE"}
        await wait_for(lambda: asyncio.to_thread(back),
                       "every cluster's head alive in the view after the restart",
                       deadline=60, ignoring=STARTING)
        for head in (ray_head, second_head, own_ray_head):
            await until_equal(up, head, "the view after discovery's restart")
        assert cluster_id_of(up, own_ray_head) == conn.cluster.id
        assert (await api.cluster(conn.cluster.id)).cluster.found_by == "manual"
    finally:
        await disconnect_quietly(api, address)


# --- a head dying -------------------------------------------------------------------------------------

async def test_head_dying_is_cluster_lost_and_its_nodes_unreachable(
        up: Up, own_ray_head: local_ray.RayNode, ray_head: local_ray.RayNode,
        http: aiohttp.ClientSession, api: AsyncClient) -> None:
    ws = await WsWatch.open(http, up.base)
    try:
        # A third cluster, connected by hand.
        conn = await api.connect(f"127.0.0.1:{own_ray_head.dashboard_port}")
        assert conn.success is True, conn
        cid = conn.cluster.id
        await ws.until(node_event(own_ray_head.node_id, "added"), "the new head's node-changed added")

        own_ray_head.stop()
        lost = await ws.until(lambda m: m.get("type") == "cluster-lost" and m.get("id") == cid,
                              "cluster-lost")
        assert lost["cluster"]["state"] == "lost"
        await ws.until(node_event(own_ray_head.node_id, state="UNREACHABLE"), "the head node UNREACHABLE")

        def marked() -> bool:
            nodes = get_json(f"{up.base}/api/nodes?cluster={cid}")["nodes"]
            return bool(nodes) and all(n["state"] != "ALIVE" for n in nodes)
        await wait_for(lambda: asyncio.to_thread(marked), "the dead cluster's nodes marked",
                       deadline=DEADLINE, ignoring=STARTING)
        info = await api.external_info()
        assert cid not in {c["id"] for c in info["connected_clusters"]}
        # The other clusters are untouched.
        assert ray_head.node_id in {n["ray_node_id"] for n in info["external_nodes"].values()
                                    if n["state"] == "ALIVE"}
    finally:
        await ws.close()
        # Drop the dead cluster from the view: it is of no use to the module's other tests.
        await disconnect_quietly(api, f"127.0.0.1:{own_ray_head.dashboard_port}")


# --- hostile inputs -----------------------------------------------------------------------------------

CONNECT = "/api/cluster/connect-external"
DISCONNECT = "/api/cluster/disconnect-external"
DEEP = b"[" * 100_000 + b"]" * 100_000
HUGE = json.dumps({"cluster_address": "127.0.0.1:1", "pad": "x" * 2_000_000}).encode()

# (name, method, path, raw body or json, expected status, expected code or None)
HOSTILE: list[tuple[str, str, str, Any, int, str | None]] = [
    ("malformed-json", "POST", CONNECT, b"{not json", 400, None),
    ("empty-body", "POST", CONNECT, b"", 400, None),
    ("invalid-utf8", "POST", CONNECT, b"\xff\xfe\xfd", 400, None),
    ("deeply-nested", "POST", CONNECT, DEEP, 400, None),
    ("json-list", "POST", CONNECT, {"json": ["127.0.0.1:8265"]}, 400, None),
    ("json-string", "POST", CONNECT, {"json": "127.0.0.1:8265"}, 400, None),
    ("missing-field", "POST", CONNECT, {"json": {}}, 400, None),
    ("address-int", "POST", CONNECT, {"json": {"cluster_address": 8265}}, 400, None),
    ("address-null", "POST", CONNECT, {"json": {"cluster_address": None}}, 400, None),
    ("address-list", "POST", CONNECT, {"json": {"cluster_address": ["127.0.0.1:8265"]}}, 400, None),
    ("address-object", "POST", CONNECT, {"json": {"cluster_address": {"host": "x"}}}, 400, None),
    ("address-empty", "POST", CONNECT, {"json": {"cluster_address": ""}}, 400, None),
    ("address-long", "POST", CONNECT, {"json": {"cluster_address": "1" * 100_000}}, 400, None),
    ("address-spaces", "POST", CONNECT, {"json": {"cluster_address": "127.0.0.1 :8265"}}, 400, None),
    ("address-no-port", "POST", CONNECT, {"json": {"cluster_address": "127.0.0.1"}}, 400,
     "address_malformed"),
    ("address-bad-port", "POST", CONNECT, {"json": {"cluster_address": "127.0.0.1:99999"}}, 400,
     "address_malformed"),
    ("address-scheme", "POST", CONNECT, {"json": {"cluster_address": "ftp://127.0.0.1:21"}}, 400,
     "address_malformed"),
    ("address-garbage", "POST", CONNECT, {"json": {"cluster_address": "bad::addr"}}, 400,
     "address_malformed"),
    ("huge-body", "POST", CONNECT, HUGE, 413, None),
    ("huge-body-chunked", "POST", CONNECT, "chunked", 413, None),  # no Content-Length to refuse it by
    ("wrong-method-connect", "GET", CONNECT, None, 405, None),
    ("wrong-method-info", "POST", "/api/cluster/external-info", None, 405, None),
    ("wrong-method-discover", "GET", "/api/cluster/discover-external", None, 405, None),
    ("disconnect-unknown", "DELETE", f"{DISCONNECT}?cluster=c000000000000", None, 404, None),
    ("disconnect-unknown-address", "DELETE", f"{DISCONNECT}?cluster=10.255.255.1:8265", None, 404, None),
    ("disconnect-huge-param", "DELETE", f"{DISCONNECT}?cluster={'x' * 4000}", None, 400, None),
    ("nodes-bad-state", "GET", "/api/nodes?state=SLEEPY", None, 400, "bad_filter"),
    ("nodes-bad-external", "GET", "/api/nodes?external=maybe", None, 400, "bad_filter"),
    ("node-unknown", "GET", "/api/nodes/no-such-node", None, 404, "unknown_node"),
    ("cluster-unknown", "GET", "/api/clusters/no-such-cluster", None, 404, "unknown_cluster"),
    ("ws-bad-topics", "GET", "/ws?topics=everything", None, 400, "bad_topics"),
    ("ws-bad-resume", "GET", "/ws?epoch=e&since=-1", None, 400, None),
]


async def _healthy(api: AsyncClient) -> None:
    """After hostile input: the gateway still healthy (503 would raise) and still connected."""
    assert (await api.health())["status"] == "ok"
    assert (await api.external_info())["is_connected"] is True


@pytest.fixture(scope="module")
def service_pids(up: Up) -> dict[str, int]:
    """The pids of the gateway and discovery before the hostile tests: neither may die of them."""
    pids = {s: up.child(s) for s in ("gateway", "discovery")}
    assert all(pids.values())
    return {s: p.pid for s, p in pids.items() if p}


def _same_services(up: Up, pids: dict[str, int]) -> None:
    for service, pid in pids.items():
        child = up.child(service)
        assert child is not None and child.pid == pid, f"{service} was restarted"


@pytest.mark.parametrize(("name", "method", "path", "body", "status", "code"), HOSTILE,
                         ids=[h[0] for h in HOSTILE])
async def test_hostile_input_is_a_clear_4xx(
        up: Up, service_pids: dict[str, int], http: aiohttp.ClientSession, api: AsyncClient, name: str,
        method: str,
        path: str, body: Any, status: int, code: str | None) -> None:
    kw: dict[str, Any] = {}
    if body == "chunked":
        async def chunks() -> Any:
            for i in range(0, len(HUGE), 65536):
                yield HUGE[i:i + 65536]
        kw = {"data": chunks(), "headers": {"Content-Type": "application/json"}}
    elif isinstance(body, bytes):
        kw = {"data": body, "headers": {"Content-Type": "application/json"}}
    elif isinstance(body, dict):
        kw = body
    got, answer = await request(http, method, f"{up.base}{path}", **kw)
    assert got == status, answer
    assert answer["success"] is False and isinstance(answer["error"], str) and answer["error"], answer
    if code:
        assert answer["code"] == code, answer
    await _healthy(api)
    _same_services(up, service_pids)


@pytest.mark.parametrize("what", ["closed-port", "non-ray-http", "non-ray-http-url", "hanging"])
async def test_connect_to_an_address_that_is_no_ray_cluster_is_a_clear_4xx(
        up: Up, service_pids: dict[str, int], http: aiohttp.ClientSession, api: AsyncClient, what: str,
        request_fixture: pytest.FixtureRequest) -> None:
    if what == "closed-port":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            address, codes = f"127.0.0.1:{s.getsockname()[1]}", {"dashboard_unreachable"}
    elif what.startswith("non-ray-http"):
        port = request_fixture.getfixturevalue("http_port")
        address = f"http://127.0.0.1:{port}" if what.endswith("url") else f"127.0.0.1:{port}"
        codes = {"not_ray_dashboard"}
    else:  # accepts, never answers
        address = f"127.0.0.1:{request_fixture.getfixturevalue('silent_port')}"
        codes = {"timeout"}
    got, answer = await request(http, "POST", f"{up.base}{CONNECT}", json={"cluster_address": address})
    assert got == 422, answer
    assert answer["success"] is False and answer["code"] in codes, answer
    assert address.split("//")[-1] in answer["error"], answer  # the message names what failed
    await _healthy(api)
    _same_services(up, service_pids)


async def test_hostile_bodies_to_bodiless_endpoints_are_ignored_or_refused(
        up: Up, service_pids: dict[str, int], http: aiohttp.ClientSession, api: AsyncClient) -> None:
    """discover-external, external-info and disconnect-external take no body: garbage in one is either
    ignored (the request runs) or refused with a 4xx, never a 5xx or a dead service."""
    for method, path in (("POST", "/api/cluster/discover-external"), ("GET", "/api/cluster/external-info"),
                         ("DELETE", f"{DISCONNECT}?cluster=c000000000000")):
        for body in (b"{not json", HUGE, b"\xff\xfe"):
            got, answer = await request(http, method, f"{up.base}{path}", data=body,
                                        headers={"Content-Type": "application/json"})
            assert got < 500, answer
            if got >= 400:
                assert answer["success"] is False and answer["error"], answer
    await _healthy(api)
    _same_services(up, service_pids)


@pytest.fixture
def request_fixture(request: pytest.FixtureRequest) -> pytest.FixtureRequest:
    return request


async def test_hostile_websocket_frames_get_error_frames_and_the_socket_lives_on(
        up: Up, service_pids: dict[str, int], http: aiohttp.ClientSession, api: AsyncClient) -> None:
    """Garbage from a /ws client (not JSON, not an object, unknown op, deep nesting, binary) is answered
    with an error frame; the socket stays usable (a ping is still answered) and nothing restarts."""
    ws = await WsWatch.open(http, up.base)
    try:
        for frame in ("{not json", "[1, 2]", '{"op": "explode"}', '{"op": "subscribe", "topics": 7}',
                      "[" * 30_000 + "]" * 30_000, b"\x00\x01binary"):
            if isinstance(frame, bytes):
                await ws.ws.send_bytes(frame)
            else:
                await ws.ws.send_str(frame)
            error = await ws.until(lambda m: m.get("type") == "error" and m not in ws.seen[:-1],
                                   f"an error frame for {frame[:20]!r}")
            assert error["error"], error
            ws.seen.clear()
        await ws.ws.send_str('{"op": "ping"}')
        await ws.until(lambda m: m.get("type") == "pong", "pong after the garbage")
    finally:
        await ws.close()
    await _healthy(api)
    _same_services(up, service_pids)


def test_no_unhandled_error_in_any_service_log(up: Up) -> None:
    """Last in the module: after everything above (hostile inputs, a dead head, a killed registry), no
    service logged an unhandled error or a traceback."""
    err = up.stderr()
    assert "Traceback" not in err and "unhandled error" not in err, err[-5000:]
