"""connect against addresses that are not healthy Ray clusters: each fails fast with the right code.

The commands go over the real bus (Redis) to an in-process worker, as the gateway sends them.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from castray import local_ray
from castray.shared.bus import Bus
from castray.shared.errors import CommandError

# aiohttp warns about the plain lambdas used as handlers below; they are fine for fixed answers.
pytestmark = pytest.mark.filterwarnings("ignore:Bare functions are deprecated")

RAY_VERSION = {"version": "4", "ray_version": "2.60.0", "ray_commit": "x", "session_name": "session_fake_1"}


@pytest.fixture
async def http_server() -> AsyncIterator[Callable[[web.Application], asyncio.Future[int]]]:
    """Start aiohttp apps on 127.0.0.1 free ports; returns the port."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> int:
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        port = local_ray.free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return port

    yield start  # type: ignore[misc]
    for runner in runners:
        await runner.cleanup()


# The issue's bound for a failed connect ("never longer than ~10 s"); the probes' own timeouts are 3-8 s,
# so this holds by construction, not by luck.
BOUND = 10.0


async def _connect(bus: Bus, address: object) -> tuple[str, float]:
    """(error code, seconds) of a connect command that must fail, with a 4xx status (never a 5xx)."""
    start = time.monotonic()
    with pytest.raises(CommandError) as info:
        await bus.request("discovery", "connect", {"cluster_address": address}, timeout=20)
    assert 400 <= info.value.status < 500, (info.value.status, info.value.code)
    return info.value.code, time.monotonic() - start


@pytest.mark.parametrize(
    "address",
    [
        "",
        "not an address",
        "127.0.0.1",
        "127.0.0.1:99999",
        "ftp://h:1",
        "http://127.0.0.1:8265/api",
        42,
        None,
        ["127.0.0.1:1"],
        "h" * 400,
    ],
)
async def test_malformed_addresses(run_discovery, bus: Bus, address: object) -> None:
    await run_discovery()
    code, _ = await _connect(bus, address)
    assert code == "address_malformed"


async def test_closed_port_is_dashboard_unreachable(run_discovery, bus: Bus) -> None:
    await run_discovery()
    port = local_ray.free_port()  # nothing listens there
    for address in (f"127.0.0.1:{port}", f"http://127.0.0.1:{port}"):
        code, took = await _connect(bus, address)
        assert code == "dashboard_unreachable"
        assert took < BOUND


async def test_non_ray_http_server(run_discovery, bus: Bus, http_server) -> None:
    app = web.Application()
    app.router.add_get("/", lambda r: web.Response(text="<html>hello</html>", content_type="text/html"))
    app.router.add_get("/api/version", lambda r: web.json_response({"version": "1.0", "name": "something"}))
    port = await http_server(app)
    not_found = await http_server(web.Application())  # 404 everywhere
    await run_discovery()
    for address in (f"127.0.0.1:{port}", f"http://127.0.0.1:{port}", f"127.0.0.1:{not_found}"):
        code, took = await _connect(bus, address)
        assert code == "not_ray_dashboard", address
        assert took < BOUND


async def test_hanging_server_times_out(run_discovery, bus: Bus, http_server) -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(60)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/api/version", hang)
    port = await http_server(app)
    # A socket that accepts and never answers (not even HTTP).
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        await run_discovery(poll_timeout=1.0, connect_timeout=3.0)
        for address in (f"http://127.0.0.1:{port}", f"127.0.0.1:{silent.getsockname()[1]}"):
            code, took = await _connect(bus, address)
            assert code == "timeout", address
            assert took < BOUND
    finally:
        silent.close()


async def test_lying_dashboards(run_discovery, bus: Bus, http_server) -> None:
    """Ray-shaped version, then garbage: not JSON, wrong shapes, a huge body, an old Ray, a 500."""

    def app_with(nodes_handler, version=RAY_VERSION) -> web.Application:  # noqa: ANN001
        app = web.Application()
        app.router.add_get("/api/version", lambda r: web.json_response(version))
        app.router.add_get("/api/v0/nodes", nodes_handler)
        return app

    huge = b'{"result": true, "data": {"result": {"result": [' + b" " * (3 * 1024 * 1024) + b"]}}}"
    cases = {
        "not_ray_dashboard": [
            app_with(lambda r: web.Response(text="{not json")),
            app_with(lambda r: web.json_response({"data": {"result": {"result": "nope"}}})),
            app_with(lambda r: web.json_response([1, 2, 3])),
            app_with(lambda r: web.Response(body=huge, content_type="application/json")),
            app_with(lambda r: web.json_response({}), version={"ray_version": 7}),
        ],
        "incompatible_version": [
            app_with(lambda r: web.json_response({}), version={**RAY_VERSION, "ray_version": "1.13.0"}),
            app_with(lambda r: web.Response(status=404)),
        ],
        "gcs_unreachable": [app_with(lambda r: web.Response(status=500, text="GCS down"))],
    }
    await run_discovery(max_response_bytes=1024 * 1024)
    for expected, apps in cases.items():
        for app in apps:
            port = await http_server(app)
            code, _ = await _connect(bus, f"127.0.0.1:{port}")
            assert code == expected, (expected, port)


async def test_lying_rows_are_dropped_not_fatal(run_discovery, bus: Bus, http_server) -> None:
    good = {
        "node_id": "ab" * 28,
        "node_ip": "10.0.0.1",
        "is_head_node": True,
        "state": "ALIVE",
        "resources_total": {"CPU": 2},
        "labels": {"k": "v"},
    }
    rows = [
        good,
        {"node_id": "zz"},
        {"node_id": "cd" * 28, "state": "EXPLODED"},
        "junk",
        None,
        {**good, "resources_total": "lots"},
    ]
    body = {"result": True, "data": {"result": {"result": rows}}}
    app = web.Application()
    app.router.add_get("/api/version", lambda r: web.json_response(RAY_VERSION))
    app.router.add_get(
        "/api/v0/nodes", lambda r: web.Response(text=json.dumps(body), content_type="application/json")
    )
    port = await http_server(app)
    await run_discovery()
    reply = await bus.request("discovery", "connect", {"cluster_address": f"127.0.0.1:{port}"}, timeout=20)
    assert [n["ray_node_id"] for n in reply["nodes"] if n["external"]] == ["ab" * 28]
    assert reply["cluster"]["found_by"] == "manual"


async def test_unknown_op_and_unknown_cluster(run_discovery, bus: Bus) -> None:
    await run_discovery()
    with pytest.raises(CommandError) as info:
        await bus.request("discovery", "explode", {}, timeout=10)
    assert info.value.status == 400
    with pytest.raises(CommandError) as info:
        await bus.request("discovery", "disconnect", {"cluster": "c000000000000"}, timeout=10)
    assert (info.value.status, info.value.code) == (404, "not_found")
    reply = await bus.request("discovery", "disconnect", {}, timeout=10)
    assert reply == {"disconnected": []}
    reply = await bus.request("discovery", "discover", {}, timeout=20)
    assert reply["found"] == []
