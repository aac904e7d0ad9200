"""``castray up`` as a real subprocess: it finds a real Ray head, serves /api/status with its node, restarts a
dead child, stops its whole tree on Ctrl-C, and handles Redis (configured / embedded / not Redis) and a
busy gateway port with one clear line.

Isolation: every run gets its own namespace, data dir and gateway port; discovery is pointed at the test's
own Ray head and told not to scan the shared dashboard ports 8265-8269 nor read /tmp/ray.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from castray import local_ray
from castray.client import Client, Unauthorized
from castray.local_ray import free_port
from tests.support.up import Up, get_json
from tests.support.waiting import wait_for_blocking


def _assert_no_traceback(up: Up) -> None:
    assert "Traceback" not in up.stderr(), up.stderr()


# --- the main path --------------------------------------------------------------------------------------

def test_up_counts_the_running_cluster_restarts_a_dead_child_and_stops_cleanly(
        ray_head: local_ray.RayNode, isolated_env: dict[str, str], start_up: Callable[..., Up]) -> None:
    env = {**isolated_env, "CASTRAY_DISCOVERY_ADDRESSES": ray_head.dashboard_url,
           "CASTRAY_RAY_TEMP_DIRS": ray_head.temp_dir, "RAY_TMPDIR": ray_head.temp_dir}
    up = start_up(env)
    assert ray_head.node_id
    wait_for_blocking(lambda: up.status_has_node(ray_head.node_id), "/api/status to count the head")
    wait_for_blocking(lambda: "CastRay is up: " in up.stdout(), "the 'CastRay is up' line")
    assert f"CastRay is up: {up.base}/ui" in up.stdout()
    assert "found a running Ray cluster" in up.stderr()
    names = {p.name() for p in up.tree()}
    assert "raylet" not in names and "gcs_server" not in names  # it used the cluster, started none

    # A child that dies is started again, and the service comes back.
    registry = up.child("registry")
    assert registry is not None
    registry.kill()
    wait_for_blocking(lambda: (c := up.child("registry")) is not None and c.pid != registry.pid,
                      "registry restart")
    assert "registry exited with code" in up.stderr()
    wait_for_blocking(lambda: up.status_has_node(ray_head.node_id), "/api/status after the restart")

    services = {s for s in ("discovery", "registry", "transfer", "gateway") if up.child(s) is not None}
    assert services == {"discovery", "registry", "transfer", "gateway"}
    alive, code = up.stop()
    assert alive == [], f"still running 10 s after Ctrl-C: {alive}"
    assert code == 0
    assert ray_head.process.poll() is None  # a cluster it found is not its to stop


def test_up_starts_a_local_head_when_no_cluster_runs(isolated_env: dict[str, str],
                                                     start_up: Callable[..., Up]) -> None:
    up = start_up(isolated_env)
    dash_port = int(isolated_env["CASTRAY_RAY_DASHBOARD_PORT"])
    rows = wait_for_blocking(lambda: local_ray.list_nodes(f"http://127.0.0.1:{dash_port}"), "the local head")
    head_id = rows[0]["node_id"]
    wait_for_blocking(lambda: up.status_has_node(head_id), "/api/status to count the local head")
    status = get_json(f"{up.base}/api/status")
    [cluster] = [c for c in status["clusters"] if c.get("found_by") == "local"]
    assert cluster["external"] is False  # the cluster `up` started is ours, not an external one
    assert "raylet" in {p.name() for p in up.tree()}
    alive, code = up.stop()
    assert alive == [], f"still running 10 s after Ctrl-C: {alive}"
    assert code == 0
    with pytest.raises(OSError):
        local_ray.list_nodes(f"http://127.0.0.1:{dash_port}", timeout=1)


# --- Redis: embedded when nothing answers, refused when something else answers ---------------------------

def test_up_starts_an_embedded_redis_when_none_answers(
        ray_head: local_ray.RayNode, isolated_env: dict[str, str], start_up: Callable[..., Up]) -> None:
    closed = free_port()
    env = {**isolated_env, "CASTRAY_REDIS_URL": f"redis://127.0.0.1:{closed}/0",
           "CASTRAY_DISCOVERY_ADDRESSES": ray_head.dashboard_url}
    up = start_up(env, "--no-ray")
    assert ray_head.node_id
    wait_for_blocking(lambda: up.status_has_node(ray_head.node_id), "/api/status through the embedded server")
    assert "started an embedded Redis-compatible server" in up.stderr()
    servers = [p for p in up.tree() if p.name() in ("valkey-server", "redis-server")]
    assert len(servers) == 1

    # The embedded server dies (losing everything): it comes back on the same port, and the services
    # rebuild the view in it.
    port = int(re.search(r"embedded Redis-compatible server at redis://127.0.0.1:(\d+)/0", up.stderr())[1])
    name, old_pid = servers[0].name(), servers[0].pid
    servers[0].kill()
    wait_for_blocking(lambda: [p for p in up.tree() if p.name() == name and p.pid != old_pid],
                      "the embedded server to restart")
    assert "the embedded Redis exited; starting it again on port" in up.stderr()
    wait_for_blocking(lambda: up.status_has_node(ray_head.node_id), "/api/status after the Redis restart")
    servers = [p for p in up.tree() if p.name() in ("valkey-server", "redis-server")]
    assert len(servers) == 1
    assert any(c.laddr.port == port for c in servers[0].net_connections() if c.status == "LISTEN")

    alive, code = up.stop(signal.SIGTERM)  # as a service manager stops it
    assert alive == [] and code == 0
    assert not servers[0].is_running()


@pytest.mark.parametrize("what", ["http-server", "ray-gcs", "silent"])
def test_up_refuses_a_port_that_is_not_redis(
        what: str, request: pytest.FixtureRequest, isolated_env: dict[str, str],
        start_up: Callable[..., Up]) -> None:
    if what == "ray-gcs":  # the real likely case: a Ray GCS where Redis was expected
        port = request.getfixturevalue("ray_head").gcs_port
    else:
        port = request.getfixturevalue("http_port" if what == "http-server" else "silent_port")
    up = start_up({**isolated_env, "CASTRAY_REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    code = up.process.wait(timeout=60)
    assert code == 2
    err = up.stderr()
    assert f"127.0.0.1:{port} answers but is not Redis (a Ray GCS uses 6379 by default); " \
           "point CASTRAY_REDIS_URL at a Redis, or free the port" in err
    _assert_no_traceback(up)


def test_up_refuses_a_busy_gateway_port_before_starting_anything(
        isolated_env: dict[str, str], start_up: Callable[..., Up]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = int(holder.getsockname()[1])
        # Redis "away": had it got that far, it would start an embedded server and say so.
        env = {**isolated_env, "CASTRAY_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
        up = start_up(env, port=port)
        code = up.process.wait(timeout=60)
    assert code == 2
    err = up.stderr()
    assert f"castray up: port {port} on 127.0.0.1 is already in use" in err
    assert "embedded" not in err and "Ray head" not in err
    assert err.strip().count("\n") == 0, err  # one line
    _assert_no_traceback(up)


def test_local_ray_temp_dir_of_up_is_short_enough_for_ray_sockets() -> None:
    """A deep data dir must not give Ray unix socket paths longer than AF_UNIX allows."""
    from castray.settings import UpSettings
    from castray.up import Supervisor

    deep = Path(tempfile.gettempdir()) / ("d" * 80)
    sup = Supervisor(UpSettings(data_dir=deep))
    temp = sup._ray_temp_dir()
    try:
        session_socket = Path(temp) / "session_2026-11-26_18-41-11_123456_12345" / "sockets" / "plasma_store"
        assert len(str(session_socket)) < 108
    finally:
        if sup.head_temp:
            os.rmdir(sup.head_temp)


def test_children_and_embedded_redis_go_when_up_is_killed_outright(
        isolated_env: dict[str, str], start_up: Callable[..., Up]) -> None:
    env = {**isolated_env, "CASTRAY_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    up = start_up(env, "--no-ray")
    wait_for_blocking(lambda: "CastRay is up: " in up.stdout(), "the 'CastRay is up' line")
    tree = up.tree()
    assert {"valkey-server", "redis-server"} & {p.name() for p in tree}
    assert len(tree) >= 5
    up.process.kill()  # SIGKILL: no chance to clean up; the kernel tells the children (PR_SET_PDEATHSIG)
    up.process.wait(timeout=10)
    _gone, alive = psutil.wait_procs(tree, timeout=15)
    assert alive == [], f"left behind after SIGKILL of castray up: {alive}"


def test_up_refuses_a_redis_that_refuses_its_credentials(
        isolated_env: dict[str, str], start_up: Callable[..., Up], tmp_path: Path) -> None:
    from castray.redis_local import server_binary

    port = free_port()
    server = subprocess.Popen([server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--requirepass", "secret", "--dir", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_blocking(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True,
                          "the password-protected server", deadline=30)
        up = start_up({**isolated_env, "CASTRAY_REDIS_URL": f"redis://127.0.0.1:{port}/0"})
        assert up.process.wait(timeout=60) == 2
        assert f"the Redis at 127.0.0.1:{port} refused us" in up.stderr()
        assert "CASTRAY_REDIS_URL" in up.stderr()
        _assert_no_traceback(up)
        # With the password it is used, not replaced by an embedded one.
        url = f"redis://:secret@127.0.0.1:{port}/0"
        up = start_up({**isolated_env, "CASTRAY_REDIS_URL": url}, "--no-ray")
        wait_for_blocking(lambda: get_json(f"{up.base}/api/status")["success"], "/api/status")
        assert f"using the Redis at 127.0.0.1:{port}" in up.stderr()
        alive, code = up.stop()
        assert alive == [] and code == 0
    finally:
        server.kill()
        server.wait(timeout=10)


# --- a gateway the network can reach gets a token ------------------------------------------------------

def test_up_on_every_interface_makes_a_token_and_prints_the_url_with_it_once(
        isolated_env: dict[str, str], start_up: Callable[..., Up]) -> None:
    up = start_up(isolated_env, "--host", "0.0.0.0", "--no-ray")
    line = wait_for_blocking(lambda: next((ln for ln in up.stdout().splitlines() if "CastRay is up" in ln),
                                          None), "the announcement")
    token = re.search(rf"{re.escape(up.base)}/ui#token=([A-Za-z0-9_-]+)", line)[1]
    assert len(token) >= 16
    with Client(up.base, token="", timeout=10) as anonymous, pytest.raises(Unauthorized):
        anonymous.status()
    with Client(up.base, token=token, timeout=10) as api:
        assert "total_nodes" in api.status()
    alive, code = up.stop()
    assert alive == [] and code == 0
    said = up.stdout() + up.stderr()
    assert [ln for ln in said.splitlines() if token in ln] == [line]  # printed once, never logged
    _assert_no_traceback(up)


@pytest.mark.parametrize(("token", "says"), [("", "set but empty"), ("too-short", "use at least 16")])
def test_up_refuses_an_empty_or_short_token(isolated_env: dict[str, str], start_up: Callable[..., Up],
                                            token: str, says: str) -> None:
    up = start_up({**isolated_env, "CASTRAY_API_TOKEN": token})
    assert up.process.wait(timeout=60) == 2
    assert says in up.stderr() and up.stderr().strip().count("\n") == 0, up.stderr()
