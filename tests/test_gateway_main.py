"""``castray gateway``'s entry point as a real process: a busy port is one clear line and exit 1; SIGTERM
and SIGINT stop it cleanly (even with a WebSocket client connected)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from castray.client import Client, GatewayUnreachable, Unauthorized, Unavailable
from castray.local_ray import free_port
from tests.support.waiting import wait_for_blocking

DEADLINE = 30.0


def gateway_env(namespace: str, redis_url: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASTRAY_")}
    env.update(CASTRAY_NAMESPACE=namespace, CASTRAY_REDIS_URL=redis_url, CASTRAY_PORT=str(port))
    return env


def start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "castray.cli", "gateway", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def wait_healthy(port: int, proc: subprocess.Popen[str]) -> dict[str, Any]:
    def healthy() -> dict[str, Any] | None:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        body = api.health()
        return body if body.get("events_subscribed") else None

    with Client(f"http://127.0.0.1:{port}", token="", timeout=2) as api:
        return wait_for_blocking(healthy, "the gateway to become healthy", deadline=DEADLINE, interval=0.05,
                                 ignoring=(GatewayUnreachable, Unavailable))


def test_busy_port_is_one_clear_line_and_exit_1(namespace: str, redis_url: str, procs) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = start(gateway_env(namespace, redis_url, port))
        procs.append(proc)
        _, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 1
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1] == f"castray gateway: port {port} is in use; pass --port or set CASTRAY_PORT"


def test_bad_settings_are_one_line_not_a_traceback(namespace: str, redis_url: str, procs) -> None:
    env = gateway_env(namespace, redis_url, free_port())
    env["CASTRAY_PORT"] = "not-a-port"
    proc = start(env)
    procs.append(proc)
    _, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 2 and "Traceback" not in err and "port" in err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_stops_it_cleanly_with_a_client_connected(
    namespace: str, redis_url: str, procs, sig
) -> None:
    port = free_port()
    env = gateway_env(namespace, redis_url, free_port())  # --port wins over CASTRAY_PORT
    proc = start(env, "--port", str(port), "--host", "127.0.0.1")
    procs.append(proc)
    await asyncio.to_thread(wait_healthy, port, proc)
    async with aiohttp.ClientSession() as session, session.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:
        assert json.loads((await ws.receive(timeout=DEADLINE)).data)["type"] == "snapshot"
        proc.send_signal(sig)
        msg = await ws.receive(timeout=DEADLINE)
        while msg.type == aiohttp.WSMsgType.TEXT:  # a status_update sent before the signal arrived
            msg = await ws.receive(timeout=DEADLINE)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    _, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize(("args", "extra", "says"), [
    (["--host", "0.0.0.0"], {}, "refusing to serve on every interface (0.0.0.0) without a token"),
    ([], {"CASTRAY_HOST": "::"}, "without a token"),
    ([], {"CASTRAY_HOST": "10.0.0.1"}, "without a token"),
    (["--host", "0.0.0.0"], {"CASTRAY_API_TOKEN": ""}, "CASTRAY_API_TOKEN is set but empty"),
    ([], {"CASTRAY_API_TOKEN": "short-token"}, "use at least 16"),
])
def test_a_network_bind_without_a_usable_token_exits_2_with_one_clear_line(
    namespace: str, redis_url: str, procs, args: list[str], extra: dict[str, str], says: str
) -> None:
    env = {**gateway_env(namespace, redis_url, free_port()), **extra}
    proc = start(env, *args)
    procs.append(proc)
    _, err = proc.communicate(timeout=DEADLINE)
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, err
    assert lines[0].startswith("castray gateway: ") and says in lines[0], lines[0]


@pytest.mark.parametrize("extra", [{"CASTRAY_ALLOW_UNAUTHENTICATED_NETWORK": "true"},
                                   {"CASTRAY_API_TOKEN": "a-token-of-at-least-16-chars"}])
def test_a_network_bind_serves_with_a_token_or_the_explicit_opt_out(
    namespace: str, redis_url: str, procs, extra: dict[str, str]
) -> None:
    port = free_port()
    proc = start({**gateway_env(namespace, redis_url, port), "CASTRAY_HOST": "0.0.0.0", **extra})
    procs.append(proc)
    wait_healthy(port, proc)
    base = f"http://127.0.0.1:{port}"
    if "CASTRAY_API_TOKEN" in extra:
        with Client(base, token="", timeout=10) as anonymous, pytest.raises(Unauthorized):
            anonymous.status()
    with Client(base, token=extra.get("CASTRAY_API_TOKEN", ""), timeout=10) as api:
        assert "total_nodes" in api.status()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0 and "Traceback" not in err, err
